package download

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// finishLayer counts a stored layer once; the call that leaves none
// remaining stitches the tar. A stitch cut short (a worker killed, its
// deadline) leaves the job unfinished with nothing remaining: a later
// delivery of a task of it takes the stitch over once the job has been
// still for stitchLease (longer than any worker lives), so the job cannot
// hang; a stitch is idempotent, and the lease keeps two from overlapping.
func (s *Service) finishLayer(ctx context.Context, job tarport.Job, layer int) error {
	remaining, first, err := s.jobs.FinishLayer(ctx, job.ID, layer)
	if err != nil {
		return fmt.Errorf("finishing layer %d of job %s: %w", layer, job.ID, err)
	}
	if !first && remaining == 0 {
		cur, err := s.jobs.Get(ctx, job.ID)
		if err != nil || cur.Status.Terminal() || s.now().Sub(cur.UpdatedAt) < stitchLease {
			return nil
		}
		s.log.Warn("taking over a stitch that stalled", "job", job.ID, "since", cur.UpdatedAt)
		first = true
	}
	if first && remaining == 0 {
		return s.stitch(ctx, job)
	}
	return nil
}

// stitch assembles the tar of a job whose layers are all stored. A stitch
// that fails fails the job and returns nil; its error means "try again":
// the context ended, or the job's state could not be written.
func (s *Service) stitch(ctx context.Context, job tarport.Job) error {
	err := s.jobs.SetStatus(ctx, job.ID, tarport.StatusAssembling, nil)
	var layout tarplan.Layout
	var layers []jobLayer
	if err == nil {
		layout, layers, err = s.replan(ctx, job)
	}
	var entryKey func(digest.Digest) string
	if err == nil {
		entryKey, err = s.entryKeys(ctx, layers)
	}
	if err == nil {
		var parts []tarplan.Part
		parts, err = tarplan.Parts(layout, tarplan.S3Limits)
		if err == nil {
			err = s.objects.Stitch(ctx, job.TarKey, parts, entryKey, s.tail(layout, entryKey))
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			// Shutting down: Resume (local) or a later task's delivery
			// past the stitch lease (AWS) stitches it again.
			return ctx.Err()
		}
		return s.fail(ctx, job.ID, err)
	}
	if err := s.jobs.SetStatus(ctx, job.ID, tarport.StatusReady, nil); err != nil {
		// The tar is whole; a delivery past the stitch lease will stitch
		// and mark it again.
		return fmt.Errorf("finishing job %s: %w", job.ID, err)
	}
	s.metrics.JobFinished(string(tarport.StatusReady), "", s.now().Sub(job.CreatedAt))
	s.log.Info("job ready", "job", job.ID, "image", job.Image, "bytes", job.TotalBytes)
	return nil
}

// entryKeys says where each layer entry of a job is stored. Every task of
// the job has checked, with its origin, that the requester may read its
// entry there; a foreign layer's entry is found under the first of its
// origins that holds it (its digest verified, the same bytes under any).
func (s *Service) entryKeys(ctx context.Context, layers []jobLayer) (func(digest.Digest) string, error) {
	keys := map[digest.Digest]string{}
	for _, l := range layers {
		d := l.desc
		if _, ok := keys[d.Digest]; ok {
			continue
		}
		origins := tarport.Origins(l.ref, d)
		keys[d.Digest] = EntryKey(origins[0], d.Digest)
		if len(origins) == 1 {
			continue
		}
		key, ok, err := s.storedKey(ctx, origins, d)
		if err != nil {
			return nil, err
		}
		if ok {
			keys[d.Digest] = key
		}
	}
	return func(d digest.Digest) string { return keys[d] }, nil
}

// storedKey is the key of d's entry under the first of origins that holds
// it whole, if any does.
func (s *Service) storedKey(ctx context.Context, origins []tarport.Origin, d descriptor.Descriptor) (string, bool, error) {
	want, _, err := entryLen(d)
	if err != nil {
		return "", false, err
	}
	for _, o := range origins {
		if n, err := s.objects.Size(ctx, EntryKey(o, d.Digest)); err == nil && n == want {
			return EntryKey(o, d.Digest), true, nil
		}
	}
	return "", false, nil
}
