package app_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/faultproxy"
	"github.com/tarport/tarport/shared/testkit/regtest"
	"github.com/tarport/tarport/shared/testkit/tarcheck"
)

// seedCommand is the seed's documented download command, as written in
// its README (image and platform as given), against endpoint.
func seedCommand(curl, base, endpoint, out string, extra ...string) *exec.Cmd {
	args := append([]string{"-X", "POST", base + endpoint, "-H", "Content-Type: application/json",
		"-d", `{"image": "ubuntu:22.04", "platform": "linux/amd64"}`, "--output", out}, extra...)
	return exec.Command(curl, args...)
}

// TestSeedCommands: the seed's two commands, exactly as its README writes
// them, save a tar that skopeo and go-containerregistry verify.
func TestSeedCommands(t *testing.T) {
	t.Parallel()
	curl := daemon.Binary(t, "curl")
	h := startHub(t)
	regtest.PushImage(t, h.reg, "library/ubuntu", "22.04", regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 7 << 20, Random: true, Seed: "ubuntu-base"},
		{Size: 300 << 10, Seed: "ubuntu-small"},
	}})
	for _, endpoint := range []string{"/api/download", "/api/download-stream"} {
		t.Run(strings.TrimPrefix(endpoint, "/api/"), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "ubuntu-22.04.tar")
			if b, err := seedCommand(curl, h.srv.URL, endpoint, out, "-sS").CombinedOutput(); err != nil {
				t.Fatalf("curl: %v\n%s", err, b)
			}
			c := tarcheck.Structure(t, out)
			if len(c.RepoTags) != 1 || c.RepoTags[0] != "ubuntu:22.04" {
				t.Errorf("RepoTags %v, want [ubuntu:22.04]", c.RepoTags)
			}
			tarcheck.Skopeo(t, out)
			tarcheck.GGCR(t, out)
		})
	}
}

// TestSeedCommandSpoiledLayer: when a later layer of the image is spoiled
// at the registry, `curl -f` with the seed's command fails and what it
// wrote is no valid tar: the stream is cut (or, if the job failed before
// the first byte, refused), never completed.
func TestSeedCommandSpoiledLayer(t *testing.T) {
	t.Parallel()
	curl := daemon.Binary(t, "curl")
	h := startHub(t)
	// The tar holds the bigger layer first: it streams whole, then the
	// spoiled one fails and the transfer is cut.
	p := regtest.PushImage(t, h.reg, "library/ubuntu", "22.04", regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 9 << 20, Random: true, Seed: "spoiled-base"},
		{Size: 6 << 20, Random: true, Seed: "spoiled-later"},
	}})
	h.proxy.FlipByte(p.Images[0].Layers[1].Digest, 4096, faultproxy.Always)
	out := filepath.Join(t.TempDir(), "ubuntu-22.04.tar")
	b, err := seedCommand(curl, h.srv.URL, "/api/download", out, "-fsS").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("curl -f with a spoiled layer: %v, want a failure\n%s", err, b)
	}
	// 18: the transfer ended short of its Content-Length.
	if exit.ExitCode() != 18 {
		t.Errorf("curl exited %d (%s), want 18: a cut transfer", exit.ExitCode(), strings.TrimSpace(string(b)))
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, _ := f.Stat(); fi.Size() < 9<<20 {
		t.Errorf("curl saved %d bytes: the healthy first layer did not stream", fi.Size())
	}
	if validTar(f) {
		t.Fatal("curl wrote a complete, readable tar of an image with a spoiled layer")
	}
}

// validTar says whether r reads as a whole tar to its end-of-archive.
func validTar(r io.Reader) bool {
	tr := tar.NewReader(r)
	for {
		_, err := tr.Next()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return false
		}
	}
}

// TestStreamNotResumed: curl -C - on a streamed pull is refused, not
// spliced onto what the file holds (bytes sent while a layer was fetched
// are verified only when it completes, so a cut file may hold a failed
// attempt's bytes); the finished tar's link is what resumes.
func TestStreamNotResumed(t *testing.T) {
	t.Parallel()
	curl := daemon.Binary(t, "curl")
	h := startHub(t)
	h.pushApp(t, "resume", "1")
	out := filepath.Join(t.TempDir(), "x.tar")
	junk := []byte(strings.Repeat("not the tar's bytes ", 200))
	if err := os.WriteFile(out, junk, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(curl, "-fsS", "-C", "-", "-o", out, h.srv.URL+"/api/pull/resume:1").CombinedOutput()
	// 33: the server does not do ranges here, so curl cannot resume.
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 33 {
		t.Fatalf("curl -C - on a stream: %v, want exit 33 (cannot resume)\n%s", err, b)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, junk) {
		t.Fatalf("the file changed from %d to %d bytes: something was spliced onto it", len(junk), len(got))
	}
}

// TestStreamLinkOfPrivateJob: the stream link in a private job's creation
// answer serves the tar as it is built without credentials (a browser's
// download cannot send them; the link's signature stands for the ones
// the registry just accepted), byte for byte the finished tar. A status
// read never carries one.
func TestStreamLinkOfPrivateJob(t *testing.T) {
	t.Parallel()
	h := startHub(t)
	h.pushApp(t, "secretapp", "1")
	h.proxy.RequireAuth("alice", "alice-pw", "library/secretapp")
	req := request{Image: "secretapp:1", Platform: "linux/amd64", Username: "alice", Password: "alice-pw"}
	j := h.srv.create(t, req)
	if j.Status == "ready" || !strings.HasPrefix(j.StreamURL, h.srv.URL+"/api/streams/") {
		t.Fatalf("a new private job's answer: %s, stream_url %q", j.Status, j.StreamURL)
	}
	resp, err := http.Get(j.StreamURL)
	if err != nil {
		t.Fatal(err)
	}
	streamed, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET the stream link: %d, %d bytes, %v", resp.StatusCode, len(streamed), err)
	}
	done := h.srv.waitAs(t, j.ID, 2*time.Minute, req)
	finished, err := os.ReadFile(fetch(t, done))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(streamed, finished) {
		t.Fatalf("the stream link gave %d bytes, not the finished tar's %d", len(streamed), len(finished))
	}
	var anon job
	getJSON(t, h.srv.URL+"/api/downloads/"+j.ID, &anon)
	if anon.StreamURL != "" || anon.URL != "" {
		t.Errorf("an anonymous status read of the private job carries links: %q %q", anon.StreamURL, anon.URL)
	}
}
