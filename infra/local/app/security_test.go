package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/testkit/hostile"
	"github.com/tarport/tarport/shared/testkit/regtest"
	"github.com/tarport/tarport/shared/testkit/tarcheck"
)

// The attacker tests (issue 9): a registry of the attacker's own that lies
// (shared/testkit/hostile) against the local server. Each failed on the
// main of 2026-12-07; docs/ARCHITECTURE.md ("Trust model") says why each
// holds now.

// TestHostileRegistryGetsNothingFromTheCache: Alice downloads her private
// image. An anonymous attacker then points tarport at a registry of their
// own that names her manifest digest (every job status shows it) and says
// yes to the HEAD of every blob, but cannot serve a byte: they get
// nothing. Nor does a manifest of their own that names one of her layers.
func TestHostileRegistryGetsNothingFromTheCache(t *testing.T) {
	t.Parallel()
	const user, pass = "alice", "alice-pw-never-shared"
	private := regtest.Start(t, regtest.WithHtpasswd(user, pass))
	pushed := regtest.PushImage(t, private, "alice/secret", "1", regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 1 << 20, Random: true, Seed: "alice-secret-big"},
		{Size: 8 << 10, Seed: "alice-secret-small"},
	}})
	evil := hostile.Start(t)
	srv := startServer(t, registryEnv(private.Host, evil.Host()))

	_, alice := srv.download(t, request{Image: private.Ref("alice/secret", "1"), Username: user, Password: pass})
	img := pushed.Images[0]
	if alice.Digest != img.Manifest.Digest {
		t.Fatalf("Alice's job digest %s, want %s", alice.Digest, img.Manifest.Digest)
	}

	// Everything the attacker learns from a status: the digests, the sizes.
	evil.SetManifest("x", "1", hostile.Manifest{Claim: digest.Digest(alice.Digest), MediaType: img.Manifest.MediaType, ClaimSize: img.Manifest.Size})
	evil.ClaimEveryBlob()
	var layers []descriptor.Descriptor
	for _, l := range alice.Layers {
		layers = append(layers, descriptor.Descriptor{MediaType: hostile.MediaLayer, Digest: digest.Digest(l.Digest), Size: l.Size})
		evil.SetBlob("", digest.Digest(l.Digest), hostile.Blob{Claim: l.Size})
	}
	evil.PushImage("y", "1", layers[0])
	evil.PushImage("z", "1", layers...)

	for _, ref := range []string{evil.Ref("x", "1"), evil.Ref("y", "1"), evil.Ref("z", "1"), evil.Host() + "/x@" + alice.Digest} {
		var j job
		st := post(t, srv.URL+"/api/downloads", request{Image: ref}, &j)
		if st == http.StatusOK || st == http.StatusAccepted {
			j = srv.wait(t, j.ID, time.Minute)
		}
		if j.Status == "ready" || j.URL != "" {
			t.Errorf("%s: the attacker got a tar (%d %+v): the cache handed out Alice's bytes", ref, st, j)
			continue
		}
		if msg := j.Error; msg != nil && (strings.Contains(msg.Message, "alice") || strings.Contains(msg.Message, private.Host)) {
			t.Errorf("%s: the error names Alice's image: %q", ref, msg.Message)
		}
	}
	if n := evil.BlobGets(digest.Digest(alice.Layers[0].Digest)); n == 0 {
		t.Error("tarport never asked the attacker's registry for the layer's bytes: it must fetch, not trust a HEAD")
	}
}

// TestSharedFetchFailureStaysWithItsJob: a registry names a public layer
// of another registry and answers its GET with 503 forever. A job for the
// real image, asked for while that fetch is failing, is not held by it and
// never sees its error: it fetches from its own registry. And within one
// registry, a job whose fetch another job led (and lost, with an error
// about its own repository) fetches for itself.
func TestSharedFetchFailureStaysWithItsJob(t *testing.T) {
	t.Parallel()
	t.Run("another registry", func(t *testing.T) {
		t.Parallel()
		public := regtest.Start(t)
		pushed := regtest.PushImage(t, public, "team/app", "1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 2 << 20, Random: true, Seed: "shared-base"}}})
		l := pushed.Images[0].Layers[0]
		evil := hostile.Start(t)
		evil.SetBlob("", digest.Digest(l.Digest), hostile.Blob{Status: http.StatusServiceUnavailable})
		evil.PushImage("mirror", "1", descriptor.Descriptor{MediaType: l.MediaType, Digest: digest.Digest(l.Digest), Size: l.Size})
		srv := startServer(t, registryEnv(public.Host, evil.Host()))

		bad := srv.create(t, request{Image: evil.Ref("mirror", "1")})
		waitFor(t, "the hostile fetch to start", 20*time.Second, func() bool { return evil.BlobGets(digest.Digest(l.Digest)) > 0 })
		good := srv.create(t, request{Image: public.Ref("team/app", "1")})
		good = srv.wait(t, good.ID, 30*time.Second)
		if good.Status != "ready" {
			t.Fatalf("the real image's job %s %+v: held by, or failed with, another registry's fetch", good.Status, good.Error)
		}
		if cur := srv.status(t, bad.ID); cur.Status == "ready" {
			t.Fatalf("the hostile job is ready: %+v", cur)
		}
	})
	t.Run("one registry, another repository's failure", func(t *testing.T) {
		t.Parallel()
		evil := hostile.Start(t)
		layer := regtest.ForeignLayer() // any bytes will do
		d := hostile.Layer(layer)
		// Repository x's GET is refused after a while; y's is served.
		evil.SetBlob("x", d.Digest, hostile.Blob{Status: http.StatusForbidden, Delay: 3 * time.Second})
		evil.SetBlob("y", d.Digest, hostile.Blob{Bytes: layer})
		evil.PushImage("x", "1", d)
		evil.PushImage("y", "1", d)
		srv := startServer(t, registryEnv(evil.Host()))

		x := srv.create(t, request{Image: evil.Ref("x", "1")})
		waitFor(t, "x's fetch to start", 20*time.Second, func() bool { return evil.BlobGets(d.Digest) > 0 })
		y := srv.create(t, request{Image: evil.Ref("y", "1")})
		y = srv.wait(t, y.ID, 30*time.Second)
		if y.Status != "ready" {
			t.Fatalf("job y %s %+v: it failed with job x's error", y.Status, y.Error)
		}
		x = srv.wait(t, x.ID, 30*time.Second)
		if x.Status != "failed" || x.Error == nil || x.Error.Code != "forbidden" {
			t.Fatalf("job x %s %+v, want failed with its own forbidden", x.Status, x.Error)
		}
	})
}

// TestCachedForeignLayerServesEveryImage: after one Windows image with a
// foreign base layer is downloaded, another image and another tag sharing
// that layer download too (its entry is checked at its URL, not at the
// registry, which never had it). A registry naming the same layer at a
// URL of its own that says yes to a HEAD but serves nothing gets nothing.
func TestCachedForeignLayerServesEveryImage(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	foreign := httptest.NewServer(regtest.ForeignLayerHandler())
	t.Cleanup(foreign.Close)
	baseURL := foreign.URL + "/base.tar.gz"
	first := regtest.PushWindows(t, reg, "win/app", "ltsc", baseURL)
	regtest.PushWindows(t, reg, "win/tool", "ltsc", baseURL)
	regtest.PushWindows(t, reg, "win/app", "next", baseURL)
	liar := hostile.StartURLServer(t, first.Images[0].Layers[0].Size)
	evil := hostile.Start(t)
	base := first.Images[0].Layers[0]
	evil.PushImage("win", "1", descriptor.Descriptor{MediaType: hostile.MediaForeign, Digest: digest.Digest(base.Digest), Size: base.Size, URLs: []string{liar.URL() + "/base.tar.gz"}})
	srv := startServer(t, registryEnv(reg.Host, strings.TrimPrefix(foreign.URL, "http://"), evil.Host(), liar.Host()))

	for _, ref := range []string{reg.Ref("win/app", "ltsc"), reg.Ref("win/tool", "ltsc"), reg.Ref("win/app", "next")} {
		path, j := srv.download(t, request{Image: ref, Platform: "windows/amd64"})
		c := tarcheck.Structure(t, path)
		if c.Layers[0].Digest != base.Digest {
			t.Fatalf("%s: base layer %s, want %s", ref, c.Layers[0].Digest, base.Digest)
		}
		_ = j
	}
	var j job
	st := post(t, srv.URL+"/api/downloads", request{Image: evil.Ref("win", "1"), Platform: "linux/amd64"}, &j)
	if st == http.StatusOK || st == http.StatusAccepted {
		j = srv.wait(t, j.ID, time.Minute)
	}
	if j.Status == "ready" {
		t.Fatalf("a foreign layer cached from one URL was handed out for another URL that only said yes to a HEAD: %+v", j)
	}
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// status reads a job once.
func (s *server) status(t *testing.T, id string) job {
	t.Helper()
	var j job
	if st := getJSON(t, s.URL+"/api/downloads/"+id, &j); st != http.StatusOK {
		t.Fatalf("GET job %s: status %d", id, st)
	}
	return j
}

// TestSlowRegistriesDoNotStarveOthers: four jobs whose one 60 GB layer
// trickles a byte every 5 s hold all four workers; a small image from a
// healthy registry, asked for next, is still ready in seconds.
func TestSlowRegistriesDoNotStarveOthers(t *testing.T) {
	t.Parallel()
	const giant = 60_000_000_000
	var evils []*hostile.Registry
	for i := range 4 {
		evil := hostile.Start(t)
		d := descriptor.Descriptor{MediaType: hostile.MediaLayer, Digest: digest.FromString(fmt.Sprint("giant ", i)), Size: giant}
		evil.SetBlob("", d.Digest, hostile.Blob{Claim: giant, Trickle: 5 * time.Second})
		evil.PushImage("giant", "1", d)
		evils = append(evils, evil)
	}
	healthy := regtest.Start(t)
	regtest.PushImage(t, healthy, "team/small", "1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 13 << 10, Seed: "small"}}})
	hosts := []string{healthy.Host}
	for _, e := range evils {
		hosts = append(hosts, e.Host())
	}
	env := registryEnv(hosts...)
	env["TARPORT_WORKERS"] = "4"
	// 240 GB claimed from one address is past any daily quota; this test
	// is about the workers, so the quotas step aside (they have their own).
	env["TARPORT_CLIENT_QUOTA_PER_DAY"], env["TARPORT_BUDGET_PER_DAY"] = "0", "0"
	srv := startServer(t, env)

	for _, e := range evils {
		srv.create(t, request{Image: e.Ref("giant", "1")})
	}
	waitFor(t, "every worker on a trickling layer", 20*time.Second, func() bool {
		n := 0
		for _, e := range evils {
			for _, q := range e.Requests() {
				if q.Method == http.MethodGet && strings.Contains(q.Path, "/blobs/") {
					n++
					break
				}
			}
		}
		return n == len(evils)
	})
	start := time.Now()
	small := srv.create(t, request{Image: healthy.Ref("team/small", "1")})
	small = srv.wait(t, small.ID, 30*time.Second)
	if small.Status != "ready" {
		t.Fatalf("small image %s %+v", small.Status, small.Error)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the small image took %v behind the slow registries, want seconds", took)
	}
}

// TestTricklingLayerIsCutThenFailed: a layer that trickles under the
// minimum rate is cut every window and resumed from its last byte on a
// new connection, then the job fails with upstream_timeout within a few
// windows, whatever size the manifest claims.
func TestTricklingLayerIsCutThenFailed(t *testing.T) {
	t.Parallel()
	const giant = 60_000_000_000
	evil := hostile.Start(t)
	d := descriptor.Descriptor{MediaType: hostile.MediaLayer, Digest: digest.FromString("trickle"), Size: giant}
	evil.SetBlob("", d.Digest, hostile.Blob{Claim: giant, Trickle: 200 * time.Millisecond})
	evil.PushImage("trickle", "1", d)
	env := registryEnv(evil.Host())
	env["TARPORT_BLOB_IDLE_TIMEOUT"] = "1s" // the window
	env["TARPORT_BLOB_MIN_RATE"] = "1KiB"   // the trickle brings 5 B/s
	srv := startServer(t, env)

	start := time.Now()
	j := srv.create(t, request{Image: evil.Ref("trickle", "1")})
	j = srv.wait(t, j.ID, 90*time.Second)
	if j.Status != "failed" || j.Error == nil || j.Error.Code != "upstream_timeout" {
		t.Fatalf("job %s %+v, want failed with upstream_timeout", j.Status, j.Error)
	}
	if took := time.Since(start); took > 60*time.Second {
		t.Errorf("failed after %v, want within a few windows per attempt", took)
	}
	resumed := 0
	for _, q := range evil.Requests() {
		if q.Method == http.MethodGet && strings.HasPrefix(q.Range, "bytes=") && q.Range != "bytes=0-" {
			resumed++
		}
	}
	if resumed == 0 {
		t.Error("the crawling body was never resumed with Range before giving up")
	}
}

// TestExpiredPrivateLinkNeedsCredentials: Alice's link expires; whoever
// holds it cannot take a job id from it (the tar's name is its own), and
// the job's status gives a fresh link only to credentials the registry
// authorizes again. Without them it says why.
func TestExpiredPrivateLinkNeedsCredentials(t *testing.T) {
	t.Parallel()
	const user, pass = "alice", "alice-pw"
	private := regtest.Start(t, regtest.WithHtpasswd(user, pass))
	regtest.PushImage(t, private, "alice/secret", "1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 64 << 10, Seed: "alice-link"}}})
	env := registryEnv(private.Host)
	env["TARPORT_PRESIGN_TTL"] = "3s"
	srv := startServer(t, env)
	req := request{Image: private.Ref("alice/secret", "1"), Username: user, Password: pass}
	_, j := srv.download(t, req)
	if strings.Contains(j.URL, j.ID) {
		t.Errorf("the link %s names the job id", j.URL)
	}
	time.Sleep(time.Until(*j.ExpiresAt) + 1100*time.Millisecond)

	resp, err := http.Get(j.URL)
	if err != nil {
		t.Fatal(err)
	}
	var e errorBody
	decodeErr := jsonDecode(resp, &e)
	if resp.StatusCode != http.StatusForbidden || decodeErr != nil || e.Error.Code != "link_expired" {
		t.Fatalf("expired link: %d %+v (%v), want 403 link_expired", resp.StatusCode, e, decodeErr)
	}

	var anon errorBody
	if st := getJSON(t, srv.URL+"/api/downloads/"+j.ID, &anon); st != http.StatusUnauthorized || anon.Error.Code != "credentials_required" || !strings.Contains(anon.Error.Message, "private") {
		t.Fatalf("status without credentials: %d %+v; want 401 credentials_required saying the image is private", st, anon)
	}
	var wrong errorBody
	if st := getJSONAs(t, srv.URL+"/api/downloads/"+j.ID, user, "guess", &wrong); st != http.StatusUnauthorized || wrong.Error.Code != "unauthorized" {
		t.Fatalf("status with a wrong password: %d %+v; want 401 unauthorized", st, wrong)
	}
	var again job
	if st := getJSONAs(t, srv.URL+"/api/downloads/"+j.ID, user, pass, &again); st != http.StatusOK || again.URL == "" || again.URL == j.URL {
		t.Fatalf("status with Alice's credentials: %d %+v; want a fresh link", st, again)
	}
	fetch(t, again)
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestHTTPHardening: what a public server must not let a client do.
func TestHTTPHardening(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	regtest.PushImage(t, reg, "team/app", "1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 32 << 10, Seed: "hardening"}}})
	evil := hostile.Start(t)
	env := registryEnv(reg.Host, evil.Host())
	env["TARPORT_READ_TIMEOUT"] = "2s"
	srv := startServer(t, env)
	image := reg.Ref("team/app", "1")
	jobsCreated := func() int { return strings.Count(srv.logs.String(), `msg="job created"`) }

	t.Run("a body sent a byte a second is cut", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		body := fmt.Sprintf(`{"image":%q}`, image)
		fmt.Fprintf(conn, "POST /api/downloads HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
		start := time.Now()
		closed := make(chan struct{})
		go func() {
			defer close(closed)
			io.Copy(io.Discard, conn)
		}()
		for i := 0; i < len(body); i++ {
			select {
			case <-closed:
				i = len(body)
				continue
			case <-time.After(time.Second):
			}
			conn.Write([]byte{body[i]})
		}
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("the connection was still open 10 s after a read timeout of 2 s")
		}
		if took := time.Since(start); took > 6*time.Second {
			t.Errorf("the slow body was held for %v, want about the 2 s read timeout", took)
		}
	})
	t.Run("a body sent slowly to a page is not waited for", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /files/tars/x.tar HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
		start := time.Now()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		go func() {
			for range 20 {
				if _, err := conn.Write([]byte{'x'}); err != nil {
					return
				}
				time.Sleep(time.Second)
			}
		}()
		io.Copy(io.Discard, conn) // the answer, then the close
		if took := time.Since(start); took > 6*time.Second {
			t.Errorf("the connection was held %v for a body nothing reads", took)
		}
	})
	t.Run("headers sent a byte a second are cut", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		go func() {
			for _, b := range []byte("GET /api/health HTTP/1.1\r\nHost: x\r\nX-Slow: ") {
				if _, err := conn.Write([]byte{b}); err != nil {
					return
				}
				time.Sleep(time.Second)
			}
		}()
		io.Copy(io.Discard, conn)
		if took := time.Since(start); took > 6*time.Second {
			t.Errorf("slow headers were held for %v, want about the 2 s read timeout", took)
		}
	})
	t.Run("a cross-site form cannot start a download", func(t *testing.T) {
		before := jobsCreated()
		for _, h := range []map[string]string{
			{"Content-Type": "text/plain", "Origin": "http://evil.example"},
			{"Content-Type": "text/plain"},
			{"Content-Type": "application/json", "Origin": "http://evil.example"},
			{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"},
		} {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/downloads", strings.NewReader(fmt.Sprintf(`{"image":%q}`, image)))
			for k, v := range h {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e errorBody
			decodeErr := jsonDecode(resp, &e)
			if (resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusUnsupportedMediaType) || decodeErr != nil || e.Error.Code == "" {
				t.Errorf("%v: %d %+v, want 403 or 415 in the JSON shape", h, resp.StatusCode, e)
			}
		}
		if n := jobsCreated() - before; n != 0 {
			t.Errorf("%d jobs were created by cross-site requests", n)
		}
	})
	t.Run("HEAD never creates a job", func(t *testing.T) {
		before := jobsCreated()
		req, _ := http.NewRequest(http.MethodHead, srv.URL+"/api/pull/"+image, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
			t.Errorf("HEAD /api/pull: %d, Allow %q; want 405, GET", resp.StatusCode, resp.Header.Get("Allow"))
		}
		if n := jobsCreated() - before; n != 0 {
			t.Errorf("HEAD created %d jobs", n)
		}
	})
	t.Run("a forged Host is not copied into links", func(t *testing.T) {
		body, _ := json.Marshal(request{Image: image})
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/downloads", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Host = "evil.example"
		req.Header.Set("X-Forwarded-Host", "evil.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var j job
		if err := jsonDecode(resp, &j); err != nil {
			t.Fatal(err)
		}
		if loc := resp.Header.Get("Location"); strings.Contains(loc, "evil") {
			t.Errorf("Location %q", loc)
		}
		j = srv.wait(t, j.ID, time.Minute)
		pull, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/pull/"+image, nil)
		pull.Host = "evil.example"
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		pr, err := client.Do(pull)
		if err != nil {
			t.Fatal(err)
		}
		pr.Body.Close()
		// Locally a pull streams the tar (no Location); nothing in its
		// answer may come from the forged Host.
		for k, vs := range pr.Header {
			if strings.Contains(strings.Join(vs, " "), "evil") {
				t.Errorf("the pull's %s header is %q", k, vs)
			}
		}
		status := func(host string) job {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/downloads/"+j.ID, nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var out job
			if err := jsonDecode(resp, &out); err != nil {
				t.Fatal(err)
			}
			return out
		}
		forged := status("evil.example")
		for what, u := range map[string]string{"the job's url": forged.URL} {
			if !strings.HasPrefix(u, srv.URL+"/files/") {
				t.Errorf("%s is %q, want it under the server's own address %s", what, u, srv.URL)
			}
		}
	})
	t.Run("a 6 MB manifest is refused at once, not read and retried", func(t *testing.T) {
		raw := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"x":"` + strings.Repeat("a", 6<<20) + `"}}`)
		evil.SetManifest("big", "1", hostile.Manifest{Raw: raw, MediaType: hostile.MediaManifest})
		// And one whose HEAD hides its size: only the read can find out.
		evil.SetManifest("sneaky", "1", hostile.Manifest{Raw: raw, MediaType: hostile.MediaManifest, ClaimSize: 900})
		for _, repo := range []string{"big", "sneaky"} {
			var e errorBody
			start := time.Now()
			st := post(t, srv.URL+"/api/downloads", request{Image: evil.Ref(repo, "1")}, &e)
			if st != http.StatusRequestEntityTooLarge || e.Error.Code != "too_large" {
				t.Errorf("%s: %d %+v, want 413 too_large", repo, st, e)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("%s: refused after %v", repo, took)
			}
			gets := 0
			for _, q := range evil.Requests() {
				if q.Method == http.MethodGet && strings.HasPrefix(q.Path, "/v2/"+repo+"/manifests/") {
					gets++
				}
			}
			if gets > 1 {
				t.Errorf("%s: the manifest was read %d times; a refusal is final", repo, gets)
			}
		}
	})
	t.Run("every error is JSON, 416 and would-be redirects too", func(t *testing.T) {
		_, j := srv.download(t, request{Image: image})
		for _, tc := range []struct {
			path, rng string
			status    int
		}{
			{strings.TrimPrefix(j.URL, srv.URL), fmt.Sprintf("bytes=%d-", j.TotalBytes), http.StatusRequestedRangeNotSatisfiable},
			{"/api", "", http.StatusNotFound},
			{"/api//health", "", http.StatusNotFound},
			{"/api/pull/team/../app:1", "", http.StatusNotFound},
			{"/files", "", http.StatusNotFound},
			{"/files//tars/x.tar", "", http.StatusNotFound},
		} {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			if tc.rng != "" {
				req.Header.Set("Range", tc.rng)
			}
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e errorBody
			decodeErr := jsonDecode(resp, &e)
			if resp.StatusCode != tc.status || decodeErr != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Errorf("GET %s (%s): %d, %+v (%v); want %d in the JSON error shape", tc.path, tc.rng, resp.StatusCode, e, decodeErr, tc.status)
			}
		}
	})
}
