package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/limits"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/fakeclock"
)

// The limiter's own rules (refill, buckets per client, atomicity) are
// limitstest's; these tests are about which requests count, as whom.

func TestClientOf(t *testing.T) {
	t.Parallel()
	// An IPv6 client owns a /64: every address in it is one client.
	for addr, want := range map[string]string{
		"192.0.2.1:1234":                     "192.0.2.1",
		"192.0.2.9":                          "192.0.2.9",
		"[::ffff:192.0.2.7]:99":              "192.0.2.7",
		"[2001:db8::1]:80":                   "2001:db8::/64",
		"[2001:db8:0:0:ffff:1:2:3]:80":       "2001:db8::/64",
		"[2001:db8:0:1::1]:80":               "2001:db8:0:1::/64",
		"[fe80::1%eth0]:80":                  "fe80::/64",
		"[2001:db8:aaaa:bbbb:cccc::9]:65535": "2001:db8:aaaa:bbbb::/64",
	} {
		r := httpGet("/api/health")
		r.RemoteAddr = addr
		if got := (&API{}).clientOf(r); got != want {
			t.Errorf("clientOf(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestBundleCountsPerImage: a bundle of N images is N requests against
// the client's rate limit (its registries are asked about each).
func TestBundleCountsPerImage(t *testing.T) {
	t.Parallel()
	d := &fakeDownloads{}
	c := fakeclock.At(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC))
	api := newTestAPI(t, d, Options{Limits: limits.New(limits.NewMemory(), limits.Rules{RatePerMinute: 4}, c.Now)})
	if res := do(t, api, post("/api/downloads", `{"images":["a","b","c"]}`)); res.status != 202 {
		t.Fatalf("a bundle of 3 within a limit of 4: %d", res.status)
	}
	res := do(t, api, post("/api/downloads", `{"images":["a","b"]}`))
	checkError(t, res, http.StatusTooManyRequests, tarport.CodeRateLimited)
	if n := len(d.createCalls()); n != 1 {
		t.Fatalf("the service was asked %d times, want 1", n)
	}
}

// TestLimitedHandlers: job-creating requests over the limit answer 429
// with Retry-After in the error shape; other clients and status reads go on.
func TestLimitedHandlers(t *testing.T) {
	t.Parallel()
	d := &fakeDownloads{}
	c := fakeclock.At(time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC))
	api := newTestAPI(t, d, Options{Limits: limits.New(limits.NewMemory(), limits.Rules{RatePerMinute: 2}, c.Now)})

	from := func(r *http.Request, ip string) *http.Request { r.RemoteAddr = ip + ":5555"; return r }
	// POST and pull share the client's bucket.
	if res := do(t, api, from(post("/api/downloads", `{"image":"nginx"}`), "198.51.100.7")); res.status != 202 {
		t.Fatalf("first request: %d", res.status)
	}
	if res := do(t, api, from(httpGet("/api/pull/nginx"), "198.51.100.7")); res.status == 429 {
		t.Fatalf("second request limited")
	}
	for _, r := range []*http.Request{post("/api/downloads", `{"image":"nginx"}`), post("/api/download", `{}`), httpGet("/api/pull/nginx")} {
		res := do(t, api, from(r, "198.51.100.7"))
		checkError(t, res, http.StatusTooManyRequests, tarport.CodeRateLimited)
		secs, err := strconv.Atoi(res.header.Get("Retry-After"))
		if err != nil || secs < 30 || secs > 31 {
			t.Errorf("%s: Retry-After %q, want about 30 s", r.URL.Path, res.header.Get("Retry-After"))
		}
	}
	if n := len(d.createCalls()); n != 2 {
		t.Errorf("the service was asked %d times, want 2", n)
	}
	// Another client, and status reads, are not limited.
	if res := do(t, api, from(post("/api/downloads", `{"image":"nginx"}`), "198.51.100.8")); res.status != 202 {
		t.Errorf("another client: %d", res.status)
	}
	for range 5 {
		if res := do(t, api, from(httpGet("/api/downloads/abc"), "198.51.100.7")); res.status == 429 {
			t.Fatalf("status reads are limited")
		}
		if res := do(t, api, from(httpGet("/api/health"), "198.51.100.7")); res.status != 200 {
			t.Fatalf("health: %d", res.status)
		}
	}
	// A token is back after window/rate.
	c.Advance(30 * time.Second)
	if res := do(t, api, from(post("/api/downloads", `{"image":"nginx"}`), "198.51.100.7")); res.status != 202 {
		t.Errorf("after 30 s: %d, want the refilled token", res.status)
	}
}

// TestLimitedPerIPv6Slash64: the addresses of one /64 share a bucket;
// the next /64 is another client.
func TestLimitedPerIPv6Slash64(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, &fakeDownloads{}, Options{RatePerMinute: 2})
	from := func(addr string) *http.Request {
		r := post("/api/downloads", `{"image":"nginx"}`)
		r.RemoteAddr = "[" + addr + "]:5555"
		return r
	}
	for _, addr := range []string{"2001:db8::1", "2001:db8::2"} {
		if res := do(t, api, from(addr)); res.status != http.StatusAccepted {
			t.Fatalf("%s: %d", addr, res.status)
		}
	}
	checkError(t, do(t, api, from("2001:db8::ffff:1")), http.StatusTooManyRequests, tarport.CodeRateLimited)
	if res := do(t, api, from("2001:db8:0:1::1")); res.status != http.StatusAccepted {
		t.Errorf("the next /64: %d, want its own bucket", res.status)
	}
}

// TestStatusWithCredentialsIsLimited: a status read with credentials
// makes the registry check them, so it counts against the client's limit
// (else: a password-guessing oracle); plain status reads do not.
func TestStatusWithCredentialsIsLimited(t *testing.T) {
	t.Parallel()
	d := &fakeDownloads{status: func(context.Context, string) (download.View, error) { return pendingView(), nil }}
	api := newTestAPI(t, d, Options{RatePerMinute: 2})
	withCreds := func() *http.Request {
		r := httpGet("/api/downloads/abc")
		r.SetBasicAuth("alice", "guess")
		return r
	}
	for range 2 {
		if res := do(t, api, withCreds()); res.status != http.StatusOK {
			t.Fatalf("status with credentials: %d", res.status)
		}
	}
	checkError(t, do(t, api, withCreds()), http.StatusTooManyRequests, tarport.CodeRateLimited)
	for range 5 {
		if res := do(t, api, httpGet("/api/downloads/abc")); res.status != http.StatusOK {
			t.Fatalf("a plain status read was limited: %d", res.status)
		}
	}
}
