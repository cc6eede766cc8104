package faultproxy

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// Always, as a times argument, keeps a fault firing until it is replaced.
const Always = -1

// Endpoint selects where Status injects errors; combine with |.
type Endpoint int

const (
	Manifests Endpoint = 1 << iota // GET/HEAD /v2/<name>/manifests/<ref>
	Blobs                          // GET/HEAD /v2/<name>/blobs/<digest>, before the redirect
	CDN                            // the CDN's blob answers
	Token                          // GET/POST /token
)

// Each fault kind holds one setting; setting it again replaces it. times counts
// down per request the fault fires on; Always never runs out.
type faults struct {
	cut         cutFault
	flip        flipFault
	stall       stallFault
	status      statusFault
	ignoreRange bool
}

type cutFault struct {
	after int64
	reset bool
	times int
}

type flipFault struct {
	digest string // "" matches every blob
	offset int64
	times  int
}

type stallFault struct {
	after int64
	d     time.Duration
	times int
}

type statusFault struct {
	on         Endpoint
	code       int
	retryAfter time.Duration
	times      int
}

// take uses up one firing of a fault.
func take(times *int) bool {
	if *times == 0 {
		return false
	}
	if *times > 0 {
		*times--
	}
	return true
}

// DropAfter makes the CDN close the connection cleanly (FIN) after n body bytes
// of each of the next times blob answers, so the client reads an unexpected EOF.
// n counts from the start of that answer, also of a ranged one. Answers of n
// bytes or fewer are left alone and do not use up a time.
func (p *Proxy) DropAfter(n int64, times int) {
	p.setFault(func(f *faults) { f.cut = cutFault{after: n, times: times} })
}

// ResetAfter is DropAfter with a TCP RST (SO_LINGER 0) instead of a clean close,
// so the client reads "connection reset by peer".
func (p *Proxy) ResetAfter(n int64, times int) {
	p.setFault(func(f *faults) { f.cut = cutFault{after: n, reset: true, times: times} })
}

// FlipByte inverts the byte at offset (from the start of the blob) in the next
// times CDN answers that carry it, for the blob digest ("" for any blob).
func (p *Proxy) FlipByte(digest string, offset int64, times int) {
	p.setFault(func(f *faults) { f.flip = flipFault{digest: digest, offset: offset, times: times} })
}

// Stall makes the CDN pause for d after sending `after` body bytes, in the next
// times blob answers longer than that, to exercise read idle timeouts.
func (p *Proxy) Stall(after int64, d time.Duration, times int) {
	p.setFault(func(f *faults) { f.stall = stallFault{after: after, d: d, times: times} })
}

// Status makes the next times requests to the endpoints in on answer code
// (429, 500, 502, 503, ...), with Retry-After when retryAfter > 0. On registry
// endpoints it hits requests that passed auth, so a token dance does not use
// it up. A 429 carries Hub's TOOMANYREQUESTS body.
func (p *Proxy) Status(code, times int, retryAfter time.Duration, on Endpoint) {
	p.setFault(func(f *faults) {
		f.status = statusFault{on: on, code: code, retryAfter: retryAfter, times: times}
	})
}

// IgnoreRange makes the CDN answer 200 with the whole blob to ranged requests,
// as some servers do; a client must then not append that body to what it has.
func (p *Proxy) IgnoreRange(ignore bool) {
	p.setFault(func(f *faults) { f.ignoreRange = ignore })
}

// ClearFaults removes every fault; counters and the log stay.
func (p *Proxy) ClearFaults() {
	p.setFault(func(f *faults) { *f = faults{} })
}

func (p *Proxy) setFault(set func(*faults)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	set(&p.faults)
}

// bodyPlan is where, in one answer body, faults fire; -1 means never.
type bodyPlan struct {
	cutAt   int64
	reset   bool
	stallAt int64
	stall   time.Duration
	flipAt  int64
}

// planBody arms the faults that will fire within an answer of length bytes
// starting at blob offset start. Only those use up a time, so a small config
// blob fetched first does not swallow a fault meant for a layer.
func (p *Proxy) planBody(digest string, start, length int64) bodyPlan {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := &p.faults
	plan := bodyPlan{cutAt: -1, stallAt: -1, flipAt: -1}
	if f.cut.after < length && take(&f.cut.times) {
		plan.cutAt, plan.reset = f.cut.after, f.cut.reset
	}
	if f.stall.after < length && take(&f.stall.times) {
		plan.stallAt, plan.stall = f.stall.after, f.stall.d
	}
	inRange := f.flip.offset >= start && f.flip.offset < start+length
	if inRange && (f.flip.digest == "" || f.flip.digest == digest) && take(&f.flip.times) {
		plan.flipAt = f.flip.offset - start
	}
	return plan
}

// next is the first body offset after sent where the plan must act.
func (b bodyPlan) next(sent int64) int64 {
	next := int64(math.MaxInt64)
	for _, at := range []int64{b.cutAt, b.stallAt} {
		if at > sent && at < next {
			next = at
		}
	}
	return next
}

// count bumps a counter under the lock.
func (p *Proxy) count(c *int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	*c++
}

// injectStatus answers with the armed error status if it applies to on.
func (p *Proxy) injectStatus(w *tracked, on Endpoint) bool {
	p.mu.Lock()
	f := p.faults.status
	fire := f.on&on != 0 && take(&p.faults.status.times)
	if fire {
		p.stats.Statuses++
	}
	p.mu.Unlock()
	if !fire {
		return false
	}
	w.fired("status")
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.retryAfter.Seconds()))))
	}
	if f.code == http.StatusTooManyRequests {
		// fixtures/hub/error-429.json: clients match the code, never the message.
		writeError(w, f.code, "TOOMANYREQUESTS",
			"You have reached your unauthenticated pull rate limit. https://www.docker.com/increase-rate-limit", nil)
		return true
	}
	writeError(w, f.code, "UNAVAILABLE", http.StatusText(f.code), nil)
	return true
}
