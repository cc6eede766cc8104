// Package limits holds tarport's guards against one client, or all of them
// together, using more than their share: a per-client request rate and
// daily byte quotas per client and for the whole service (DESIGN.md,
// "Guards"). The rules live here once; a Store only keeps counters
// atomically, in memory locally (Memory) and in DynamoDB on AWS (package
// dynamo), so every Lambda instance counts against the same numbers. One
// behaviour suite (limitstest) runs against both.
package limits

import (
	"context"
	"fmt"
	"time"

	"github.com/tarport/tarport/shared/metrics"
	"github.com/tarport/tarport/shared/tarport"
)

// Store keeps the counters. Every method is atomic against concurrent
// callers, in this process and in others sharing the store.
type Store interface {
	// Take spends cost requests (1..burst) from key's token bucket, at
	// once or not at all, kept as a theoretical arrival time (GCRA, see
	// Admit): with tat the stored time (now when absent or past), they
	// pass when tat + cost*every - now <= burst*every, and tat becomes
	// tat + cost*every. Refused, it says how long until they would pass.
	Take(ctx context.Context, key string, now time.Time, every time.Duration, burst, cost int) (wait time.Duration, err error)
	// Usage returns key's hourly byte counts for the hours from since on.
	Usage(ctx context.Context, key string, since time.Time) ([]Bucket, error)
	// Add adds n to key's count for hour (a whole UTC hour) if the count
	// stays at most max; max < 0 adds unconditionally (a refund).
	Add(ctx context.Context, key string, hour time.Time, n, max int64) (bool, error)
	// Mark records key until now+ttl and says whether it was not already
	// recorded; Marked says whether it is.
	Mark(ctx context.Context, key string, now time.Time, ttl time.Duration) (first bool, err error)
	Marked(ctx context.Context, key string, now time.Time) (bool, error)
}

// Bucket is one hour's bytes.
type Bucket struct {
	Hour  time.Time // the hour's start, UTC
	Bytes int64
}

// Rules are the limits; a zero quota is no quota.
type Rules struct {
	RatePerMinute int   // requests per client per minute, with bursts of as many
	ClientPerDay  int64 // tar bytes one client may ask for per rolling 24 h
	BudgetPerDay  int64 // tar bytes all clients together may ask for per rolling 24 h
}

// Day is the quotas' rolling window: the current hour and the 23 before.
const Day = 24 * time.Hour

// Limiter applies Rules over a Store.
type Limiter struct {
	store   Store
	rules   Rules
	now     func() time.Time
	metrics *metrics.Metrics
}

// WithMetrics counts refusals and charged bytes into m.
func (l *Limiter) WithMetrics(m *metrics.Metrics) *Limiter {
	l.metrics = m
	return l
}

// New returns a Limiter; now is the clock (time.Now when nil).
func New(store Store, rules Rules, now func() time.Time) *Limiter {
	if rules.RatePerMinute <= 0 {
		rules.RatePerMinute = 100
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{store: store, rules: rules, now: now}
}

// Admit is GCRA, the token bucket as one stored time: tat is the time the
// bucket would be full again, or zero. The request passes when it leaves
// the bucket at most burst requests ahead of the steady rate; then it
// returns the new tat, else how long until it would pass. Memory applies
// it as is; DynamoDB applies the same inequality in its conditions.
func Admit(tat, now time.Time, every time.Duration, burst, cost int) (next time.Time, wait time.Duration) {
	if tat.Before(now) {
		tat = now
	}
	next = tat.Add(time.Duration(cost) * every)
	if over := next.Sub(now) - time.Duration(burst)*every; over > 0 {
		return tat, over
	}
	return next, 0
}

// Allow counts one request of client, or refuses it with rate_limited and
// the seconds until it would pass.
func (l *Limiter) Allow(ctx context.Context, client string) error { return l.AllowN(ctx, client, 1) }

// AllowN counts n requests of client at once (a bundle of n images), or
// none: refused with rate_limited and the seconds until they would pass,
// or with too_large when n is more than the client may ever make at once.
func (l *Limiter) AllowN(ctx context.Context, client string, n int) error {
	if n <= 0 {
		return nil
	}
	if n > l.rules.RatePerMinute {
		return tarport.Errorf(tarport.CodeTooLarge, "this counts as %d requests, and your address may make at most %d a minute: ask for fewer images at once", n, l.rules.RatePerMinute)
	}
	every := time.Minute / time.Duration(l.rules.RatePerMinute)
	wait, err := l.store.Take(ctx, client, l.now(), every, l.rules.RatePerMinute, n)
	if err != nil {
		return tarport.Wrap(err, tarport.CodeUnavailable, "the request could not be counted; try again")
	}
	if wait > 0 {
		l.metrics.Refused(string(tarport.CodeRateLimited))
		secs := seconds(wait)
		e := tarport.Errorf(tarport.CodeRateLimited, "too many requests from your address; try again in %d s", secs)
		e.RetryAfter = secs
		return e
	}
	return nil
}

// Charge counts a tar of n bytes against client's daily quota and the
// service's daily budget, or refuses it with quota_exceeded, saying when it
// would fit. A client asking again for what it was charged for in the
// last day (the same mark, e.g. a job key) is not charged twice.
func (l *Limiter) Charge(ctx context.Context, client, mark string, n int64) error {
	if l.rules.ClientPerDay <= 0 && l.rules.BudgetPerDay <= 0 {
		return nil
	}
	now := l.now()
	markKey := client + "#" + mark
	if seen, err := l.store.Marked(ctx, markKey, now); err != nil {
		return unavailable(err)
	} else if seen {
		return nil
	}
	quotas := []quota{
		{key: "client#" + client, limit: l.rules.ClientPerDay, whose: "your address's"},
		{key: "budget", limit: l.rules.BudgetPerDay, whose: "this service's"},
	}
	var charged []quota
	refund := func() {
		// Best effort: without transactions a refund that fails leaves
		// the bytes counted, which errs on the side of the quota.
		for _, q := range charged {
			l.store.Add(context.WithoutCancel(ctx), q.key, hourOf(now), -n, -1)
		}
	}
	for _, q := range quotas {
		if q.limit <= 0 {
			continue
		}
		if err := l.take(ctx, q, now, n); err != nil {
			refund()
			if tarport.ErrorCode(err) == tarport.CodeQuotaExceeded {
				l.metrics.Refused(string(tarport.CodeQuotaExceeded))
			}
			return err
		}
		charged = append(charged, q)
	}
	first, err := l.store.Mark(ctx, markKey, now, Day)
	if err != nil || !first {
		// A concurrent twin of this request was charged already.
		refund()
	}
	if err != nil {
		return unavailable(err)
	}
	if first {
		l.metrics.ChargedBytes(n)
	}
	return nil
}

type quota struct {
	key   string
	limit int64
	whose string
}

// take adds n to q's current hour if the day's total stays within q.limit.
func (l *Limiter) take(ctx context.Context, q quota, now time.Time, n int64) error {
	hour := hourOf(now)
	since := hour.Add(-Day + time.Hour)
	for range 3 {
		buckets, err := l.store.Usage(ctx, q.key, since)
		if err != nil {
			return unavailable(err)
		}
		// Past hours are closed: only the current one changes, and Add's
		// condition makes that atomic.
		var past, total int64
		for _, b := range buckets {
			total += b.Bytes
			if b.Hour.Before(hour) {
				past += b.Bytes
			}
		}
		if total+n > q.limit {
			return l.refusal(q, buckets, n, now)
		}
		ok, err := l.store.Add(ctx, q.key, hour, n, q.limit-past)
		if err != nil {
			return unavailable(err)
		}
		if ok {
			return nil
		}
		// Refused by the current hour's count: read again, and say when.
	}
	buckets, err := l.store.Usage(ctx, q.key, since)
	if err != nil {
		return unavailable(err)
	}
	return l.refusal(q, buckets, n, now)
}

// refusal is quota_exceeded, with the time the oldest hours have rolled
// out of the window far enough for n more bytes.
func (l *Limiter) refusal(q quota, buckets []Bucket, n int64, now time.Time) error {
	var used int64
	for _, b := range buckets {
		used += b.Bytes
	}
	at := now.Add(Day) // n alone is over the limit: nothing earlier helps
	if n <= q.limit {
		for _, b := range buckets { // oldest first
			used -= b.Bytes
			if used+n <= q.limit {
				at = b.Hour.Add(Day)
				break
			}
		}
	}
	wait := max(at.Sub(now), time.Second)
	var e *tarport.Error
	if n > q.limit {
		e = tarport.Errorf(tarport.CodeQuotaExceeded, "this download (%s) is larger than %s whole daily quota of %s: it cannot be downloaded here", Size(n), q.whose, Size(q.limit))
	} else {
		e = tarport.Errorf(tarport.CodeQuotaExceeded, "this download (%s) would pass %s daily quota of %s; it fits again at %s UTC (in %s)",
			Size(n), q.whose, Size(q.limit), at.UTC().Format("2006-01-02 15:04"), wait.Round(time.Minute))
	}
	e.RetryAfter = seconds(wait)
	return e
}

func unavailable(err error) error {
	return tarport.Wrap(err, tarport.CodeUnavailable, "the quota could not be checked; try again")
}

func hourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// seconds rounds up, so a client waiting Retry-After is not refused again.
func seconds(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }

// Size formats bytes for people (binary units, as the settings take them).
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
