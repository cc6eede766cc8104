// Package boltdb is the embedded job store of local mode: job records in a
// bbolt file in the data directory, so jobs survive a restart. Each
// operation is one bbolt transaction.
package boltdb

import (
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

var (
	jobsBucket   = []byte("jobs")   // id -> JSON record
	keysBucket   = []byte("keys")   // job key -> id of the live job
	leasesBucket = []byte("leases") // split entry key -> JSON tarport.SplitLease
)

// record is a job as stored: the job and, per split layer (by index),
// a bitmap of its finished parts (bit n-1 for part n).
type record struct {
	tarport.Job
	PartsDone map[int]partBitmap `json:"parts_done,omitempty"`
}

// Jobs is a bbolt-backed job store.
type Jobs struct {
	db  *bolt.DB
	now func() time.Time
}

var (
	_ download.Jobs       = (*Jobs)(nil)
	_ download.PartedJobs = (*Jobs)(nil)
)

// Open opens (or creates) the job database at path.
func Open(path string) (*Jobs, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening job database %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{jobsBucket, keysBucket, leasesBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("preparing job database %s: %w", path, err)
	}
	return &Jobs{db: db, now: time.Now}, nil
}

// Close closes the database.
func (j *Jobs) Close() error { return j.db.Close() }

// Create stores job unless a joinable job has its key.
func (j *Jobs) Create(_ context.Context, job tarport.Job) (tarport.Job, bool, error) {
	var live tarport.Job
	created := false
	err := j.db.Update(func(tx *bolt.Tx) error {
		if id := tx.Bucket(keysBucket).Get([]byte(job.Key)); id != nil {
			old, err := load(tx, string(id))
			if err == nil && old.Joinable(j.now()) {
				live = old.Job
				return nil
			}
		}
		if err := save(tx, record{Job: job}); err != nil {
			return err
		}
		created, live = true, job
		return tx.Bucket(keysBucket).Put([]byte(job.Key), []byte(job.ID))
	})
	if err != nil {
		return tarport.Job{}, false, fmt.Errorf("creating job %s: %w", job.ID, err)
	}
	return live, created, nil
}

// Get returns a job that exists and has not expired.
func (j *Jobs) Get(_ context.Context, id string) (tarport.Job, error) {
	var job tarport.Job
	err := j.db.View(func(tx *bolt.Tx) error {
		rec, err := load(tx, id)
		job = rec.Job
		return err
	})
	if err == nil && job.Expired(j.now()) {
		err = errNotFound(id)
	}
	return job, err
}

// SetStatus moves a non-terminal job forward to status (a late,
// redelivered task never moves it back) or to failed.
func (j *Jobs) SetStatus(_ context.Context, id string, status tarport.Status, jobErr *tarport.JobError) error {
	return j.update(id, func(job *tarport.Job) bool {
		if !job.Status.CanBecome(status) {
			return false
		}
		job.Status, job.Error = status, jobErr
		return true
	})
}

// AddProgress adds delta done bytes to one layer, within [0, size].
func (j *Jobs) AddProgress(_ context.Context, id string, layer int, delta int64) error {
	return j.update(id, func(job *tarport.Job) bool { return job.AddProgress(layer, delta) })
}

// FinishLayer marks a layer done once.
func (j *Jobs) FinishLayer(_ context.Context, id string, layer int) (int, bool, error) {
	var remaining int
	first := false
	err := j.update(id, func(job *tarport.Job) bool {
		first = job.FinishLayer(layer)
		remaining = job.Remaining
		return first
	})
	return remaining, first, err
}

// LeaseSplit takes the lease on key where the held one yields. Lapsed
// leases stay until taken over: one small record per split layer fetched.
func (j *Jobs) LeaseSplit(_ context.Context, key string, lease tarport.SplitLease, prev string) (tarport.SplitLease, error) {
	var held tarport.SplitLease
	err := j.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(leasesBucket)
		held = tarport.SplitLease{}
		if v := b.Get([]byte(key)); v != nil {
			if err := json.Unmarshal(v, &held); err != nil {
				return err
			}
		}
		if !held.Yields(j.now(), prev) {
			return nil
		}
		v, err := json.Marshal(lease)
		if err != nil {
			return err
		}
		held = lease
		return b.Put([]byte(key), v)
	})
	if err != nil {
		return tarport.SplitLease{}, fmt.Errorf("leasing split layer %s: %w", key, err)
	}
	return held, nil
}

// FinishPart marks part n of a split layer done once, in the layer's
// bitmap of finished parts; the job's Remaining and the layer's Finished
// are FinishLayer's.
func (j *Jobs) FinishPart(_ context.Context, id string, layer, part int) (int, bool, error) {
	var remaining int
	first := false
	err := j.db.Update(func(tx *bolt.Tx) error {
		rec, err := load(tx, id)
		if err != nil {
			return err
		}
		if rec.Expired(j.now()) {
			return errNotFound(id)
		}
		if layer < 0 || layer >= len(rec.Layers) || rec.Layers[layer].Parts <= 0 {
			return tarport.Errorf(tarport.CodeInternal, "layer %d of job %s is not split (or there is no such layer)", layer, id)
		}
		parts := rec.Layers[layer].Parts
		if part < 1 || part > parts {
			return tarport.Errorf(tarport.CodeInternal, "layer %d of job %s has parts 1..%d, not %d", layer, id, parts, part)
		}
		done := rec.PartsDone[layer]
		if !done.has(part - 1) {
			if rec.PartsDone == nil {
				rec.PartsDone = map[int]partBitmap{}
			}
			done = done.with(part-1, parts)
			rec.PartsDone[layer] = done
			rec.UpdatedAt = j.now()
			if err := save(tx, rec); err != nil {
				return err
			}
			first = true
		}
		remaining = parts - done.count()
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("finishing part %d of layer %d of job %s: %w", part, layer, id, err)
	}
	return remaining, first, nil
}

// partBitmap is a set of part indexes, one bit each: 10,000 parts (S3's
// most) take 1,250 bytes.
type partBitmap []byte

func (b partBitmap) has(i int) bool { return i/8 < len(b) && b[i/8]&(1<<(i%8)) != 0 }

// with returns b with bit i set, grown to hold n bits.
func (b partBitmap) with(i, n int) partBitmap {
	if need := (n + 7) / 8; len(b) < need {
		b = append(b, make([]byte, need-len(b))...)
	}
	b[i/8] |= 1 << (i % 8)
	return b
}

func (b partBitmap) count() int {
	n := 0
	for _, x := range b {
		n += bits.OnesCount8(x)
	}
	return n
}

// Unfinished lists live jobs that are not terminal, for resuming them
// after a restart.
func (j *Jobs) Unfinished(context.Context) ([]tarport.Job, error) {
	jobs, err := j.list(func(job tarport.Job) bool { return !job.Status.Terminal() && job.Live(j.now()) })
	if err != nil {
		return nil, fmt.Errorf("listing unfinished jobs: %w", err)
	}
	return jobs, nil
}

// Expired lists jobs past their expiry, for the collector.
func (j *Jobs) Expired(context.Context) ([]tarport.Job, error) {
	jobs, err := j.list(func(job tarport.Job) bool { return job.Expired(j.now()) })
	if err != nil {
		return nil, fmt.Errorf("listing expired jobs: %w", err)
	}
	return jobs, nil
}

// list returns the stored jobs keep says yes to.
func (j *Jobs) list(keep func(tarport.Job) bool) ([]tarport.Job, error) {
	var out []tarport.Job
	err := j.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(jobsBucket).ForEach(func(_, v []byte) error {
			var job tarport.Job
			if err := json.Unmarshal(v, &job); err != nil {
				return err
			}
			if keep(job) {
				out = append(out, job)
			}
			return nil
		})
	})
	return out, err
}

// Delete removes a job and, if it still owns it, its key.
func (j *Jobs) Delete(_ context.Context, job tarport.Job) error {
	return j.db.Update(func(tx *bolt.Tx) error {
		if id := tx.Bucket(keysBucket).Get([]byte(job.Key)); string(id) == job.ID {
			if err := tx.Bucket(keysBucket).Delete([]byte(job.Key)); err != nil {
				return err
			}
		}
		return tx.Bucket(jobsBucket).Delete([]byte(job.ID))
	})
}

// update applies fn to a job, storing it (with UpdatedAt moved) if fn
// reports a change.
func (j *Jobs) update(id string, fn func(*tarport.Job) bool) error {
	err := j.db.Update(func(tx *bolt.Tx) error {
		rec, err := load(tx, id)
		if err != nil {
			return err
		}
		if !fn(&rec.Job) {
			return nil
		}
		rec.UpdatedAt = j.now()
		return save(tx, rec)
	})
	if err != nil {
		return fmt.Errorf("updating job %s: %w", id, err)
	}
	return nil
}

func load(tx *bolt.Tx, id string) (record, error) {
	v := tx.Bucket(jobsBucket).Get([]byte(id))
	if v == nil {
		return record{}, errNotFound(id)
	}
	var rec record
	if err := json.Unmarshal(v, &rec); err != nil {
		return record{}, fmt.Errorf("decoding job %s: %w", id, err)
	}
	return rec, nil
}

func save(tx *bolt.Tx, rec record) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding job %s: %w", rec.ID, err)
	}
	return tx.Bucket(jobsBucket).Put([]byte(rec.ID), v)
}

func errNotFound(id string) error {
	return tarport.Errorf(tarport.CodeNotFound, "no download job %q (it may have expired)", id)
}
