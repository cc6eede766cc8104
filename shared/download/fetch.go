package download

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// runLayer runs a layer task: the layer's entry stored (fetched, or
// found cached and this requester allowed to read it), then counted.
func (s *Service) runLayer(ctx context.Context, job tarport.Job, t Task) error {
	fetchCtx, cancel := taskContext(ctx, job)
	err := s.fetchEntry(fetchCtx, t)
	s.live.end(t.JobID, t.Layer)
	timedOut := errors.Is(fetchCtx.Err(), context.DeadlineExceeded)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // shutting down: leave the task to be redone
		}
		if timedOut {
			err = tarport.Wrap(err, tarport.CodeUpstreamTimeout, "layer %s (%d bytes) was still downloading when its job expired", t.Desc.Digest, t.Desc.Size)
		}
		return s.fail(ctx, job.ID, err)
	}
	return s.finishLayer(ctx, job, t.Layer)
}

// entryFetch is one task's view of the entry it needs.
type entryFetch struct {
	s        *Service
	t        Task
	r        ref.Ref
	origin   tarport.Origin
	key      string
	hdr      []byte
	want     int64
	progress *progress
}

// fetchEntry makes sure the layer's entry is stored under its origin and
// that this requester may read it. An entry this task did not fetch
// itself was fetched for someone else: its origin must first say this
// requester may read it (a manifest anyone can write may name any digest;
// only the origin that served the bytes is asked, never another registry).
//
// Jobs needing the same entry from the same origin share one fetch. A
// shared fetch that fails is not the followers' failure: its error may be
// about another repository or other credentials, so each follower then
// fetches for itself, and reports only its own errors.
func (s *Service) fetchEntry(ctx context.Context, t Task) error {
	e, err := s.newEntryFetch(ctx, t)
	if err != nil {
		return err
	}
	defer e.progress.flush(context.WithoutCancel(ctx))
	// The key includes the size, so manifests disagreeing on it never share.
	flight := fmt.Sprintf("%s/%d", e.key, e.want)
	for range 3 {
		if e.stored(ctx) {
			return e.useStored(ctx)
		}
		var fetchedHere atomic.Bool
		shared := s.fetches.DoChan(flight, func() (any, error) {
			if e.stored(ctx) {
				return nil, nil
			}
			fetchedHere.Store(true)
			return nil, e.fetch(ctx)
		})
		var err error
		select {
		case res := <-shared:
			err = res.Err
		case <-ctx.Done():
			// This task is over (its job expired, the worker stops); the
			// fetch goes on for whoever started it.
			return ctx.Err()
		}
		switch {
		case fetchedHere.Load():
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			// Someone else's fetch failed: not our error to report.
			s.log.Info("a shared layer fetch failed; fetching it for this job", "job", t.JobID, "layer", t.Desc.Digest)
			if e.stored(ctx) {
				return e.useStored(ctx)
			}
			return e.fetch(ctx)
		}
		// Someone else stored it: loop to check we may read it.
	}
	return e.fetch(ctx)
}

func (s *Service) newEntryFetch(ctx context.Context, t Task) (*entryFetch, error) {
	r, err := tarport.ParseReference(t.Ref)
	if err != nil {
		return nil, err
	}
	want, hdr, err := entryLen(t.Desc)
	if err != nil {
		return nil, err
	}
	origin := t.Origin
	if origin == "" {
		if origin, err = s.reg.Locate(ctx, r, t.Desc, t.Creds); err != nil {
			return nil, err
		}
	}
	return &entryFetch{s: s, t: t, r: r, origin: origin, key: EntryKey(origin, t.Desc.Digest), hdr: hdr, want: want, progress: newProgress(s, t)}, nil
}

// stored says whether the entry is in the cache, whole.
func (e *entryFetch) stored(ctx context.Context) bool {
	n, err := e.s.objects.Size(ctx, e.key)
	return err == nil && n == e.want
}

// useStored takes a cached entry once its origin says this requester may
// read the blob.
func (e *entryFetch) useStored(ctx context.Context) error {
	err := e.s.reg.CheckBlob(ctx, e.r, e.t.Desc, e.origin, e.t.Creds)
	if tarport.ErrorCode(err) == tarport.CodeNotFound {
		// The origin's HEAD does not know the blob (or misstates its
		// size); a GET, whose bytes are verified, is the real test.
		return e.fetch(ctx)
	}
	if err != nil {
		return err
	}
	e.s.metrics.CacheHitBytes(e.t.Desc.Size)
	e.progress.add(e.t.Desc.Size)
	return nil
}

// fetch streams the blob from its origin into the entry store, verified
// by the registry adapter's reader, with the layer's retry budget.
func (e *entryFetch) fetch(ctx context.Context) error {
	d := e.t.Desc
	return e.s.retry(ctx, e.t, e.progress, func() error {
		body, err := e.s.reg.OpenBlob(ctx, e.r, d, e.origin, e.t.Creds)
		if err != nil {
			return err
		}
		defer body.Close()
		entry := io.MultiReader(bytes.NewReader(e.hdr), e.progress.reader(body), bytes.NewReader(tarplan.Padding(d.Size)))
		return e.s.put(ctx, e.t, e.key, entry, e.want)
	})
}
