package boltdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tarport/tarport/shared/discovery"
)

var cacheBucket = []byte("cache") // key -> record (see encodeRecord)

// sweepInterval spaces the deletions of entries past their DeleteAt:
// one pass over the bucket inside a write at most this often.
const sweepInterval = 10 * time.Minute

// Cache is the discovery cache of local mode, in its own bbolt file (the
// job store keeps its file: neither holds the other's lock or schema).
type Cache struct {
	db  *bolt.DB
	now func() time.Time

	mu        sync.Mutex
	lastSweep time.Time
}

var _ discovery.Cache = (*Cache)(nil)

// OpenCache opens (or creates) the cache database at path.
func OpenCache(path string) (*Cache, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening cache database %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(cacheBucket)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("preparing cache database %s: %w", path, err)
	}
	return &Cache{db: db, now: time.Now}, nil
}

// Close closes the database.
func (c *Cache) Close() error { return c.db.Close() }

// Get returns the entry under key, expired or not, unless it is past its
// DeleteAt (and waits for the sweep).
func (c *Cache) Get(_ context.Context, key string) (discovery.Entry, bool, error) {
	var e discovery.Entry
	found := false
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(cacheBucket).Get([]byte(key))
		if v == nil {
			return nil
		}
		var err error
		e, err = decodeRecord(v)
		found = err == nil
		return err
	})
	if err != nil {
		return discovery.Entry{}, false, fmt.Errorf("reading cache entry %s: %w", key, err)
	}
	if found && !e.DeleteAt.IsZero() && !c.now().Before(e.DeleteAt) {
		return discovery.Entry{}, false, nil
	}
	return e, found, nil
}

// Set stores e under key and, now and then, deletes entries past their
// DeleteAt in the same transaction.
func (c *Cache) Set(_ context.Context, key string, e discovery.Entry) error {
	now := c.now()
	sweep := c.sweepDue(now)
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(cacheBucket)
		if err := b.Put([]byte(key), encodeRecord(e)); err != nil {
			return err
		}
		if sweep {
			return sweepBucket(b, now)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing cache entry %s: %w", key, err)
	}
	return nil
}

func (c *Cache) sweepDue(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastSweep) < sweepInterval {
		return false
	}
	c.lastSweep = now
	return true
}

func sweepBucket(b *bolt.Bucket, now time.Time) error {
	var dead [][]byte
	err := b.ForEach(func(k, v []byte) error {
		if e, err := decodeRecord(v); err != nil || (!e.DeleteAt.IsZero() && !now.Before(e.DeleteAt)) {
			dead = append(dead, bytes.Clone(k))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range dead {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// A record is a version byte, three big-endian Unix nanosecond times
// (stored, expires, delete; 0 for the zero time) and the value.
const (
	recordVersion = 1
	recordHeader  = 1 + 3*8
)

func encodeRecord(e discovery.Entry) []byte {
	out := make([]byte, recordHeader, recordHeader+len(e.Value))
	out[0] = recordVersion
	for i, t := range []time.Time{e.StoredAt, e.ExpiresAt, e.DeleteAt} {
		var n int64
		if !t.IsZero() {
			n = t.UnixNano()
		}
		binary.BigEndian.PutUint64(out[1+8*i:], uint64(n))
	}
	return append(out, e.Value...)
}

func decodeRecord(v []byte) (discovery.Entry, error) {
	if len(v) < recordHeader || v[0] != recordVersion {
		return discovery.Entry{}, fmt.Errorf("unknown cache record format")
	}
	var ts [3]time.Time
	for i := range ts {
		if n := int64(binary.BigEndian.Uint64(v[1+8*i:])); n != 0 {
			ts[i] = time.Unix(0, n).UTC()
		}
	}
	// bbolt's bytes live only as long as the transaction.
	return discovery.Entry{Value: bytes.Clone(v[recordHeader:]), StoredAt: ts[0], ExpiresAt: ts[1], DeleteAt: ts[2]}, nil
}
