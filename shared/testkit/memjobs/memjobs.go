// Package memjobs is a job store in memory (download.Jobs and
// download.PartedJobs) for the download service's tests: it applies the
// domain's job rules (tarport.Job's Joinable, Expired, AddProgress,
// FinishLayer; Status.CanBecome) as the real stores do, and its own test
// runs the jobstest suite, so a service test cannot pass on a store that
// behaves as no real one does.
package memjobs

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tarport/tarport/shared/tarport"
)

// Jobs is an in-memory job store, safe for concurrent use.
type Jobs struct {
	mu     sync.Mutex
	now    func() time.Time
	jobs   map[string]tarport.Job
	keys   map[string]string       // job key -> id of the job holding it
	parts  map[string]map[int]bool // "id/layer" -> finished parts
	leases map[string]tarport.SplitLease
}

// New returns an empty store that reads time from now.
func New(now func() time.Time) *Jobs {
	return &Jobs{now: now, jobs: map[string]tarport.Job{}, keys: map[string]string{}, parts: map[string]map[int]bool{}, leases: map[string]tarport.SplitLease{}}
}

func notFound(id string) error { return tarport.Errorf(tarport.CodeNotFound, "no download job %q", id) }

func clone(j tarport.Job) tarport.Job {
	j.Layers = slices.Clone(j.Layers)
	j.RepoTags = slices.Clone(j.RepoTags)
	if j.Bundle != nil {
		j.Bundle = slices.Clone(j.Bundle)
		for i := range j.Bundle {
			j.Bundle[i].RepoTags = slices.Clone(j.Bundle[i].RepoTags)
			j.Bundle[i].Layers = slices.Clone(j.Bundle[i].Layers)
		}
	}
	if j.Error != nil {
		e := *j.Error
		j.Error = &e
	}
	return j
}

// Put stores job as it is, taking its key, for a test that starts from a
// given record.
func (s *Jobs) Put(job tarport.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs[job.ID] = clone(job)
	if job.Key != "" {
		s.keys[job.Key] = job.ID
	}
}

// Create stores job unless a joinable job has its key.
func (s *Jobs) Create(_ context.Context, job tarport.Job) (tarport.Job, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, ok := s.keys[job.Key]; ok {
		if old, ok := s.jobs[id]; ok && old.Joinable(s.now()) {
			return clone(old), false, nil
		}
	}
	s.jobs[job.ID] = clone(job)
	s.keys[job.Key] = job.ID
	return clone(job), true, nil
}

// Get returns a job that exists and has not expired.
func (s *Jobs) Get(_ context.Context, id string) (tarport.Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	job, ok := s.jobs[id]
	if !ok || job.Expired(s.now()) {
		return tarport.Job{}, notFound(id)
	}
	return clone(job), nil
}

// update applies fn to a stored job, moving UpdatedAt if fn reports a
// change. As in the real stores, a write still reaches a job past its
// expiry until it is collected (a task failing at the job's deadline
// records the failure); Get is what hides it.
func (s *Jobs) update(id string, fn func(*tarport.Job) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	job, ok := s.jobs[id]
	if !ok {
		return notFound(id)
	}
	if !fn(&job) {
		return nil
	}
	job.UpdatedAt = s.now()
	s.jobs[id] = job
	return nil
}

// SetStatus moves a job as tarport.Status.CanBecome allows.
func (s *Jobs) SetStatus(_ context.Context, id string, status tarport.Status, jobErr *tarport.JobError) error {
	return s.update(id, func(job *tarport.Job) bool {
		if !job.Status.CanBecome(status) {
			return false
		}
		job.Status, job.Error = status, jobErr
		return true
	})
}

// AddProgress adds delta to one layer's done bytes, within [0, size].
func (s *Jobs) AddProgress(_ context.Context, id string, layer int, delta int64) error {
	return s.update(id, func(job *tarport.Job) bool { return job.AddProgress(layer, delta) })
}

// FinishLayer marks a layer done once.
func (s *Jobs) FinishLayer(_ context.Context, id string, layer int) (remaining int, first bool, err error) {
	err = s.update(id, func(job *tarport.Job) bool {
		first = job.FinishLayer(layer)
		remaining = job.Remaining
		return first
	})
	return remaining, first, err
}

// FinishPart marks part n of a split layer done once.
func (s *Jobs) FinishPart(_ context.Context, id string, layer, part int) (int, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	job, ok := s.jobs[id]
	if !ok || job.Expired(s.now()) {
		return 0, false, notFound(id)
	}
	if layer < 0 || layer >= len(job.Layers) || job.Layers[layer].Parts <= 0 {
		return 0, false, tarport.Errorf(tarport.CodeInternal, "layer %d of job %s is not split (or there is no such layer)", layer, id)
	}
	parts := job.Layers[layer].Parts
	if part < 1 || part > parts {
		return 0, false, tarport.Errorf(tarport.CodeInternal, "layer %d of job %s has parts 1..%d, not %d", layer, id, parts, part)
	}
	k := fmt.Sprintf("%s/%d", id, layer)
	done := s.parts[k]
	if done == nil {
		done = map[int]bool{}
		s.parts[k] = done
	}
	first := !done[part]
	if first {
		done[part] = true
		job.UpdatedAt = s.now()
		s.jobs[id] = job
	}
	return parts - len(done), first, nil
}

// LeaseSplit takes the lease on key where the held one yields.
func (s *Jobs) LeaseSplit(_ context.Context, key string, lease tarport.SplitLease, prev string) (tarport.SplitLease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if held := s.leases[key]; !held.Yields(s.now(), prev) {
		return held, nil
	}
	s.leases[key] = lease
	return lease, nil
}

// All returns every job stored, expired ones too.
func (s *Jobs) All() []tarport.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]tarport.Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, clone(j))
	}
	return out
}
