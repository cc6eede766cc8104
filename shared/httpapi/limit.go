package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/tarport/tarport/shared/tarport"
)

// limiter is a per-client token bucket: rate tokens per window, refilled
// continuously, so bursts up to rate pass and steady abuse does not.
type limiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per window
	window  time.Duration
	buckets map[string]*bucket
	now     func() time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate int, window time.Duration) *limiter {
	return &limiter{rate: float64(rate), window: window, buckets: map[string]*bucket{}, now: time.Now}
}

// allow takes a token for client, or says how long until one is free.
func (l *limiter) allow(client string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.buckets) > 100_000 {
		for k, b := range l.buckets {
			if now.Sub(b.last) > l.window {
				delete(l.buckets, k)
			}
		}
	}
	b, ok := l.buckets[client]
	if !ok {
		b = &bucket{tokens: l.rate, last: now}
		l.buckets[client] = b
	}
	b.tokens = min(l.rate, b.tokens+now.Sub(b.last).Seconds()*l.rate/l.window.Seconds())
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(l.window))
	return false, wait
}

// clientOf is who a request counts against: its peer's IPv4 address, or
// the /64 of its IPv6 address (one subscriber holds a whole /64, so a
// per-address limit would give them 2^64 buckets).
func clientOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if addr = addr.Unmap(); addr.Is6() {
		return netip.PrefixFrom(addr.WithZone(""), 64).Masked().String()
	}
	return addr.String()
}

func (a *API) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.allow(w, r) {
			h(w, r)
		}
	}
}

// allow takes a token for the request's client, or answers 429.
func (a *API) allow(w http.ResponseWriter, r *http.Request) bool {
	if ok, wait := a.limiter.allow(clientOf(r)); !ok {
		secs := int(wait.Seconds()) + 1
		err := tarport.Errorf(tarport.CodeRateLimited, "too many requests from your address; try again in %d s", secs)
		err.RetryAfter = secs
		writeError(w, r, a.log, err)
		return false
	}
	return true
}
