// Package limitstest holds the behaviour every limits.Store must give the
// Limiter, as one suite each store's tests run against a real backend:
// the request rate as a token bucket, quotas over a rolling day in hours,
// charges counted once per mark, refunds, and all of it atomic when
// clients race or two processes (two Lambda instances) share the store.
package limitstest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/limits"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/fakeclock"
)

// T0 is the fake "now" each case starts at, 10 minutes into an hour.
var T0 = time.Date(2025, 3, 1, 12, 10, 0, 0, time.UTC)

// Open returns a fresh, empty store.
type Open func(t *testing.T) limits.Store

// Run runs the suite against the stores open returns.
func Run(t *testing.T, open Open) { RunSkipping(t, open, nil) }

// RunSkipping is Run for a stand-in known to differ from the real store in
// some cases: each case named in skip is skipped with the reason given,
// which must say what differs and what the real store documents.
func RunSkipping(t *testing.T, open Open, skip map[string]string) {
	for _, c := range []struct {
		name string
		run  func(t *testing.T, open Open)
	}{
		{"RateRefills", rateRefills},
		{"RatePerClient", ratePerClient},
		{"RateAtomic", rateAtomic},
		{"RateSharedByInstances", rateSharedByInstances},
		{"RateCost", rateCost},
		{"QuotaPerClient", quotaPerClient},
		{"QuotaRollsOver", quotaRollsOver},
		{"BudgetRefundsClient", budgetRefundsClient},
		{"LargerThanQuota", largerThanQuota},
		{"ChargesAtomic", chargesAtomic},
		{"MarkCountsOnce", markCountsOnce},
		{"NoQuotas", noQuotas},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if why, ok := skip[c.name]; ok {
				t.Skip(why)
			}
			c.run(t, open)
		})
	}
}

func newClock() *fakeclock.Clock { return fakeclock.At(T0) }

// refused checks err is code with a Retry-After of about wait.
func refused(t *testing.T, err error, code tarport.Code, wait time.Duration) *tarport.Error {
	t.Helper()
	var e *tarport.Error
	if !errors.As(err, &e) || e.Code != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	if want := int((wait + time.Second - 1) / time.Second); e.RetryAfter < want-1 || e.RetryAfter > want+1 {
		t.Fatalf("Retry-After %d s, want %d s (%v)", e.RetryAfter, want, err)
	}
	return e
}

func ok(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// rateRefills: a full bucket lets a burst of RatePerMinute through, then
// one request comes back every minute/rate; a rest saves up no more than
// the burst.
func rateRefills(t *testing.T, open Open) {
	c := newClock()
	l := limits.New(open(t), limits.Rules{RatePerMinute: 3}, c.Now) // one every 20 s
	ctx := context.Background()
	for i, s := range []struct {
		advance time.Duration
		ok      bool
		wait    time.Duration
	}{
		{0, true, 0}, {0, true, 0}, {0, true, 0}, // the burst
		{0, false, 20 * time.Second},
		{10 * time.Second, false, 10 * time.Second},
		{10 * time.Second, true, 0},
		{0, false, 20 * time.Second},
		{time.Hour, true, 0}, // a long rest saves up the burst, no more
		{0, true, 0},
		{0, true, 0},
		{0, false, 20 * time.Second},
	} {
		c.Advance(s.advance)
		err := l.Allow(ctx, "192.0.2.1")
		if s.ok {
			ok(t, err, fmt.Sprintf("step %d", i))
			continue
		}
		refused(t, err, tarport.CodeRateLimited, s.wait)
	}
}

// rateCost: n requests at once (a bundle) pass together or not at all,
// and more than the burst never pass.
func rateCost(t *testing.T, open Open) {
	c := newClock()
	l := limits.New(open(t), limits.Rules{RatePerMinute: 4}, c.Now) // one every 15 s
	ctx := context.Background()
	ok(t, l.AllowN(ctx, "192.0.2.5", 3), "3 of a burst of 4")
	refused(t, l.AllowN(ctx, "192.0.2.5", 2), tarport.CodeRateLimited, 15*time.Second)
	ok(t, l.Allow(ctx, "192.0.2.5"), "the one left: the refused 2 took none")
	refused(t, l.Allow(ctx, "192.0.2.5"), tarport.CodeRateLimited, 15*time.Second)
	c.Advance(time.Minute)
	ok(t, l.AllowN(ctx, "192.0.2.5", 4), "a whole burst after a rest")
	c.Advance(time.Hour)
	var e *tarport.Error
	if err := l.AllowN(ctx, "192.0.2.5", 5); !errors.As(err, &e) || e.Code != tarport.CodeTooLarge {
		t.Fatalf("more than the burst at once: %v, want too_large", err)
	}
	ok(t, l.AllowN(ctx, "192.0.2.5", 4), "and it took none")
}

// ratePerClient: one client's burst does not limit another.
func ratePerClient(t *testing.T, open Open) {
	l := limits.New(open(t), limits.Rules{RatePerMinute: 2}, newClock().Now)
	ctx := context.Background()
	for _, client := range []string{"192.0.2.1", "192.0.2.2", "2001:db8::/64"} {
		for i := range 2 {
			ok(t, l.Allow(ctx, client), fmt.Sprintf("%s request %d", client, i+1))
		}
		if l.Allow(ctx, client) == nil {
			t.Fatalf("%s: third request allowed", client)
		}
	}
}

// rateAtomic: requests racing for a bucket get exactly its burst.
func rateAtomic(t *testing.T, open Open) {
	l := limits.New(open(t), limits.Rules{RatePerMinute: 5}, newClock().Now)
	var passed atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.Allow(context.Background(), "192.0.2.9")
			if err == nil {
				passed.Add(1)
			} else if tarport.ErrorCode(err) != tarport.CodeRateLimited {
				t.Errorf("Allow: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := passed.Load(); n != 5 {
		t.Fatalf("%d of 20 racing requests passed a burst of 5", n)
	}
}

// rateSharedByInstances: two limiters over one store (two Lambda
// instances) count against the same bucket.
func rateSharedByInstances(t *testing.T, open Open) {
	store := open(t)
	c := newClock()
	a := limits.New(store, limits.Rules{RatePerMinute: 4}, c.Now)
	b := limits.New(store, limits.Rules{RatePerMinute: 4}, c.Now)
	ctx := context.Background()
	for i, l := range []*limits.Limiter{a, b, a, b} {
		ok(t, l.Allow(ctx, "198.51.100.1"), fmt.Sprintf("request %d", i+1))
	}
	refused(t, b.Allow(ctx, "198.51.100.1"), tarport.CodeRateLimited, 15*time.Second)
	refused(t, a.Allow(ctx, "198.51.100.1"), tarport.CodeRateLimited, 15*time.Second)
}

// quotaPerClient: a client's bytes add up to its quota and no further; the
// refusal says when the bytes fit again; other clients are not touched.
func quotaPerClient(t *testing.T, open Open) {
	c := newClock()
	l := limits.New(open(t), limits.Rules{ClientPerDay: 100}, c.Now)
	ctx := context.Background()
	ok(t, l.Charge(ctx, "192.0.2.1", "job-a", 60), "first 60 bytes")
	c.Advance(2 * time.Hour)
	e := refused(t, l.Charge(ctx, "192.0.2.1", "job-b", 50), tarport.CodeQuotaExceeded, 22*time.Hour-10*time.Minute)
	for _, want := range []string{"your address", "100 B", "50 B", "2025-03-02 12:00 UTC"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("refusal %q does not say %q", e.Message, want)
		}
	}
	ok(t, l.Charge(ctx, "192.0.2.1", "job-c", 40), "40 more: exactly the quota")
	refused(t, l.Charge(ctx, "192.0.2.1", "job-d", 1), tarport.CodeQuotaExceeded, 22*time.Hour-10*time.Minute)
	ok(t, l.Charge(ctx, "192.0.2.2", "job-b", 100), "another client")
}

// quotaRollsOver: bytes leave the window 24 hours after the hour they were
// counted in, and the refusal names the hour that frees enough.
func quotaRollsOver(t *testing.T, open Open) {
	c := newClock()
	l := limits.New(open(t), limits.Rules{ClientPerDay: 100}, c.Now)
	ctx := context.Background()
	ok(t, l.Charge(ctx, "192.0.2.1", "a", 30), "hour 0")
	c.Advance(time.Hour)
	ok(t, l.Charge(ctx, "192.0.2.1", "b", 30), "hour 1")
	c.Advance(time.Hour)
	ok(t, l.Charge(ctx, "192.0.2.1", "c", 40), "hour 2")
	c.Advance(20 * time.Hour) // 22:10 after T0
	// 50 more need hours 0 and 1 gone: at T0's hour + 25 h.
	refused(t, l.Charge(ctx, "192.0.2.1", "d", 50), tarport.CodeQuotaExceeded, 3*time.Hour-10*time.Minute)
	c.Advance(2*time.Hour - 10*time.Minute) // hour 24: hour 0 is out
	ok(t, l.Charge(ctx, "192.0.2.1", "e", 30), "after hour 0 left the window")
	refused(t, l.Charge(ctx, "192.0.2.1", "f", 1), tarport.CodeQuotaExceeded, time.Hour)
}

// budgetRefundsClient: the service's budget counts every client; a request
// it refuses leaves the client's own quota as it was.
func budgetRefundsClient(t *testing.T, open Open) {
	store := open(t)
	c := newClock()
	l := limits.New(store, limits.Rules{ClientPerDay: 50, BudgetPerDay: 100}, c.Now)
	ctx := context.Background()
	ok(t, l.Charge(ctx, "192.0.2.1", "a", 50), "client 1")
	ok(t, l.Charge(ctx, "192.0.2.2", "a", 40), "client 2")
	e := refused(t, l.Charge(ctx, "192.0.2.3", "a", 20), tarport.CodeQuotaExceeded, 24*time.Hour-10*time.Minute)
	if !strings.Contains(e.Message, "this service") {
		t.Errorf("budget refusal %q does not say it is the service's", e.Message)
	}
	ok(t, l.Charge(ctx, "192.0.2.3", "b", 10), "client 3 within the budget's rest")
	buckets, err := store.Usage(ctx, "client#192.0.2.3", T0.Add(-limits.Day))
	ok(t, err, "usage")
	var sum int64
	for _, b := range buckets {
		sum += b.Bytes
	}
	if sum != 10 {
		t.Fatalf("client 3 is charged %d bytes, want 10 (the refused 20 refunded)", sum)
	}
}

// largerThanQuota: a tar bigger than the quota itself never fits.
func largerThanQuota(t *testing.T, open Open) {
	l := limits.New(open(t), limits.Rules{ClientPerDay: 100}, newClock().Now)
	e := refused(t, l.Charge(context.Background(), "192.0.2.1", "a", 101), tarport.CodeQuotaExceeded, limits.Day)
	if !strings.Contains(e.Message, "larger than") {
		t.Errorf("refusal %q does not say the download is larger than the quota", e.Message)
	}
}

// chargesAtomic: racing charges never pass the quota.
func chargesAtomic(t *testing.T, open Open) {
	l := limits.New(open(t), limits.Rules{ClientPerDay: 100}, newClock().Now)
	var passed atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.Charge(context.Background(), "192.0.2.1", fmt.Sprint("job-", i), 10)
			if err == nil {
				passed.Add(1)
			} else if tarport.ErrorCode(err) != tarport.CodeQuotaExceeded {
				t.Errorf("Charge: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := passed.Load(); n != 10 {
		t.Fatalf("%d of 20 racing 10-byte charges passed a 100-byte quota", n)
	}
}

// markCountsOnce: asking again for the same job within the day is free,
// racing twins are charged once, and a day later it counts again.
func markCountsOnce(t *testing.T, open Open) {
	store := open(t)
	c := newClock()
	l := limits.New(store, limits.Rules{ClientPerDay: 1000, BudgetPerDay: 1000}, c.Now)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Charge(ctx, "192.0.2.1", "job-a", 100); err != nil {
				t.Errorf("Charge: %v", err)
			}
		}()
	}
	wg.Wait()
	ok(t, l.Charge(ctx, "192.0.2.1", "job-a", 100), "again")
	for _, key := range []string{"client#192.0.2.1", "budget"} {
		if n := used(t, store, key, c.Now()); n != 100 {
			t.Fatalf("%s: %d bytes counted for one job asked for 9 times, want 100", key, n)
		}
	}
	c.Advance(limits.Day)
	ok(t, l.Charge(ctx, "192.0.2.1", "job-a", 100), "a day later")
	if n := used(t, store, "client#192.0.2.1", c.Now()); n != 100 {
		t.Fatalf("a day later: %d bytes in the window, want 100", n)
	}
}

// noQuotas: zero quotas charge nothing and never refuse.
func noQuotas(t *testing.T, open Open) {
	store := open(t)
	l := limits.New(store, limits.Rules{}, newClock().Now)
	ok(t, l.Charge(context.Background(), "192.0.2.1", "a", 1<<62), "no quotas")
	if n := used(t, store, "budget", T0); n != 0 {
		t.Fatalf("%d bytes counted without quotas", n)
	}
}

func used(t *testing.T, store limits.Store, key string, now time.Time) int64 {
	t.Helper()
	buckets, err := store.Usage(context.Background(), key, now.Truncate(time.Hour).Add(-limits.Day+time.Hour))
	ok(t, err, "usage")
	var sum int64
	for _, b := range buckets {
		sum += b.Bytes
	}
	return sum
}
