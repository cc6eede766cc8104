package faultproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

// noRedirects shows the registry's own answer instead of following it.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}

func setup(t *testing.T) (*Proxy, testImage) {
	t.Helper()
	img := newTestImage(t)
	return New(t, newUpstream(t, img).URL), img
}

type tokenAnswer struct {
	Token       string    `json:"token"`
	AccessToken string    `json:"access_token"`
	ExpiresIn   int       `json:"expires_in"`
	IssuedAt    time.Time `json:"issued_at"`
}

// requestToken asks /token for a pull scope on repo, with basic auth if user != "".
func requestToken(t *testing.T, p *Proxy, repo, user, pass string) (int, tokenAnswer) {
	t.Helper()
	q := url.Values{"service": {Service}, "scope": {"repository:" + repo + ":pull"}}
	req, _ := http.NewRequest(http.MethodGet, p.URL()+"/token?"+q.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok tokenAnswer
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
			t.Fatalf("decoding token: %v", err)
		}
	}
	return resp.StatusCode, tok
}

func pullToken(t *testing.T, p *Proxy) string {
	t.Helper()
	status, tok := requestToken(t, p, testRepo, "", "")
	if status != http.StatusOK {
		t.Fatalf("token status %d", status)
	}
	return tok.Token
}

// send makes one request and reads the whole body; the read error is returned
// with what was read before it.
func send(t *testing.T, c *http.Client, method, rawURL, token string, header ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestChallengeWithoutToken(t *testing.T) {
	t.Parallel()
	p, _ := setup(t)
	realm := fmt.Sprintf(`Bearer realm="http://%s/token",service="registry.test"`, p.Host())
	tests := []struct {
		name, method, path, challenge string
	}{
		{"ping", http.MethodGet, "/v2/", realm},
		{"manifest", http.MethodGet, "/v2/test/app/manifests/v1", realm + `,scope="repository:test/app:pull"`},
		{"manifest head", http.MethodHead, "/v2/test/app/manifests/v1", realm + `,scope="repository:test/app:pull"`},
		{"blob", http.MethodGet, "/v2/test/app/blobs/sha256:00", realm + `,scope="repository:test/app:pull"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body, _ := send(t, noRedirects, tt.method, p.URL()+tt.path, "")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			if got := resp.Header.Get("Www-Authenticate"); got != tt.challenge {
				t.Errorf("challenge\n got %s\nwant %s", got, tt.challenge)
			}
			if got := resp.Header.Get("Docker-Distribution-Api-Version"); got != registryAPIValue {
				t.Errorf("api version %q", got)
			}
			if tt.method == http.MethodGet && !bytes.Contains(body, []byte(`"code":"UNAUTHORIZED"`)) {
				t.Errorf("body %s", body)
			}
		})
	}
	// A token that is made up is no better than none.
	resp, _, _ := send(t, noRedirects, http.MethodGet, p.URL()+"/v2/", "made-up")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("made-up token: status %d", resp.StatusCode)
	}
}

func TestTokenFlow(t *testing.T) {
	t.Parallel()
	p, img := setup(t)
	status, tok := requestToken(t, p, testRepo, "", "")
	if status != http.StatusOK {
		t.Fatalf("token status %d", status)
	}
	if tok.Token == "" || tok.Token != tok.AccessToken || tok.ExpiresIn != 300 {
		t.Errorf("token answer %+v", tok)
	}
	if d := time.Since(tok.IssuedAt); d < 0 || d > time.Minute {
		t.Errorf("issued_at %v", tok.IssuedAt)
	}

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, body, err := send(t, noRedirects, method, p.URL()+"/v2/test/app/manifests/v1", tok.Token,
			"Accept", manifestType)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s manifest: %d %v", method, resp.StatusCode, err)
		}
		h := resp.Header
		if h.Get("Content-Type") != manifestType || h.Get("Docker-Content-Digest") != img.manifestDigest ||
			h.Get("Content-Length") != fmt.Sprint(len(img.manifest)) || h.Get("Docker-Distribution-Api-Version") != registryAPIValue {
			t.Errorf("%s manifest headers %v", method, h)
		}
		if want := img.manifest; method == http.MethodHead {
			want = nil
			if len(body) != 0 {
				t.Errorf("HEAD body %q", body)
			}
		} else if !bytes.Equal(body, want) {
			t.Errorf("GET body %q", body)
		}
	}

	// The token is scoped: another repository asks for a new one.
	resp, _, _ := send(t, noRedirects, http.MethodGet, p.URL()+"/v2/other/app/manifests/v1", tok.Token)
	if resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(resp.Header.Get("Www-Authenticate"), `error="insufficient_scope"`) {
		t.Errorf("other repo: %d %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
	}
	if got := p.Stats().TokensIssued; got != 1 {
		t.Errorf("tokens issued %d, want 1", got)
	}
}

func TestPrivateRepository(t *testing.T) {
	t.Parallel()
	p, _ := setup(t)
	p.RequireAuth("alice", "s3cret", testRepo)
	tests := []struct {
		name                  string
		user, pass            string
		tokenStatus, manifest int
	}{
		{"anonymous", "", "", http.StatusOK, http.StatusUnauthorized},
		{"wrong password", "alice", "nope", http.StatusUnauthorized, 0},
		{"right credentials", "alice", "s3cret", http.StatusOK, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, tok := requestToken(t, p, testRepo, tt.user, tt.pass)
			if status != tt.tokenStatus {
				t.Fatalf("token status %d, want %d", status, tt.tokenStatus)
			}
			if status != http.StatusOK {
				return
			}
			resp, _, _ := send(t, noRedirects, http.MethodGet, p.URL()+"/v2/test/app/manifests/v1", tok.Token)
			if resp.StatusCode != tt.manifest {
				t.Errorf("manifest status %d, want %d", resp.StatusCode, tt.manifest)
			}
		})
	}
	if got := p.Stats().TokensDenied; got != 1 {
		t.Errorf("tokens denied %d, want 1", got)
	}
}

func TestExpiredTokenRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		lifetime time.Duration
		expire   func(*Proxy)
	}{
		{"short lifetime", 100 * time.Millisecond, func(*Proxy) { time.Sleep(150 * time.Millisecond) }},
		{"expire all", time.Hour, (*Proxy).ExpireAllTokens},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, _ := setup(t)
			p.TokenLifetime(tt.lifetime)
			tok := pullToken(t, p)
			manifest := p.URL() + "/v2/test/app/manifests/v1"
			if resp, _, _ := send(t, noRedirects, http.MethodGet, manifest, tok); resp.StatusCode != http.StatusOK {
				t.Fatalf("fresh token: status %d", resp.StatusCode)
			}
			tt.expire(p)
			resp, _, _ := send(t, noRedirects, http.MethodGet, manifest, tok)
			if resp.StatusCode != http.StatusUnauthorized ||
				!strings.Contains(resp.Header.Get("Www-Authenticate"), `error="invalid_token"`) {
				t.Errorf("expired token: %d %q", resp.StatusCode, resp.Header.Get("Www-Authenticate"))
			}
			if got := p.Stats().ExpiredTokens; got != 1 {
				t.Errorf("expired tokens %d, want 1", got)
			}
			// A refreshed token works again.
			if resp, _, _ := send(t, noRedirects, http.MethodGet, manifest, pullToken(t, p)); resp.StatusCode != http.StatusOK {
				t.Errorf("refreshed token: status %d", resp.StatusCode)
			}
		})
	}
}

func TestBlobRedirectsToLocalhost(t *testing.T) {
	t.Parallel()
	p, img := setup(t)
	tok := pullToken(t, p)
	resp, _, _ := send(t, noRedirects, http.MethodGet, p.URL()+"/v2/test/app/blobs/"+img.layerDigest, tok)
	if resp.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("status %d, want 307", resp.StatusCode)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Host != p.CDNHost() || !strings.HasPrefix(loc.Host, "localhost:") {
		t.Fatalf("Location %v (%v), want host %s", loc, err, p.CDNHost())
	}
	if loc.Query().Get("signature") == "" || loc.Query().Get("expires") == "" {
		t.Errorf("Location not signed: %v", loc)
	}

	resp, body, err := send(t, noRedirects, http.MethodGet, loc.String(), "")
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, img.layer) {
		t.Fatalf("CDN: %d, %d bytes, %v", resp.StatusCode, len(body), err)
	}

	tampered := *loc
	q := tampered.Query()
	q.Set("signature", strings.Repeat("0", 64))
	tampered.RawQuery = q.Encode()
	if resp, _, _ := send(t, noRedirects, http.MethodGet, tampered.String(), ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("tampered signature: status %d, want 403", resp.StatusCode)
	}
	expired := p.signedCDNURL(testRepo, img.layerDigest, time.Now().Add(-time.Minute))
	if resp, _, _ := send(t, noRedirects, http.MethodGet, expired, ""); resp.StatusCode != http.StatusForbidden {
		t.Errorf("expired URL: status %d, want 403", resp.StatusCode)
	}
	missing := p.URL() + "/v2/test/app/blobs/sha256:" + strings.Repeat("ab", 32)
	if resp, _, _ := send(t, noRedirects, http.MethodGet, missing, tok); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown blob: status %d, want 404", resp.StatusCode)
	}
}

func TestCDNRange(t *testing.T) {
	t.Parallel()
	p, img := setup(t)
	tok := pullToken(t, p)
	blobURL := p.URL() + "/v2/test/app/blobs/" + img.layerDigest
	tests := []struct {
		name, rangeHeader string
		ignoreRange       bool
		status            int
		contentRange      string
		body              []byte
	}{
		{"open end", "bytes=1000-", false, 206, "bytes 1000-1048575/1048576", img.layer[1000:]},
		{"closed", "bytes=10-19", false, 206, "bytes 10-19/1048576", img.layer[10:20]},
		{"end past size as regclient sends", "bytes=1000-1048576", false, 206, "bytes 1000-1048575/1048576", img.layer[1000:]},
		{"suffix", "bytes=-100", false, 206, "bytes 1048476-1048575/1048576", img.layer[layerSize-100:]},
		{"past the end", "bytes=2000000-", false, 416, "bytes */1048576", nil},
		{"multiple ranges ignored", "bytes=0-1,5-6", false, 200, "", img.layer},
		{"no range", "", false, 200, "", img.layer},
		{"ignore range mode", "bytes=1000-", true, 200, "", img.layer},
	}
	for _, tt := range tests {
		// Sequential: IgnoreRange is proxy-wide.
		t.Run(tt.name, func(t *testing.T) {
			p.IgnoreRange(tt.ignoreRange)
			resp, body, err := send(t, http.DefaultClient, http.MethodGet, blobURL, tok, "Range", tt.rangeHeader)
			if err != nil || resp.StatusCode != tt.status {
				t.Fatalf("status %d (%v), want %d", resp.StatusCode, err, tt.status)
			}
			if got := resp.Header.Get("Content-Range"); got != tt.contentRange {
				t.Errorf("Content-Range %q, want %q", got, tt.contentRange)
			}
			if tt.body != nil && !bytes.Equal(body, tt.body) {
				t.Errorf("body: %d bytes, want %d", len(body), len(tt.body))
			}
			log := p.Requests()
			last := log[len(log)-1]
			if last.Host != p.CDNHost() || last.Range != tt.rangeHeader || last.Status != tt.status {
				t.Errorf("last logged request %+v", last)
			}
		})
	}
}

func TestCutConnection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cut   func(p *Proxy)
		check func(t *testing.T, err error, got int, s Stats)
	}{
		{"drop", func(p *Proxy) { p.DropAfter(100_000, 1) }, func(t *testing.T, err error, got int, s Stats) {
			if !errors.Is(err, io.ErrUnexpectedEOF) || got != 100_000 || s.Drops != 1 {
				t.Errorf("read %d bytes, err %v, drops %d; want 100000, unexpected EOF, 1", got, err, s.Drops)
			}
		}},
		{"reset", func(p *Proxy) { p.ResetAfter(100_000, 1) }, func(t *testing.T, err error, got int, s Stats) {
			if !errors.Is(err, syscall.ECONNRESET) || got > 100_000 || s.Resets != 1 {
				t.Errorf("read %d bytes, err %v, resets %d; want <= 100000, ECONNRESET, 1", got, err, s.Resets)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, img := setup(t)
			tok := pullToken(t, p)
			blobURL := p.URL() + "/v2/test/app/blobs/" + img.layerDigest
			tt.cut(p)
			// Go's client follows the redirect, as a registry client would.
			_, body, err := send(t, http.DefaultClient, http.MethodGet, blobURL, tok)
			tt.check(t, err, len(body), p.Stats())
			// times 1: the next answer is whole.
			if _, body, err := send(t, http.DefaultClient, http.MethodGet, blobURL, tok); err != nil || !bytes.Equal(body, img.layer) {
				t.Errorf("second read: %d bytes, %v", len(body), err)
			}
		})
	}
}

func TestFlipByte(t *testing.T) {
	t.Parallel()
	p, img := setup(t)
	tok := pullToken(t, p)
	blobURL := p.URL() + "/v2/test/app/blobs/"
	const offset = 12345
	p.FlipByte(img.layerDigest, offset, 1)

	// Neither another blob nor a range without the offset uses the fault up.
	if _, body, _ := send(t, http.DefaultClient, http.MethodGet, blobURL+img.configDigest, tok); !bytes.Equal(body, img.config) {
		t.Error("config blob changed")
	}
	if _, body, _ := send(t, http.DefaultClient, http.MethodGet, blobURL+img.layerDigest, tok, "Range", "bytes=20000-"); !bytes.Equal(body, img.layer[20000:]) {
		t.Error("range without the offset changed")
	}

	_, body, err := send(t, http.DefaultClient, http.MethodGet, blobURL+img.layerDigest, tok)
	if err != nil || len(body) != layerSize {
		t.Fatalf("read %d bytes: %v", len(body), err)
	}
	if digestOf(body) == img.layerDigest {
		t.Error("sha256 unchanged")
	}
	for i := range body {
		if (body[i] != img.layer[i]) != (i == offset) {
			t.Errorf("byte %d: got %#x, original %#x", i, body[i], img.layer[i])
		}
	}
	if _, body, _ := send(t, http.DefaultClient, http.MethodGet, blobURL+img.layerDigest, tok); digestOf(body) != img.layerDigest {
		t.Error("second read still flipped")
	}
	if got := p.Stats().Flips; got != 1 {
		t.Errorf("flips %d, want 1", got)
	}
}

func TestStatusInjection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		code       int
		retryAfter time.Duration
		on         Endpoint
		path       string // hit by the fault
		other      string // not hit
		wantCode   string
		wantRetry  string
	}{
		{"429 on manifests", 429, 3 * time.Second, Manifests, "/v2/test/app/manifests/v1", "/v2/test/app/blobs/", "TOOMANYREQUESTS", "3"},
		{"503 on blobs", 503, 0, Blobs, "/v2/test/app/blobs/", "/v2/test/app/manifests/v1", "UNAVAILABLE", ""},
		{"502 on the CDN", 502, 1500 * time.Millisecond, CDN, "/v2/test/app/blobs/", "/v2/test/app/manifests/v1", "UNAVAILABLE", "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, img := setup(t)
			tok := pullToken(t, p)
			target := func(path string) string {
				if strings.HasSuffix(path, "/") {
					return p.URL() + path + img.layerDigest
				}
				return p.URL() + path
			}
			p.Status(tt.code, 2, tt.retryAfter, tt.on)
			if resp, _, _ := send(t, http.DefaultClient, http.MethodGet, target(tt.other), tok); resp.StatusCode != http.StatusOK {
				t.Errorf("other endpoint: status %d", resp.StatusCode)
			}
			for range 2 {
				resp, body, _ := send(t, http.DefaultClient, http.MethodGet, target(tt.path), tok)
				if resp.StatusCode != tt.code || resp.Header.Get("Retry-After") != tt.wantRetry ||
					!bytes.Contains(body, []byte(`"code":"`+tt.wantCode+`"`)) {
					t.Errorf("got %d, Retry-After %q, body %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
				}
			}
			if resp, _, _ := send(t, http.DefaultClient, http.MethodGet, target(tt.path), tok); resp.StatusCode != http.StatusOK {
				t.Errorf("after 2 times: status %d", resp.StatusCode)
			}
			if got := p.Stats().Statuses; got != 2 {
				t.Errorf("statuses %d, want 2", got)
			}
		})
	}
}

func TestStall(t *testing.T) {
	t.Parallel()
	p, img := setup(t)
	tok := pullToken(t, p)
	const pause = 300 * time.Millisecond
	p.Stall(4096, pause, 1)
	start := time.Now()
	_, body, err := send(t, http.DefaultClient, http.MethodGet, p.URL()+"/v2/test/app/blobs/"+img.layerDigest, tok)
	if err != nil || !bytes.Equal(body, img.layer) {
		t.Fatalf("read %d bytes: %v", len(body), err)
	}
	if took := time.Since(start); took < pause {
		t.Errorf("took %v, want >= %v", took, pause)
	}
	if got := p.Stats().Stalls; got != 1 {
		t.Errorf("stalls %d, want 1", got)
	}
}

func TestLeakDetection(t *testing.T) {
	t.Parallel()
	p, img := setup(t)
	tok := pullToken(t, p)
	blobURL := p.URL() + "/v2/test/app/blobs/" + img.layerDigest

	// Go's client drops Authorization when the redirect changes host name.
	if _, body, err := send(t, http.DefaultClient, http.MethodGet, blobURL, tok); err != nil || !bytes.Equal(body, img.layer) {
		t.Fatalf("read %d bytes: %v", len(body), err)
	}
	if p.LeakedAuth() {
		t.Fatal("leak reported for Go's default client")
	}
	for _, r := range p.Requests() {
		if r.Host == p.CDNHost() && r.Auth {
			t.Errorf("logged CDN request with auth: %+v", r)
		}
	}

	// A client that forwards the header by hand is caught.
	resp, _, _ := send(t, noRedirects, http.MethodGet, blobURL, tok)
	if _, _, err := send(t, noRedirects, http.MethodGet, resp.Header.Get("Location"), tok); err != nil {
		t.Fatal(err)
	}
	if !p.LeakedAuth() || p.Stats().LeakedAuth != 1 {
		t.Errorf("leak not detected: %+v", p.Stats())
	}
}
