// Package cachetest holds the behaviour every discovery.Cache must have,
// as one suite that each implementation's tests run against a real store.
package cachetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/discovery"
	"github.com/tarport/tarport/shared/testkit/fakeclock"
)

// T0 is the fake "now" each case starts at.
var T0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Clock is the kits' settable clock.
type Clock = fakeclock.Clock

// NewClock returns a clock at T0.
func NewClock() *Clock { return fakeclock.At(T0) }

// Open returns a fresh, empty cache that reads time from now.
type Open func(t *testing.T, now func() time.Time) discovery.Cache

// Run runs the suite as subtests of t.
func Run(t *testing.T, open Open) {
	cases := []struct {
		name string
		run  func(*testing.T, discovery.Cache, *Clock)
	}{
		{"RoundTrip", roundTrip},
		{"Missing", missing},
		{"Overwrite", overwrite},
		{"ExpiredKeptUntilDeleteAt", expiredKeptUntilDeleteAt},
		{"NoDeleteAtKeptForever", noDeleteAtKeptForever},
		{"LargestValue", largestValue},
		{"LongAndUnicodeKeys", longAndUnicodeKeys},
		{"ConcurrentWriters", concurrentWriters},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clk := NewClock()
			c.run(t, open(t, clk.Now), clk)
		})
	}
}

func entry(value []byte, ttl, retention time.Duration) discovery.Entry {
	return discovery.Entry{Value: value, StoredAt: T0, ExpiresAt: T0.Add(ttl), DeleteAt: T0.Add(ttl + retention)}
}

func mustSet(t *testing.T, c discovery.Cache, key string, e discovery.Entry) {
	t.Helper()
	if err := c.Set(context.Background(), key, e); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func mustGet(t *testing.T, c discovery.Cache, key string, want discovery.Entry) {
	t.Helper()
	got, found, err := c.Get(context.Background(), key)
	if err != nil || !found {
		t.Fatalf("Get(%q): found=%v err=%v, want the entry", key, found, err)
	}
	if !Equal(got, want) {
		t.Fatalf("Get(%q) = %s, want %s", key, describe(got), describe(want))
	}
}

func mustMiss(t *testing.T, c discovery.Cache, key string) {
	t.Helper()
	got, found, err := c.Get(context.Background(), key)
	if err != nil || found {
		t.Fatalf("Get(%q): %s found=%v err=%v, want a miss", key, describe(got), found, err)
	}
}

// Equal reports whether two entries hold the same bytes and instants.
func Equal(a, b discovery.Entry) bool {
	return bytes.Equal(a.Value, b.Value) && a.StoredAt.Equal(b.StoredAt) &&
		a.ExpiresAt.Equal(b.ExpiresAt) && a.DeleteAt.Equal(b.DeleteAt)
}

func describe(e discovery.Entry) string {
	v := e.Value
	if len(v) > 40 {
		v = v[:40]
	}
	return fmt.Sprintf("{%d bytes %q… stored %s expires %s delete %s}", len(e.Value), v,
		e.StoredAt.Format(time.RFC3339Nano), e.ExpiresAt.Format(time.RFC3339Nano), e.DeleteAt.Format(time.RFC3339Nano))
}

// roundTrip: bytes (gzip's included) and nanosecond times come back as set.
func roundTrip(t *testing.T, c discovery.Cache, _ *Clock) {
	e := entry([]byte{0x1f, 0x8b, 0, 1, 2, 0xff}, time.Minute, time.Hour)
	e.StoredAt = e.StoredAt.Add(123)
	e.ExpiresAt = e.ExpiresAt.Add(456)
	e.DeleteAt = e.DeleteAt.Add(789)
	mustSet(t, c, "v1:search:1:25:nginx", e)
	mustGet(t, c, "v1:search:1:25:nginx", e)
}

func missing(t *testing.T, c discovery.Cache, _ *Clock) {
	mustMiss(t, c, "v1:never-set")
}

func overwrite(t *testing.T, c discovery.Cache, clk *Clock) {
	mustSet(t, c, "k", entry([]byte(`{"old":1}`), time.Minute, time.Hour))
	clk.Advance(2 * time.Minute)
	newer := discovery.Entry{Value: []byte(`{"new":2}`), StoredAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Minute), DeleteAt: clk.Now().Add(time.Hour)}
	mustSet(t, c, "k", newer)
	mustGet(t, c, "k", newer)
}

// expiredKeptUntilDeleteAt: the service serves expired entries when
// upstream fails, so the store keeps them; past DeleteAt they are gone
// even if the backing store (DynamoDB TTL) has not deleted them yet.
func expiredKeptUntilDeleteAt(t *testing.T, c discovery.Cache, clk *Clock) {
	e := entry([]byte("x"), time.Minute, time.Hour)
	e.DeleteAt = e.DeleteAt.Add(500 * time.Millisecond) // not on a whole second
	mustSet(t, c, "k", e)
	clk.Advance(30 * time.Minute)
	mustGet(t, c, "k", e)
	clk.Advance(31*time.Minute + 499*time.Millisecond) // 1 ms before DeleteAt
	mustGet(t, c, "k", e)
	clk.Advance(time.Millisecond)
	mustMiss(t, c, "k")
}

func noDeleteAtKeptForever(t *testing.T, c discovery.Cache, clk *Clock) {
	e := discovery.Entry{Value: []byte("x"), StoredAt: T0, ExpiresAt: T0.Add(time.Minute)}
	mustSet(t, c, "k", e)
	clk.Advance(24 * 365 * time.Hour)
	mustGet(t, c, "k", e)
}

// largestValue: the service caches values up to MaxValueSize.
func largestValue(t *testing.T, c discovery.Cache, _ *Clock) {
	v := make([]byte, discovery.MaxValueSize)
	rand.Read(v)
	e := entry(v, time.Minute, time.Hour)
	mustSet(t, c, "big", e)
	mustGet(t, c, "big", e)
}

// longAndUnicodeKeys: keys carry user input (queries, references).
func longAndUnicodeKeys(t *testing.T, c discovery.Cache, _ *Clock) {
	keys := []string{
		"v1:search:1:25:数据库 ünïcode 🐳",
		"v1:details:" + strings.Repeat("a", 3000),
		"v1:details:" + strings.Repeat("a", 2999) + "b",
	}
	for i, k := range keys {
		mustSet(t, c, k, entry([]byte(fmt.Sprint(i)), time.Minute, time.Hour))
	}
	for i, k := range keys {
		mustGet(t, c, k, entry([]byte(fmt.Sprint(i)), time.Minute, time.Hour))
	}
}

// concurrentWriters: many writers of many keys; every key ends with one
// of the values written to it.
func concurrentWriters(t *testing.T, c discovery.Cache, _ *Clock) {
	const keys, writers = 8, 4
	var wg sync.WaitGroup
	errs := make(chan error, keys*writers)
	for k := range keys {
		for w := range writers {
			wg.Go(func() {
				v := []byte(fmt.Sprintf("k%d-w%d", k, w))
				if err := c.Set(context.Background(), fmt.Sprintf("k%d", k), entry(v, time.Minute, time.Hour)); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for k := range keys {
		got, found, err := c.Get(context.Background(), fmt.Sprintf("k%d", k))
		if err != nil || !found || !strings.HasPrefix(string(got.Value), fmt.Sprintf("k%d-w", k)) {
			t.Fatalf("key k%d after concurrent writes: %s found=%v err=%v", k, describe(got), found, err)
		}
	}
}
