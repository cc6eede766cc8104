package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/regtest"
	"github.com/tarport/tarport/shared/testkit/tarcheck"
	"github.com/tarport/tarport/web"
)

// TestBadInputs: every bad request gets the right status and error code,
// in the error shape of DESIGN.md, and never an internal error string.
func TestBadInputs(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	regtest.PushMultiArch(t, reg, "team/app", "v1")
	private := regtest.Start(t, regtest.WithHtpasswd("bob", "right-password"))
	regtest.PushImage(t, private, "team/private", "v1", regtest.ImageSpec{Layers: make([]regtest.LayerSpec, 1)})
	srv := startServer(t, registryEnv(reg.Host, private.Host))

	post := func(body string) func() (*http.Response, error) {
		return func() (*http.Response, error) {
			return http.Post(srv.URL+"/api/downloads", "application/json", strings.NewReader(body))
		}
	}
	req := func(method, path string) func() (*http.Response, error) {
		return func() (*http.Response, error) {
			r, _ := http.NewRequest(method, srv.URL+path, nil)
			return http.DefaultClient.Do(r)
		}
	}
	js := func(image, platform string, creds ...string) string {
		m := fmt.Sprintf(`{"image":%q,"platform":%q`, image, platform)
		if len(creds) == 2 {
			m += fmt.Sprintf(`,"username":%q,"password":%q`, creds[0], creds[1])
		}
		return m + "}"
	}
	cases := []struct {
		name   string
		do     func() (*http.Response, error)
		status int
		code   string
	}{
		{"not JSON", post("image=nginx"), 400, "invalid_request"},
		{"empty body", post(""), 400, "invalid_request"},
		{"two objects", post(`{"image":"a"}{"image":"b"}`), 400, "invalid_request"},
		{"no image", post(`{"platform":"linux/amd64"}`), 400, "invalid_request"},
		{"uppercase repository", post(js(reg.Host+"/Team/App:v1", "")), 400, "invalid_reference"},
		{"scheme in reference", post(js("ocidir:///etc", "")), 400, "invalid_reference"},
		{"spaces in reference", post(js("nginx latest", "")), 400, "invalid_reference"},
		{"reference too long", post(js(strings.Repeat("a", 600), "")), 400, "invalid_reference"},
		{"bad digest", post(js(reg.Host+"/team/app@sha256:xyz", "")), 400, "invalid_reference"},
		{"platform without arch", post(js(reg.Host+"/team/app:v1", "linux")), 400, "invalid_platform"},
		{"platform with four parts", post(js(reg.Host+"/team/app:v1", "linux/arm/v7/x")), 400, "invalid_platform"},
		{"platform with symbols", post(js(reg.Host+"/team/app:v1", "linux/$(id)")), 400, "invalid_platform"},
		{"username without password", post(`{"image":"x","username":"u"}`), 400, "invalid_request"},
		{"huge body", post(`{"image":"` + strings.Repeat("x", 200<<10) + `"}`), 413, "too_large"},
		{"missing repository", post(js(reg.Host+"/team/nope:v1", "")), 404, "not_found"},
		{"missing tag", post(js(reg.Host+"/team/app:v9", "")), 404, "not_found"},
		{"missing digest", post(js(reg.Host+"/team/app@sha256:"+strings.Repeat("0", 64), "")), 404, "not_found"},
		{"missing platform", post(js(reg.Host+"/team/app:v1", "linux/s390x")), 404, "platform_not_found"},
		{"private without credentials", post(js(private.Host+"/team/private:v1", "")), 401, "unauthorized"},
		{"private with wrong credentials", post(js(private.Host+"/team/private:v1", "", "bob", "wrong")), 401, "unauthorized"},
		{"untrusted loopback registry", post(js("127.0.0.2:5000/x/y:1", "")), 403, "blocked_address"},
		{"cloud metadata address", post(js("169.254.169.254/latest/meta:1", "")), 403, "blocked_address"},
		{"unknown job", req("GET", "/api/downloads/nope"), 404, "not_found"},
		{"wrong method", req("DELETE", "/api/downloads"), 405, "method_not_allowed"},
		{"wrong method on pull", req("POST", "/api/pull/nginx"), 405, "method_not_allowed"},
		{"unknown endpoint", req("GET", "/api/nothing"), 404, "not_found"},
		{"pull of a missing image", req("GET", "/api/pull/"+reg.Host+"/team/nope:v1"), 404, "not_found"},
		{"pull of a bad platform", req("GET", "/api/pull/"+reg.Host+"/team/app:v1?platform=linux"), 400, "invalid_platform"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, err := tc.do()
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var e errorBody
			if err := jsonUnmarshal(raw, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("status %d, body %q: not the error shape", resp.StatusCode, raw)
			}
			if resp.StatusCode != tc.status || e.Error.Code != tc.code {
				t.Fatalf("got %d %s (%s), want %d %s", resp.StatusCode, e.Error.Code, e.Error.Message, tc.status, tc.code)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			for _, leak := range []string{"goroutine", ".go:", "http2:", "dial tcp", "[http "} {
				if strings.Contains(e.Error.Message, leak) {
					t.Errorf("message leaks internals (%q): %s", leak, e.Error.Message)
				}
			}
		})
	}
	t.Run("private with the right credentials", func(t *testing.T) {
		t.Parallel()
		path, _ := srv.download(t, request{Image: private.Host + "/team/private:v1", Username: "bob", Password: "right-password"})
		tarcheck.Structure(t, path)
	})
}

// TestRateLimit: over the per-client limit, 429 with Retry-After.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	srv := startServer(t, map[string]string{"TARPORT_RATE_LIMIT_PER_MINUTE": "3"})
	var last *http.Response
	for range 4 {
		resp, err := http.Post(srv.URL+"/api/downloads", "application/json", strings.NewReader(`{"image":"UPPER"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		last = resp
	}
	if last.StatusCode != http.StatusTooManyRequests || last.Header.Get("Retry-After") == "" {
		t.Fatalf("4th request: %d, Retry-After %q; want 429 with Retry-After", last.StatusCode, last.Header.Get("Retry-After"))
	}
	// Status reads are not limited: polling must keep working.
	var e errorBody
	if st := getJSON(t, srv.URL+"/api/downloads/unknown", &e); st != http.StatusNotFound {
		t.Fatalf("status read while limited: %d", st)
	}
}

// TestPullOneLiner runs the README's curl line against the local server.
func TestPullOneLiner(t *testing.T) {
	t.Parallel()
	curl := daemon.Binary(t, "curl")
	reg := regtest.Start(t)
	pushed := regtest.PushMultiArch(t, reg, "team/pull", "v1")
	srv := startServer(t, registryEnv(reg.Host))
	out := filepath.Join(t.TempDir(), "x.tar")
	cmd := exec.Command(curl, "-fsSL", "--retry", "100", srv.URL+"/api/pull/"+reg.Host+"/team/pull:v1?platform=linux/arm64", "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl: %v\n%s", err, b)
	}
	want, _ := pushed.Platform("linux/arm64")
	c := tarcheck.Structure(t, out)
	if c.ManifestDigest != want.Manifest.Digest {
		t.Fatalf("pulled %s, want %s", c.ManifestDigest, want.Manifest.Digest)
	}
	tarcheck.Skopeo(t, out)

	// With credentials as basic auth (curl -u).
	private := regtest.Start(t, regtest.WithHtpasswd("carol", "pw"))
	regtest.PushImage(t, private, "team/p", "1", regtest.ImageSpec{Layers: make([]regtest.LayerSpec, 2)})
	srv2 := startServer(t, registryEnv(private.Host))
	out2 := filepath.Join(t.TempDir(), "p.tar")
	cmd = exec.Command(curl, "-fsSL", "--retry", "100", "-u", "carol:pw", srv2.URL+"/api/pull/"+private.Host+"/team/p:1", "-o", out2)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl -u: %v\n%s", err, b)
	}
	tarcheck.Structure(t, out2)
}

// TestLinkRangeAndResume: the signed link serves Range requests, so a
// broken download continues with curl -C - and ends identical.
func TestLinkRangeAndResume(t *testing.T) {
	t.Parallel()
	curl := daemon.Binary(t, "curl")
	reg := regtest.Start(t)
	regtest.PushImage(t, reg, "team/big", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 12 << 20, Random: true}, {Size: 10 << 10}}})
	srv := startServer(t, registryEnv(reg.Host))
	full, j := srv.download(t, request{Image: reg.Ref("team/big", "v1")})
	want, _ := os.ReadFile(full)

	// A ranged read across the stored-entry/tail boundary.
	r, _ := http.NewRequest("GET", j.URL, nil)
	r.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", len(want)-20000, len(want)-1000))
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, want[len(want)-20000:len(want)-999]) {
		t.Fatalf("range: %d, %d bytes", resp.StatusCode, len(part))
	}

	// Half a file, then curl -C - finishes it.
	out := filepath.Join(t.TempDir(), "resumed.tar")
	if err := os.WriteFile(out, want[:len(want)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(curl, "-fsS", "-C", "-", "-o", out, j.URL).CombinedOutput(); err != nil {
		t.Fatalf("curl -C -: %v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, want) {
		t.Fatalf("resumed file differs (%d bytes, want %d)", len(got), len(want))
	}

	// A tampered link is refused.
	u, _ := url.Parse(j.URL)
	q := u.Query()
	q.Set("exp", fmt.Sprint(time.Now().Add(3*time.Hour).Unix()))
	u.RawQuery = q.Encode()
	if code := linkError(t, u.String()); code != "invalid_signature" {
		t.Fatalf("tampered link: %q, want invalid_signature", code)
	}

	// A link signed for one second is refused once that second is over.
	short := startServer(t, map[string]string{"TARPORT_INSECURE_REGISTRIES": reg.Host, "TARPORT_PRESIGN_TTL": "1s"})
	_, sj := short.download(t, request{Image: reg.Ref("team/big", "v1")})
	time.Sleep(2100 * time.Millisecond)
	if code := linkError(t, sj.URL); code != "link_expired" {
		t.Fatalf("expired link: %q, want link_expired", code)
	}
}

// linkError fetches a link that must be refused with 403 and returns the
// error code.
func linkError(t *testing.T, link string) string {
	t.Helper()
	resp, err := http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e errorBody
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("GET %s: %d, %v; want a 403 error", link, resp.StatusCode, err)
	}
	return e.Error.Code
}

// TestForeignLayer: a Windows image whose base layer lives at its URLs,
// fetched from there (the operator trusts that host, as tests run on
// loopback) and kept as-is in the tar.
func TestForeignLayer(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	foreign := httptest.NewServer(regtest.ForeignLayerHandler())
	t.Cleanup(foreign.Close)
	pushed := regtest.PushWindows(t, reg, "win/app", "ltsc", foreign.URL+"/base.tar.gz")
	fhost := strings.TrimPrefix(foreign.URL, "http://")

	t.Run("trusted host", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, registryEnv(reg.Host, fhost))
		path, _ := srv.download(t, request{Image: reg.Ref("win/app", "ltsc"), Platform: "windows/amd64"})
		c := tarcheck.Structure(t, path)
		if len(c.Layers) != len(pushed.Images[0].Layers) || c.Layers[0].MediaType != "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" {
			t.Fatalf("layers %+v", c.Layers)
		}
		if c.Layers[0].Digest != pushed.Images[0].Layers[0].Digest {
			t.Fatalf("foreign layer %s, want %s", c.Layers[0].Digest, pushed.Images[0].Layers[0].Digest)
		}
	})
	t.Run("untrusted host is an SSRF risk", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, registryEnv(reg.Host))
		j := srv.create(t, request{Image: reg.Ref("win/app", "ltsc"), Platform: "windows/amd64"})
		j = srv.wait(t, j.ID, time.Minute)
		if j.Status != "failed" || j.Error.Code != "blocked_address" {
			t.Fatalf("job %+v, want failed with blocked_address", j)
		}
	})
}

// TestRestartResumesJobs: a job cut off by a stop finishes after a restart
// on the same data directory.
func TestRestartResumesJobs(t *testing.T) {
	t.Parallel()
	h := startHub(t)
	h.pushApp(t, "restart", "1")
	h.proxy.Stall(1<<20, 30*time.Second, 1)
	j := h.srv.create(t, request{Image: "restart:1"})
	deadline := time.Now().Add(30 * time.Second)
	for {
		var cur job
		getJSON(t, h.srv.URL+"/api/downloads/"+j.ID, &cur)
		if cur.Status == "ready" || cur.Status == "failed" {
			t.Fatalf("the job was %s before the restart; nothing to resume", cur.Status)
		}
		if cur.DoneBytes > 0 { // mid-layer, held by the stall
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress within 30 s: %+v", cur)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.srv.Close()
	h.srv.app.Close()
	h.proxy.ClearFaults()

	again := startServerAt(t, h.srv.dataDir, map[string]string{
		"TARPORT_DOCKERHUB_REGISTRY":  h.proxy.URL(),
		"TARPORT_INSECURE_REGISTRIES": h.proxy.CDNHost(),
	})
	done := again.wait(t, j.ID, time.Minute)
	if done.Status != "ready" {
		t.Fatalf("after restart: %+v", done)
	}
	tarcheck.Structure(t, fetch(t, done))
}

// TestWebUIServed: the UI's files come from / with the strict CSP the
// CloudFront distribution also sends, and unknown files are 404s.
func TestWebUIServed(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	for _, c := range []struct {
		path, contentType string
		status            int
	}{
		{"/", "text/html; charset=utf-8", 200},
		{"/assets/app.js", "text/javascript; charset=utf-8", 200},
		{"/no-such-file.js", "", 404},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status || (c.contentType != "" && resp.Header.Get("Content-Type") != c.contentType) {
			t.Errorf("GET %s: %d %q", c.path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("Content-Security-Policy") != web.CSP || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: headers %v", c.path, resp.Header)
		}
	}
}
