package app_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/testkit/faultproxy"
	"github.com/tarport/tarport/shared/testkit/regtest"
	"github.com/tarport/tarport/shared/testkit/tarcheck"
)

// hub is a Docker Hub stand-in: a real registry behind the fault proxy
// (bearer tokens, blobs redirected to a CDN on another host name), with
// tarport pointed at it as TARPORT_DOCKERHUB_REGISTRY.
type hub struct {
	reg   *regtest.Registry
	proxy *faultproxy.Proxy
	srv   *server
}

func startHub(t *testing.T, extraEnv ...string) *hub {
	t.Helper()
	reg := regtest.Start(t)
	proxy := faultproxy.New(t, reg.URL())
	env := map[string]string{
		"TARPORT_DOCKERHUB_REGISTRY":  proxy.URL(),
		"TARPORT_INSECURE_REGISTRIES": proxy.CDNHost(),
	}
	for i := 0; i+1 < len(extraEnv); i += 2 {
		env[extraEnv[i]] = extraEnv[i+1]
	}
	srv := startServer(t, env)
	t.Cleanup(func() {
		if proxy.LeakedAuth() {
			t.Error("an Authorization header was sent to the CDN")
		}
	})
	return &hub{reg: reg, proxy: proxy, srv: srv}
}

// pushApp pushes a two-layer image (one 8 MiB incompressible layer) as
// library/<repo>:<tag> and returns its single image. Content depends on
// repo only, so two tags of one repo are the same image.
func (h *hub) pushApp(t *testing.T, repo, tag string) regtest.Image {
	t.Helper()
	p := regtest.PushImage(t, h.reg, "library/"+repo, tag, regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 8 << 20, Random: true, Seed: repo + "-big"},
		{Size: 64 << 10, Seed: repo + "-small"},
	}})
	return p.Images[0]
}

// blobRequests counts blob GETs (HEADs fetch nothing) at the registry
// and at the CDN, and the Range headers sent to the CDN.
func (h *hub) blobRequests() (registry, cdn int, ranges []string) {
	for _, r := range h.proxy.Requests() {
		if r.Method != http.MethodGet {
			continue
		}
		switch {
		case r.Host == h.proxy.CDNHost():
			cdn++
			if r.Range != "" {
				ranges = append(ranges, r.Range)
			}
		case strings.Contains(r.Path, "/blobs/"):
			registry++
		}
	}
	return
}

func TestFaultsAreSurvived(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		inject func(p *faultproxy.Proxy, big regtest.Blob)
		check  func(t *testing.T, h *hub)
	}{
		{
			name:   "connection dropped mid-blob resumes with Range",
			inject: func(p *faultproxy.Proxy, _ regtest.Blob) { p.DropAfter(3<<20, 2) },
			check: func(t *testing.T, h *hub) {
				_, _, ranges := h.blobRequests()
				if len(ranges) == 0 || !strings.HasPrefix(ranges[0], "bytes=3145728-") {
					t.Errorf("resume ranges %v, want one starting bytes=3145728-", ranges)
				}
			},
		},
		{
			name:   "connection reset mid-blob resumes with Range",
			inject: func(p *faultproxy.Proxy, _ regtest.Blob) { p.ResetAfter(2<<20, 1) },
			check: func(t *testing.T, h *hub) {
				if _, _, ranges := h.blobRequests(); len(ranges) == 0 {
					t.Error("no Range request after a reset")
				}
			},
		},
		{
			name:   "a flipped byte is caught and the layer fetched again",
			inject: func(p *faultproxy.Proxy, big regtest.Blob) { p.FlipByte(big.Digest, 1000, 1) },
			check: func(t *testing.T, h *hub) {
				if h.proxy.Stats().Flips != 1 {
					t.Errorf("flips = %d, want 1", h.proxy.Stats().Flips)
				}
			},
		},
		{
			name: "500 on manifests is retried",
			inject: func(p *faultproxy.Proxy, _ regtest.Blob) {
				p.Status(http.StatusInternalServerError, 2, 0, faultproxy.Manifests)
			},
			check: func(t *testing.T, h *hub) {
				if h.proxy.Stats().Statuses != 2 {
					t.Errorf("injected statuses = %d, want 2", h.proxy.Stats().Statuses)
				}
			},
		},
		{
			name: "429 with Retry-After on blobs is waited out",
			inject: func(p *faultproxy.Proxy, _ regtest.Blob) {
				p.Status(http.StatusTooManyRequests, 2, time.Second, faultproxy.Blobs)
			},
			check: func(t *testing.T, h *hub) {
				if h.proxy.Stats().Statuses != 2 {
					t.Errorf("injected statuses = %d, want 2", h.proxy.Stats().Statuses)
				}
			},
		},
		{
			name: "503 from the CDN is retried",
			inject: func(p *faultproxy.Proxy, _ regtest.Blob) {
				p.Status(http.StatusServiceUnavailable, 2, 0, faultproxy.CDN)
			},
			check: func(t *testing.T, h *hub) {
				if h.proxy.Stats().Statuses != 2 {
					t.Errorf("injected statuses = %d, want 2", h.proxy.Stats().Statuses)
				}
			},
		},
		{
			name: "a token that expires mid-pull is refreshed",
			inject: func(p *faultproxy.Proxy, _ regtest.Blob) {
				p.TokenLifetime(time.Second)
				p.Stall(1<<20, 2500*time.Millisecond, 1)
				p.DropAfter(2<<20, 1)
			},
			check: func(t *testing.T, h *hub) {
				st := h.proxy.Stats()
				if st.ExpiredTokens == 0 || st.TokensIssued < 2 {
					t.Errorf("expired tokens seen %d, tokens issued %d: the refresh path did not run", st.ExpiredTokens, st.TokensIssued)
				}
			},
		},
		{
			name:   "a stalled body is cut and resumed",
			inject: func(p *faultproxy.Proxy, _ regtest.Blob) { p.Stall(1<<20, time.Minute, 1) },
			check: func(t *testing.T, h *hub) {
				if _, _, ranges := h.blobRequests(); len(ranges) == 0 {
					t.Error("no Range request after a stall")
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A short idle timeout lets the stall case finish quickly.
			h := startHub(t, "TARPORT_BLOB_IDLE_TIMEOUT", "2s")
			img := h.pushApp(t, "app", "1.0")
			tc.inject(h.proxy, img.Layers[0])
			path, j := h.srv.download(t, request{Image: "app:1.0"})
			c := tarcheck.Structure(t, path)
			if c.ManifestDigest != img.Manifest.Digest || j.Image != "app:1.0" {
				t.Fatalf("tar of %s (job image %q), want %s", c.ManifestDigest, j.Image, img.Manifest.Digest)
			}
			if len(c.RepoTags) != 1 || c.RepoTags[0] != "app:1.0" || c.ImageName != "docker.io/library/app:1.0" {
				t.Errorf("names %v %q, want app:1.0 and docker.io/library/app:1.0", c.RepoTags, c.ImageName)
			}
			tc.check(t, h)
		})
	}
}

// TestCorruptBlobFailsTheJob: bytes that never match their digest fail the
// job with a clear error, and no link is ever handed out.
func TestCorruptBlobFailsTheJob(t *testing.T) {
	t.Parallel()
	h := startHub(t)
	img := h.pushApp(t, "broken", "1")
	h.proxy.FlipByte(img.Layers[0].Digest, 4096, faultproxy.Always)
	j := h.srv.create(t, request{Image: "broken:1"})
	j = h.srv.wait(t, j.ID, 2*time.Minute)
	if j.Status != "failed" || j.Error == nil || j.Error.Code != "digest_mismatch" {
		t.Fatalf("job %+v, want failed with digest_mismatch", j)
	}
	if j.URL != "" {
		t.Fatalf("a failed job has a link: %s", j.URL)
	}
	entries, _ := filepath.Glob(filepath.Join(h.srv.dataDir, "objects", "entries", "sha256", strings.TrimPrefix(img.Layers[0].Digest, "sha256:")+"*"))
	if len(entries) != 0 {
		t.Fatalf("an unverified entry was stored: %v", entries)
	}
	// The curl one-liner fails too: the new job it makes fails the same
	// way, answered with the job's error if that comes before the tar's
	// first bytes, else by cutting the stream short.
	resp, err := http.Get(h.srv.URL + "/api/pull/broken:1")
	if err != nil {
		t.Fatal(err)
	}
	body, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusBadGateway:
	case resp.StatusCode == http.StatusOK && rerr != nil && int64(len(body)) < resp.ContentLength:
		t.Logf("the stream was cut after %d of %d bytes", len(body), resp.ContentLength)
	default:
		t.Fatalf("pull of a failing image: %d with %d of %d bytes (read error %v), want 502 or a cut stream", resp.StatusCode, len(body), resp.ContentLength, rerr)
	}
}

// TestCachedLayersCostNoRegistryTraffic: the same image under a new tag is
// ready from the entry cache, fetching no blob.
func TestCachedLayersCostNoRegistryTraffic(t *testing.T) {
	t.Parallel()
	h := startHub(t)
	h.pushApp(t, "cached", "1")
	first, _ := h.srv.download(t, request{Image: "cached:1"})
	regBefore, cdnBefore, _ := h.blobRequests()
	if cdnBefore == 0 {
		t.Fatal("the first download fetched nothing through the CDN")
	}
	// Same content, new tag: pushing the same spec gives the same digests.
	h.pushApp(t, "cached", "2")
	second, j := h.srv.download(t, request{Image: "cached:2"})
	regAfter, cdnAfter, _ := h.blobRequests()
	if regAfter != regBefore || cdnAfter != cdnBefore {
		t.Fatalf("blob requests went from %d/%d to %d/%d: the cached layers were fetched again", regBefore, cdnBefore, regAfter, cdnAfter)
	}
	c1, c2 := tarcheck.Structure(t, first), tarcheck.Structure(t, second)
	if c2.RepoTags[0] != "cached:2" || c1.ManifestDigest != c2.ManifestDigest || j.Image != "cached:2" {
		t.Fatalf("second tar: tags %v manifest %s, want cached:2 and %s", c2.RepoTags, c2.ManifestDigest, c1.ManifestDigest)
	}
}

// TestPrivateImage: credentials reach the registry, are required on every
// request, and are never written to disk or logs.
func TestPrivateImage(t *testing.T) {
	t.Parallel()
	h := startHub(t)
	img := h.pushApp(t, "secret", "1")
	const user, pass = "alice", "pa55-word-never-stored"
	h.proxy.RequireAuth(user, pass, "library/secret")

	for _, tc := range []struct {
		name       string
		user, pass string
	}{{"anonymous", "", ""}, {"wrong password", user, "nope"}} {
		var e errorBody
		st := post(t, h.srv.URL+"/api/downloads", request{Image: "secret:1", Username: tc.user, Password: tc.pass}, &e)
		if st != http.StatusUnauthorized || e.Error.Code != "unauthorized" {
			t.Errorf("%s: %d %+v, want 401 unauthorized", tc.name, st, e)
		}
	}
	path, _ := h.srv.download(t, request{Image: "secret:1", Username: user, Password: pass})
	tarcheck.Structure(t, path)

	// A cached private tar still needs the registry's yes, by tag or by
	// digest, and so does any layer of it a foreign manifest names.
	var e errorBody
	if st := post(t, h.srv.URL+"/api/downloads", request{Image: "secret:1"}, &e); st != http.StatusUnauthorized {
		t.Fatalf("anonymous request for a cached private image: %d, want 401", st)
	}
	if st := post(t, h.srv.URL+"/api/downloads", request{Image: "secret@" + img.Manifest.Digest}, &e); st != http.StatusUnauthorized {
		t.Fatalf("anonymous request by digest for a cached private image: %d, want 401", st)
	}
	err := filepath.Walk(h.srv.dataDir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if strings.Contains(string(b), pass) {
			t.Errorf("the password is stored in %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h.srv.logs.String(), pass) {
		t.Error("the password is in the server log")
	}
}

// TestServiceAccountDoesNotAuthorizeAnonymousUsers: the operator's Docker
// Hub account raises the pull limit for anonymous users, but an anonymous
// request is still checked anonymously: the account's private images stay
// private.
func TestServiceAccountDoesNotAuthorizeAnonymousUsers(t *testing.T) {
	t.Parallel()
	const user, pass = "operator", "service-token"
	h := startHub(t, "TARPORT_DOCKERHUB_USERNAME", user, "TARPORT_DOCKERHUB_TOKEN", pass)
	h.pushApp(t, "public", "1")
	h.pushApp(t, "internal", "1")
	h.proxy.RequireAuth(user, pass, "library/internal")

	var e errorBody
	if st := post(t, h.srv.URL+"/api/downloads", request{Image: "internal:1"}, &e); st != http.StatusUnauthorized {
		t.Fatalf("anonymous request for the operator's private image: %d %+v, want 401", st, e)
	}
	path, _ := h.srv.download(t, request{Image: "public:1"})
	tarcheck.Structure(t, path)
}
