package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tarport/tarport/shared/tarport"
)

// TestAccessToken: with a token set, every API request but health needs
// it, in the header, exactly; nothing reaches the service without it.
func TestAccessToken(t *testing.T) {
	t.Parallel()
	d := &fakeDownloads{}
	api := newTestAPI(t, d, Options{AccessToken: "s3cret-Token"})
	with := func(r *http.Request, token string) *http.Request {
		if token != "" {
			r.Header.Set(TokenHeader, token)
		}
		return r
	}
	for _, token := range []string{"", "wrong", "s3cret-token", "s3cret-Token ", "s3cret-Toke"} {
		for _, r := range []*http.Request{
			post("/api/downloads", `{"image":"nginx"}`),
			httpGet("/api/pull/nginx"),
			httpGet("/api/downloads/abc"),
			httpGet("/api/search?q=nginx"),
			httpGet("/api/no-such-route"),
		} {
			msg := checkError(t, do(t, api, with(r, token)), http.StatusUnauthorized, tarport.CodeAccessDenied)
			if token != "" && msg != "" && strings.Contains(msg, token) {
				t.Errorf("the refusal repeats the token sent: %q", msg)
			}
		}
	}
	if n := len(d.createCalls()); n != 0 {
		t.Fatalf("%d jobs created without the token", n)
	}
	if res := do(t, api, httpGet("/api/health")); res.status != http.StatusOK {
		t.Fatalf("health without the token: %d", res.status)
	}
	if res := do(t, api, with(post("/api/downloads", `{"image":"nginx"}`), "s3cret-Token")); res.status != http.StatusAccepted {
		t.Fatalf("with the token: %d %s", res.status, res.raw)
	}
	// No token configured: no header needed.
	open := newTestAPI(t, &fakeDownloads{}, Options{})
	if res := do(t, open, post("/api/downloads", `{"image":"nginx"}`)); res.status != http.StatusAccepted {
		t.Fatalf("an open server: %d", res.status)
	}
}

// TestOriginSecret: behind CloudFront, a request without CloudFront's
// secret is refused, and the viewer address counts only with it.
func TestOriginSecret(t *testing.T) {
	t.Parallel()
	d := &fakeDownloads{}
	api := newTestAPI(t, d, Options{OriginSecret: "from-cloudfront", RatePerMinute: 1})
	via := func(secret, viewer string) *http.Request {
		r := post("/api/downloads", `{"image":"nginx"}`)
		r.RemoteAddr = "203.0.113.250:443" // API Gateway's side of the hop
		if secret != "" {
			r.Header.Set(OriginSecretHeader, secret)
		}
		if viewer != "" {
			r.Header.Set(ViewerAddressHeader, viewer)
		}
		return r
	}
	// A spoofed viewer address without the secret gets nowhere.
	for _, secret := range []string{"", "guess", "from-cloudfront-"} {
		checkError(t, do(t, api, via(secret, "192.0.2.1:5000")), http.StatusForbidden, tarport.CodeForbidden)
	}
	if n := len(d.createCalls()); n != 0 {
		t.Fatalf("%d jobs created without the origin secret", n)
	}
	// With it, each viewer is its own client (a limit of 1 a minute).
	for _, viewer := range []string{"192.0.2.1:5000", "192.0.2.2:5001", "2001:db8::1:46532", "2001:db8:0:1::7:443"} {
		if res := do(t, api, via("from-cloudfront", viewer)); res.status != http.StatusAccepted {
			t.Fatalf("viewer %s: %d %s", viewer, res.status, res.raw)
		}
	}
	checkError(t, do(t, api, via("from-cloudfront", "192.0.2.1:6000")), http.StatusTooManyRequests, tarport.CodeRateLimited)
	// A value that is no address is not a client of its own: it counts as
	// the peer (API Gateway's side here), whose one request a minute is
	// then spent.
	if res := do(t, api, via("from-cloudfront", "made-up-1")); res.status != http.StatusAccepted {
		t.Fatalf("an unparseable viewer address: %d", res.status)
	}
	checkError(t, do(t, api, via("from-cloudfront", "made-up-2")), http.StatusTooManyRequests, tarport.CodeRateLimited)
	checkError(t, do(t, api, via("from-cloudfront", "2001:db8::ffff:9:80")), http.StatusTooManyRequests, tarport.CodeRateLimited)
	clients := map[string]bool{}
	for _, c := range d.createCalls() {
		clients[c.Client] = true
	}
	for _, want := range []string{"192.0.2.1", "192.0.2.2", "2001:db8::/64", "2001:db8:0:1::/64"} {
		if !clients[want] {
			t.Errorf("no job counted for client %s; clients %v", want, clients)
		}
	}
	if res := do(t, api, httpGet("/api/health")); res.status != http.StatusOK {
		t.Fatalf("health without the secret: %d", res.status)
	}
}

// TestForwardedHeadersIgnored: without CloudFront configured, a client
// cannot pick its identity with headers.
func TestForwardedHeadersIgnored(t *testing.T) {
	t.Parallel()
	d := &fakeDownloads{}
	api := newTestAPI(t, d, Options{RatePerMinute: 1})
	for i, h := range []string{ViewerAddressHeader, "X-Forwarded-For", "X-Real-Ip", "Forwarded"} {
		r := post("/api/downloads", `{"image":"nginx"}`)
		r.RemoteAddr = "198.51.100.3:1000"
		r.Header.Set(h, "192.0.2."+string(rune('1'+i))+":80")
		res := do(t, api, r)
		if i == 0 && res.status != http.StatusAccepted {
			t.Fatalf("first request: %d", res.status)
		}
		if i > 0 {
			checkError(t, res, http.StatusTooManyRequests, tarport.CodeRateLimited)
		}
	}
}

func TestViewerHost(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"198.51.100.10:46532":    "198.51.100.10",
		"2001:db8::1:46532":      "2001:db8::1",
		"[2001:db8::1]:46532":    "2001:db8::1",
		"2001:db8:1:2:3:4:5:6:1": "2001:db8:1:2:3:4:5:6",
		"198.51.100.10":          "198.51.100.10",
		" 198.51.100.10:1 ":      "198.51.100.10",
	} {
		if got := viewerHost(in); got != want {
			t.Errorf("viewerHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestTokenGuessesAreLimited: wrong tokens count against the client's
// rate, so a token cannot be guessed at line speed.
func TestTokenGuessesAreLimited(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, &fakeDownloads{}, Options{AccessToken: "right", RatePerMinute: 3})
	guess := func(token string) response {
		r := httpGet("/api/downloads/abc")
		r.Header.Set(TokenHeader, token)
		return do(t, api, r)
	}
	for i := range 3 {
		checkError(t, guess(fmt.Sprint("guess-", i)), http.StatusUnauthorized, tarport.CodeAccessDenied)
	}
	checkError(t, guess("right-not"), http.StatusTooManyRequests, tarport.CodeRateLimited)
}

// TestRequestIDs: every answer names its request, differently each time,
// so a user's report finds its log lines.
func TestRequestIDs(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, &fakeDownloads{}, Options{})
	seen := map[string]bool{}
	for _, r := range []*http.Request{httpGet("/api/health"), httpGet("/api/nope"), httpGet("/api/health")} {
		id := do(t, api, r).header.Get("X-Request-Id")
		if len(id) != 16 || seen[id] {
			t.Fatalf("request id %q (seen %v)", id, seen)
		}
		seen[id] = true
	}
}
