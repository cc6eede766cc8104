package webtest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/infra/local/app"
	"github.com/tarport/tarport/shared/settings"
	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/fakehub"
	"github.com/tarport/tarport/shared/testkit/regtest"
	"github.com/tarport/tarport/shared/testkit/tarcheck"
)

// The image the UI finds, inspects and downloads: docker.io's
// library/<demoRepo>. demoTag is a multi-platform index; otherTag, listed
// first (newest) by the fake Hub, is amd64 only, so picking the tag is a
// real choice and the platform list must follow it.
const (
	demoRepo = "tarportdemo"
	demoTag  = "1.0"
	otherTag = "edge"
	// brokenRepo:1 is an image whose second layer the registry serves
	// spoiled, every time: its download fails after its first layer
	// streamed to the browser.
	brokenRepo = "tarportbroken"
)

var demoPlatforms = []string{"linux/amd64", "linux/arm64"}

// TestWebUI drives the UI through search, details, a download to the
// browser's own download, the error paths, a phone viewport and the
// language switch (e2e.mjs says what each step checks), then checks the
// tars the browser saved.
func TestWebUI(t *testing.T) {
	t.Parallel()
	tools := findTools(t)
	st := startStack(t)
	res := tools.run(t, st, nil)

	for _, s := range res.Steps {
		t.Logf("step %-28s %6dms", s.Name, s.Millis)
	}
	if len(res.Checks) < 20 {
		t.Errorf("the script made %d checks; it stopped early?", len(res.Checks))
	}

	// The desktop download: the tag and platform picked on the details page.
	want, ok := st.images[res.Platform]
	if res.Platform != "linux/arm64" || !ok {
		t.Fatalf("the script downloaded platform %q, want linux/arm64", res.Platform)
	}
	st.checkTar(t, res.Download, res.JobID, want, demoRepo+":"+demoTag)

	// The phone's quick download.
	want, ok = st.images[res.PhonePlatform]
	if !ok {
		t.Fatalf("the phone downloaded platform %q, not one pushed (%v)", res.PhonePlatform, demoPlatforms)
	}
	st.checkTar(t, res.PhoneDownload, res.PhoneJobID, want, demoRepo+":"+demoTag)
}

// TestWebUIGuards: against a server with an access token and a client
// quota smaller than the demo image, the page asks for the token, keeps
// it, puts it in its curl command, and shows the quota refusal.
func TestWebUIGuards(t *testing.T) {
	t.Parallel()
	tools := findTools(t)
	const token = "web-guard-token-0123456789"
	st := startStack(t, "TARPORT_ACCESS_TOKEN", token, "TARPORT_CLIENT_QUOTA_PER_DAY", "1MiB")
	res := tools.run(t, st, []string{"GUARD_TOKEN=" + token})
	if len(res.Checks) < 7 {
		t.Errorf("the script made %d checks; it stopped early?", len(res.Checks))
	}
}

// TestScreenshots writes the main screens at phone and desktop widths to
// $TARPORT_SCREENSHOTS (`make screenshots` sets it to docs/screenshots);
// without it the test skips.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("TARPORT_SCREENSHOTS")
	if dir == "" {
		t.Skip("TARPORT_SCREENSHOTS unset (make screenshots sets it)")
	}
	if !filepath.IsAbs(dir) {
		root, err := daemon.RepoRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tools := findTools(t)
	st := startStack(t)
	res := tools.run(t, st, []string{"SCREENSHOTS=" + dir})
	if len(res.Screenshots) == 0 {
		t.Fatal("no screenshots written")
	}
	for _, s := range res.Screenshots {
		fi, err := os.Stat(s)
		if err != nil || fi.Size() == 0 {
			t.Errorf("screenshot %s: %v", s, err)
			continue
		}
		t.Logf("wrote %s (%d bytes)", s, fi.Size())
	}
}

// tools are the browser side's programs.
type tools struct {
	node, chromium, playwright string
}

// findTools finds node, chromium and playwright-core, skipping the test
// when one is missing (failing it under TARPORT_REQUIRE_TOOLS=1).
func findTools(t *testing.T) tools {
	t.Helper()
	tl := tools{
		node:     daemon.Binary(t, "node", "nodejs"),
		chromium: daemon.Binary(t, "chromium", "/usr/bin/chromium"),
	}
	p, err := findPlaywright()
	if err != nil {
		if os.Getenv("TARPORT_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%v; install it with: make test-deps", err)
		}
		t.Skipf("%v (install: make test-deps; TARPORT_REQUIRE_TOOLS=1 turns this skip into a failure)", err)
	}
	tl.playwright = p
	return tl
}

// findPlaywright returns the playwright-core package directory:
// $TARPORT_PLAYWRIGHT_CORE, else what infra/dev/install-deps.sh installs.
func findPlaywright() (string, error) {
	if p := os.Getenv("TARPORT_PLAYWRIGHT_CORE"); p != "" {
		if _, err := os.Stat(filepath.Join(p, "package.json")); err != nil {
			return "", fmt.Errorf("TARPORT_PLAYWRIGHT_CORE=%s: %w", p, err)
		}
		return p, nil
	}
	root, err := daemon.RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".tools", "node", "node_modules", "playwright-core")
	if _, err := os.Stat(filepath.Join(p, "package.json")); err != nil {
		return "", fmt.Errorf("playwright-core: not at %s and $TARPORT_PLAYWRIGHT_CORE unset: %w", p, errors.Join(daemon.ErrToolNotFound, err))
	}
	return p, nil
}

// result is what e2e.mjs writes to $TARPORT_WEB_OUT/result.json.
type result struct {
	OK            bool     `json:"ok"`
	Failure       string   `json:"failure"`
	Checks        []string `json:"checks"`
	ConsoleErrors []string `json:"console_errors"`
	Steps         []struct {
		Name   string `json:"name"`
		Millis int64  `json:"ms"`
	} `json:"steps"`
	Download      string   `json:"download"`
	JobID         string   `json:"job_id"`
	Platform      string   `json:"platform"`
	PhoneDownload string   `json:"phone_download"`
	PhoneJobID    string   `json:"phone_job_id"`
	PhonePlatform string   `json:"phone_platform"`
	Screenshots   []string `json:"screenshots"`
	Notes         []string `json:"notes"`
}

// run runs e2e.mjs against st and returns its result; the test fails when
// the script does. $TARPORT_WEBTEST_OUT keeps the script's output
// (failure screenshots, page text) after the test.
func (tl tools) run(t *testing.T, st *stack, extraEnv []string) result {
	t.Helper()
	out := os.Getenv("TARPORT_WEBTEST_OUT")
	if out == "" {
		out = t.TempDir()
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("e2e.mjs")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tl.node, script)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(),
		"TARPORT_WEB_URL="+st.URL,
		"TARPORT_WEB_OUT="+out,
		"TARPORT_WEB_REPO="+demoRepo,
		"TARPORT_WEB_TAG="+demoTag,
		"TARPORT_WEB_OTHER_TAG="+otherTag,
		"TARPORT_WEB_BROKEN_REPO="+brokenRepo,
		"TARPORT_WEB_PLATFORMS="+strings.Join(demoPlatforms, ","),
		"TARPORT_WEB_PRIVATE_REF="+st.privateRef,
		"TARPORT_WEB_PRIVATE_USER="+privateUser,
		"TARPORT_WEB_PRIVATE_PASS="+privatePass,
		"PLAYWRIGHT_CORE="+tl.playwright,
		"CHROMIUM="+tl.chromium,
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("e2e.mjs ran %s", time.Since(start).Round(time.Millisecond))

	var res result
	raw, readErr := os.ReadFile(filepath.Join(out, "result.json"))
	if readErr == nil {
		readErr = json.Unmarshal(raw, &res)
	}
	if runErr != nil || readErr != nil || !res.OK {
		t.Fatalf("e2e.mjs: %v (result: %v)\nfailure: %s\nconsole errors: %q\nchecks passed: %d\nstdout:\n%s\nstderr:\n%s\nserver log (tail):\n%s",
			runErr, readErr, res.Failure, res.ConsoleErrors, len(res.Checks), stdout.String(), stderr.String(), tail(st.logs.String(), 4000))
	}
	for _, n := range res.Notes {
		t.Logf("note: %s", n)
	}
	if len(res.ConsoleErrors) > 0 {
		t.Errorf("console errors or CSP violations in the page: %q", res.ConsoleErrors)
	}
	return res
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// stack is the local server with its fake Docker Hub and registry.
type stack struct {
	URL        string
	images     map[string]regtest.Image // what demoRepo:demoTag holds, by platform
	privateRef string                   // an image only privateUser may pull
	logs       *daemon.SyncBuffer
}

// The login of the private registry (a password the page must never store).
const privateUser, privatePass = "alice", "private-pa55-not-stored"

// startStack starts, on loopback, a registry holding docker.io's
// library/demoRepo, a fake Hub that lists it, and the local server
// pulling docker.io images from that registry, with any more settings
// given as name, value pairs.
func startStack(t *testing.T, more ...string) *stack {
	t.Helper()
	reg := regtest.Start(t)
	images, index := pushDemo(t, reg)
	edge := regtest.PushImage(t, reg, "library/"+demoRepo, otherTag, regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 512 << 10, Random: true, Seed: "edge"},
	}})
	broken := regtest.PushImage(t, reg, "library/"+brokenRepo, "1", regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 2 << 20, Random: true, Seed: "broken-first"},
		{Size: 1 << 20, Random: true, Seed: "broken-spoiled"},
	}})
	spoiled := "/blobs/" + broken.Images[0].Layers[1].Digest

	hub := fakehub.New(t, "")
	now := time.Now().UTC()
	hub.AddRepo(fakehub.Repo{
		Namespace: "library", Name: demoRepo,
		Description:     "A tiny multi-platform image the web UI tests download.",
		FullDescription: "# tarportdemo\n\nPushed by infra/webtest.",
		Stars:           4242, Pulls: 9_000_000_000, LastUpdated: now,
	})
	hubTag := func(name, digest string, imgs ...regtest.Image) fakehub.Tag {
		tag := fakehub.Tag{Name: name, Digest: digest, LastUpdated: now}
		for _, img := range imgs {
			goos, arch, variant := splitPlatform(img.Platform)
			tag.Images = append(tag.Images, fakehub.Image{OS: goos, Architecture: arch, Variant: variant,
				Digest: img.Manifest.Digest, Size: compressedSize(img)})
		}
		return tag
	}
	var multi []regtest.Image
	for _, p := range demoPlatforms {
		multi = append(multi, images[p])
	}
	hub.AddTags("library", demoRepo,
		hubTag(otherTag, edge.Digest(), edge.Images[0]),
		hubTag(demoTag, index, multi...),
	)

	// docker.io is the registry behind a proxy that serves blobs slowly, so
	// a download takes a few of the UI's once-a-second polls and the
	// progress bar has steps to show.
	regURL, err := url.Parse(reg.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(regURL)
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method == http.MethodGet && strings.Contains(r.Request.URL.Path, "/blobs/") {
			r.Body = &slowBody{ReadCloser: r.Body, rate: blobRate, start: time.Now(), spoil: strings.HasSuffix(r.Request.URL.Path, spoiled)}
		}
		return nil
	}
	slowReg := httptest.NewServer(proxy)
	t.Cleanup(slowReg.Close)
	private := regtest.Start(t, regtest.WithHtpasswd(privateUser, privatePass))
	regtest.PushImage(t, private, "alice/secret", "1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 256 << 10, Random: true, Seed: "web-private"}}})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	env := map[string]string{
		"TARPORT_PUBLIC_URL":          "http://" + ln.Addr().String(),
		"TARPORT_DATA_DIR":            t.TempDir(),
		"TARPORT_WARM_EVERY":          "0",
		"TARPORT_HUB_API":             hub.URL,
		"TARPORT_DOCKERHUB_REGISTRY":  slowReg.URL,
		"TARPORT_INSECURE_REGISTRIES": strings.TrimPrefix(slowReg.URL, "http://") + "," + private.Host,
	}
	for i := 0; i+1 < len(more); i += 2 {
		env[more[i]] = more[i+1]
	}
	s, err := settings.Parse(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	logs := &daemon.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.New(t.Context(), s, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Listener.Close()
	srv.Listener, srv.Config = ln, a.Server()
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	return &stack{URL: srv.URL, images: images, privateRef: private.Ref("alice/secret", "1"), logs: logs}
}

// pushDemo pushes one image per demoPlatforms (three layers, ~5 MiB, so
// progress has something to show) and an OCI index of them as
// library/demoRepo:demoTag. It returns the images and the index digest.
func pushDemo(t *testing.T, reg *regtest.Registry) (map[string]regtest.Image, string) {
	t.Helper()
	images := map[string]regtest.Image{}
	type entry struct {
		MediaType string            `json:"mediaType"`
		Digest    string            `json:"digest"`
		Size      int64             `json:"size"`
		Platform  map[string]string `json:"platform"`
	}
	index := struct {
		SchemaVersion int     `json:"schemaVersion"`
		MediaType     string  `json:"mediaType"`
		Manifests     []entry `json:"manifests"`
	}{SchemaVersion: 2, MediaType: regtest.MediaTypeOCIIndex}
	for _, p := range demoPlatforms {
		// A tag per platform: regtest pushes to tags; the Hub lists only demoTag and otherTag.
		goos, arch, variant := splitPlatform(p)
		pushed := regtest.PushImage(t, reg, "library/"+demoRepo, "build-"+arch+variant, regtest.ImageSpec{Platform: p, Layers: []regtest.LayerSpec{
			{Size: 3 << 20, Random: true},
			{Size: 2 << 20, Random: true},
			{Size: 256 << 10, Files: map[string]string{regtest.PlatformFile: p + "\n"}},
		}})
		img := pushed.Images[0]
		images[p] = img
		plat := map[string]string{"os": goos, "architecture": arch}
		if variant != "" {
			plat["variant"] = variant
		}
		index.Manifests = append(index.Manifests, entry{img.Manifest.MediaType, img.Manifest.Digest, img.Manifest.Size, plat})
	}
	raw, err := json.Marshal(index)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPut,
		reg.URL()+"/v2/library/"+demoRepo+"/manifests/"+demoTag, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", regtest.MediaTypeOCIIndex)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("pushing the index: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("pushing the index: %d %s", resp.StatusCode, body)
	}
	return images, resp.Header.Get("Docker-Content-Digest")
}

// blobRate is how fast the proxy serves each blob, in bytes per second:
// the demo image's biggest layer (3 MiB) takes about three seconds.
const blobRate = 1 << 20

// slowBody paces reads to rate bytes per second since start; a spoiled
// one has its first byte changed.
type slowBody struct {
	io.ReadCloser
	rate  int64
	start time.Time
	n     int64
	spoil bool
}

func (b *slowBody) Read(p []byte) (int, error) {
	p = p[:min(len(p), 32<<10)]
	n, err := b.ReadCloser.Read(p)
	if b.spoil && b.n == 0 && n > 0 {
		p[0] ^= 0xff
	}
	b.n += int64(n)
	if d := time.Duration(b.n*int64(time.Second)/b.rate) - time.Since(b.start); d > 0 {
		time.Sleep(d)
	}
	return n, err
}

func splitPlatform(p string) (goos, arch, variant string) {
	parts := strings.SplitN(p, "/", 3)
	goos, arch = parts[0], parts[1]
	if len(parts) == 3 {
		variant = parts[2]
	}
	return
}

// compressedSize is what Hub reports as an image's size: config and layers
// as stored.
func compressedSize(img regtest.Image) int64 {
	n := img.Config.Size
	for _, l := range img.Layers {
		n += l.Size
	}
	return n
}

// checkTar checks a tar the browser saved: complete per the job, sound to
// archive/tar, skopeo and go-containerregistry, and exactly the pushed
// image for its platform, named repoTag.
func (st *stack) checkTar(t *testing.T, path, jobID string, want regtest.Image, repoTag string) {
	t.Helper()
	if path == "" || jobID == "" {
		t.Fatalf("no download (path %q, job %q)", path, jobID)
	}
	var job struct {
		Status     string `json:"status"`
		Platform   string `json:"platform"`
		TotalBytes int64  `json:"total_bytes"`
	}
	resp, err := http.Get(st.URL + "/api/downloads/" + jobID)
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&job)
	resp.Body.Close()
	if err != nil || job.Status != "ready" {
		t.Fatalf("job %s: %+v %v", jobID, job, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != job.TotalBytes {
		t.Errorf("%s: %d bytes, the job says %d", path, fi.Size(), job.TotalBytes)
	}

	c := tarcheck.Structure(t, path)
	if c.ManifestDigest != want.Manifest.Digest || c.Platform.String() != want.Platform {
		t.Errorf("tar holds manifest %s (%s), want the pushed %s image %s", c.ManifestDigest, c.Platform, want.Platform, want.Manifest.Digest)
	}
	var layers []string
	for _, l := range c.Layers {
		layers = append(layers, l.Digest)
	}
	wantLayers := make([]string, 0, len(want.Layers))
	for _, l := range want.Layers {
		wantLayers = append(wantLayers, l.Digest)
	}
	if !slices.Equal(layers, wantLayers) {
		t.Errorf("tar layers %v, want %v", layers, wantLayers)
	}
	if !slices.Equal(c.RepoTags, []string{repoTag}) {
		t.Errorf("RepoTags %v, want [%s]", c.RepoTags, repoTag)
	}
	sk := tarcheck.SkopeoCopy(t, path)
	if strings.TrimPrefix(sk.ManifestDigest, "sha256:") != strings.TrimPrefix(want.Manifest.Digest, "sha256:") || !slices.Equal(sk.Layers, wantLayers) {
		t.Errorf("skopeo read manifest %s layers %v, want %s %v", sk.ManifestDigest, sk.Layers, want.Manifest.Digest, wantLayers)
	}
	if !slices.Equal(sk.DiffIDs, want.DiffIDs) {
		t.Errorf("skopeo diff_ids %v, want %v", sk.DiffIDs, want.DiffIDs)
	}
	tarcheck.GGCR(t, path)
}
