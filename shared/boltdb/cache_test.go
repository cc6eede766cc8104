package boltdb

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tarport/tarport/shared/discovery"
	"github.com/tarport/tarport/shared/discovery/cachetest"
	"github.com/tarport/tarport/shared/testkit/fakeclock"
)

func openCache(t *testing.T, path string) (*Cache, *fakeclock.Clock) {
	t.Helper()
	c, err := OpenCache(path)
	if err != nil {
		t.Fatalf("OpenCache: %v", err)
	}
	clk := newClock()
	c.now = clk.Now
	t.Cleanup(func() { c.Close() })
	return c, clk
}

func entry(value string, ttl, retention time.Duration) discovery.Entry {
	return discovery.Entry{Value: []byte(value), StoredAt: t0, ExpiresAt: t0.Add(ttl), DeleteAt: t0.Add(ttl + retention)}
}

func equalEntry(a, b discovery.Entry) bool {
	return bytes.Equal(a.Value, b.Value) && a.StoredAt.Equal(b.StoredAt) && a.ExpiresAt.Equal(b.ExpiresAt) && a.DeleteAt.Equal(b.DeleteAt)
}

// TestCacheSurvivesRestart: entries are on disk, times and bytes intact.
func TestCacheSurvivesRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := OpenCache(path)
	if err != nil {
		t.Fatal(err)
	}
	c.now = newClock().Now
	want := entry(`{"a":1}`, time.Minute, time.Hour)
	want.StoredAt = want.StoredAt.Add(123) // nanoseconds survive
	if err := c.Set(ctx, "v1:k", want); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, _ := openCache(t, path)
	got, found, err := c2.Get(ctx, "v1:k")
	if err != nil || !found || !equalEntry(got, want) {
		t.Fatalf("after restart: %+v %v %v, want %+v", got, found, err, want)
	}
	if _, found, err := c2.Get(ctx, "v1:missing"); found || err != nil {
		t.Fatalf("missing key: found=%v err=%v", found, err)
	}
}

// TestCacheContract: the behaviour every discovery cache shares.
func TestCacheContract(t *testing.T) {
	t.Parallel()
	cachetest.Run(t, func(t *testing.T, now func() time.Time) discovery.Cache {
		c, err := OpenCache(filepath.Join(t.TempDir(), "cache.db"))
		if err != nil {
			t.Fatalf("OpenCache: %v", err)
		}
		c.now = now
		t.Cleanup(func() { c.Close() })
		return c
	})
}

// TestCacheSweepsDeadEntries: a write after sweepInterval removes entries
// past DeleteAt from the file, and only those.
func TestCacheSweepsDeadEntries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, clk := openCache(t, filepath.Join(t.TempDir(), "cache.db"))
	if err := c.Set(ctx, "short", entry("s", time.Minute, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "long", entry("l", time.Minute, 48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(sweepInterval + time.Minute)
	if err := c.Set(ctx, "new", discovery.Entry{Value: []byte("n"), DeleteAt: clk.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	err := c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(cacheBucket).ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"long", "new"}; len(keys) != 2 || keys[0] != want[0] || keys[1] != want[1] {
		t.Fatalf("keys after sweep = %v, want %v", keys, want)
	}
}

// TestCacheRejectsUnknownRecords: a record from another format version is
// an error, not garbage handed to the service.
func TestCacheRejectsUnknownRecords(t *testing.T) {
	t.Parallel()
	c, _ := openCache(t, filepath.Join(t.TempDir(), "cache.db"))
	err := c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(cacheBucket).Put([]byte("k"), []byte{9, 1, 2}) })
	if err != nil {
		t.Fatal(err)
	}
	if _, found, err := c.Get(context.Background(), "k"); err == nil || found {
		t.Fatalf("Get of a bad record: found=%v err=%v", found, err)
	}
}
