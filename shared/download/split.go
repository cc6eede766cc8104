package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// A layer too big for one task (a Lambda lives 15 minutes) is split: its
// entry is written as the parts of one upload to a staging key, each part
// a range task of its own that reads its byte range from the registry.
// A range cannot be verified alone, so when the last part is in, a verify
// task completes the upload, hashes the whole entry in order, and only
// then moves it to the entry key where any job may use it. Jobs wanting
// the same split entry at once share its fetch: one holds its lease
// (tarport.SplitLease), the others await the entry (runAwait).

// DefaultRangeSize is the bytes of a split layer's entry one range task
// puts: a buffered S3 part (memory per task) that fetches in seconds.
const DefaultRangeSize = 64 << 20

// DefaultSplitPoll is how often a job awaiting another's split layer
// looks again: a split layer takes minutes, and each look is a queue
// message and a job read.
const DefaultSplitPoll = 15 * time.Second

// splitter is what splitting needs beyond the plain ports.
type splitter struct {
	reg     RangeRegistry
	objects PartedObjects
	jobs    PartedJobs
	queue   DelayedQueue
}

// splitting returns the adapters that split layers, or false when
// splitting is off or an adapter cannot do it.
func (s *Service) splitting() (splitter, bool) {
	if s.cfg.SplitAbove <= 0 {
		return splitter{}, false
	}
	reg, ok1 := s.reg.(RangeRegistry)
	objects, ok2 := s.objects.(PartedObjects)
	jobs, ok3 := s.jobs.(PartedJobs)
	queue, ok4 := s.queue.(DelayedQueue)
	return splitter{reg, objects, jobs, queue}, ok1 && ok2 && ok3 && ok4
}

// cannotSplit fails a split layer's task on a server that cannot split
// (a task queued by one configured otherwise).
func cannotSplit(t Task) error {
	return tarport.Errorf(tarport.CodeInternal, "layer %s was split, but this server cannot fetch split layers", t.Desc.Digest)
}

// entryLen is the length of d's tar entry.
func entryLen(d descriptor.Descriptor) (int64, []byte, error) {
	hdr, err := tarplan.Header(tarplan.BlobName(d.Digest), d.Size)
	if err != nil {
		return 0, nil, tarport.Wrap(err, tarport.CodeUpstream, "layer %s cannot be stored", d.Digest)
	}
	return tarplan.EntryLen(len(hdr), d.Size), hdr, nil
}

// shouldSplit says whether the task's layer is fetched by range tasks, and
// into how many parts. A layer already in the entry cache is not: its one
// task only checks the requester may read it. The parts of a split layer
// must all come from one origin, so a split foreign layer's origin is
// located here and pinned in the task.
func (s *Service) shouldSplit(ctx context.Context, r ref.Ref, t *Task) (int, error) {
	if _, ok := s.splitting(); !ok {
		return 0, nil
	}
	n, _, err := entryLen(t.Desc)
	if err != nil || n <= s.cfg.SplitAbove {
		return 0, nil
	}
	origin, err := s.reg.Locate(ctx, r, t.Desc, t.Creds)
	if err != nil {
		return 0, err
	}
	t.Origin = origin
	if size, err := s.objects.Size(ctx, EntryKey(origin, t.Desc.Digest)); err == nil && size == n {
		return 0, nil
	}
	rs := s.rangeSize(n)
	return int((n + rs - 1) / rs), nil
}

// origin is where a split layer's parts are read from: pinned when its job
// was made (a task queued before origins existed is the registry's).
func (t Task) origin() tarport.Origin {
	if t.Origin != "" {
		return t.Origin
	}
	r, err := tarport.ParseReference(t.Ref)
	if err != nil {
		return ""
	}
	return tarport.RegistryOrigin(r.Registry)
}

// maxParts is S3's limit on the parts of one upload.
const maxParts = 10_000

// rangeSize is the configured range size, grown for an entry that would
// otherwise need more than maxParts parts.
func (s *Service) rangeSize(entryLen int64) int64 {
	return max(s.cfg.RangeSize, (entryLen+maxParts-1)/maxParts)
}

// splitKey names the lease of t's split entry of n bytes: the entry's
// key (its origin and digest) and its length, so that manifests
// disagreeing on the size never share a fetch.
func splitKey(t Task, n int64) string {
	return fmt.Sprintf("%s/%d", EntryKey(t.origin(), t.Desc.Digest), n)
}

// claimSplit returns the tasks that get t's split layer of parts parts
// for job: its range tasks when the job holds the layer's lease or takes
// it (prev is a holder the caller saw end), else one task that awaits
// the holder; took says this call took the lease (a redelivery finds it
// taken by its job already). Jobs needing the same entry from the same
// origin thus fetch it once (the trust model's shared fetch: same source
// only, and each job checks its own access to what was stored).
func (s *Service) claimSplit(ctx context.Context, job tarport.Job, t Task, parts int, prev string) (tasks []Task, took bool, err error) {
	sp, _ := s.splitting()
	n, _, err := entryLen(t.Desc)
	if err != nil {
		return nil, false, err
	}
	// The upload is begun first so the lease can name it: a redelivered
	// takeover finds it there and queues the same upload's parts again.
	staging := StagingKey(t.JobID, t.Desc.Digest)
	id, err := sp.objects.BeginParts(ctx, staging)
	if err != nil {
		return nil, false, fmt.Errorf("starting the upload of split layer %s: %w", t.Desc.Digest, err)
	}
	held, err := sp.jobs.LeaseSplit(ctx, splitKey(t, n), tarport.SplitLease{Job: job.ID, Upload: id, Until: job.ExpiresAt}, prev)
	if err != nil {
		// The lease may have been written and only the answer lost: it
		// may name this upload, which is then not aborted here (the
		// bucket's lifecycle rule collects it if it is not used).
		return nil, false, fmt.Errorf("leasing the fetch of split layer %s: %w", t.Desc.Digest, err)
	}
	if held.Upload != id {
		// Not this upload's to write: another job fetches the layer, or an
		// earlier delivery of this task took the lease with its own.
		if aerr := sp.objects.AbortParts(context.WithoutCancel(ctx), staging, id); aerr != nil {
			s.log.Warn("aborting a split layer's unused upload", "job", job.ID, "err", aerr)
		}
	}
	if held.Job != job.ID {
		s.log.Info("another job is fetching this split layer; waiting for it", "job", job.ID, "holder", held.Job, "layer", t.Desc.Digest)
		return []Task{t.awaitTask(held.Job)}, false, nil
	}
	return s.rangeTasks(t, parts, n, held.Upload), held.Upload == id, nil
}

// rangeTasks are the range tasks putting t's entry of n bytes, in parts
// parts, into upload id.
func (s *Service) rangeTasks(t Task, parts int, n int64, id string) []Task {
	rs := s.rangeSize(n)
	up := SplitUpload{ID: id, Parts: parts}
	tasks := make([]Task, 0, parts)
	for p := 1; p <= parts; p++ {
		offset := int64(p-1) * rs
		tasks = append(tasks, t.rangeTask(up, p, offset, min(rs, n-offset)))
	}
	return tasks
}

// runAwait waits for the job holding a split layer's lease. The entry
// stored, it is this job's once its origin lets this requester read it;
// the holder still at work, the task looks again after SplitPoll (taking
// the holder's progress as its own, for the user watching); the holder
// ended without the entry (failed or expired: its error is its own, and
// not read), this job takes the lease and fetches the layer itself.
func (s *Service) runAwait(ctx context.Context, job tarport.Job, t Task, aw SplitAwait) error {
	sp, ok := s.splitting()
	if !ok {
		return s.fail(ctx, job.ID, cannotSplit(t))
	}
	want, _, err := entryLen(t.Desc)
	if err != nil {
		return s.fail(ctx, job.ID, err)
	}
	stored := func() bool {
		n, err := s.objects.Size(ctx, EntryKey(t.origin(), t.Desc.Digest))
		return err == nil && n == want
	}
	if stored() {
		return s.useSplitEntry(ctx, job, t)
	}
	holder, err := s.jobs.Get(ctx, aw.Holder)
	switch {
	case err == nil && !holder.Status.Terminal():
		s.followProgress(ctx, job, t, holder)
		if err := sp.queue.EnqueueAfter(ctx, s.cfg.SplitPoll, []Task{t}); err != nil {
			return fmt.Errorf("queueing the wait for layer %s of job %s again: %w", t.Desc.Digest, job.ID, err)
		}
		return nil
	case err != nil && tarport.ErrorCode(err) != tarport.CodeNotFound:
		return fmt.Errorf("reading job %s, which fetches layer %s for job %s: %w", aw.Holder, t.Desc.Digest, job.ID, err)
	case stored():
		// It finished between the two looks.
		return s.useSplitEntry(ctx, job, t)
	}
	s.log.Info("the job fetching a split layer ended without it; fetching it for this job", "job", job.ID, "holder", aw.Holder, "layer", t.Desc.Digest)
	tasks, took, err := s.claimSplit(ctx, job, t, job.Layers[t.Layer].Parts, aw.Holder)
	if err != nil {
		return fmt.Errorf("taking over split layer %s for job %s: %w", t.Desc.Digest, job.ID, err)
	}
	if done := job.Layers[t.Layer].DoneBytes; took && done > 0 {
		// The holder's progress, shown meanwhile, is not this job's (a
		// redelivered takeover keeps what its own ranges did since).
		if err := s.jobs.AddProgress(ctx, job.ID, t.Layer, -done); err != nil {
			s.log.Warn("resetting a split layer's progress", "job", job.ID, "err", err)
		}
	}
	if tasks[0].Kind == KindAwait {
		// Another waiter took it over first: wait for that one.
		err = sp.queue.EnqueueAfter(ctx, s.cfg.SplitPoll, tasks)
	} else {
		err = s.queue.Enqueue(ctx, tasks)
	}
	if err != nil {
		return fmt.Errorf("queueing split layer %s of job %s: %w", t.Desc.Digest, job.ID, err)
	}
	return nil
}

// useSplitEntry takes a split layer's entry another job stored, once its
// origin says this requester may read the blob. A refusal fails the job,
// as it does a range task's (runRange): the stored bytes are never this
// requester's on a registry's word that it has them.
func (s *Service) useSplitEntry(ctx context.Context, job tarport.Job, t Task) error {
	r, err := tarport.ParseReference(t.Ref)
	if err == nil {
		err = s.reg.CheckBlob(ctx, r, t.Desc, t.origin(), t.Creds)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return s.fail(ctx, job.ID, err)
	}
	s.metrics.CacheHitBytes(t.Desc.Size)
	return s.finishLayer(ctx, job, t.Layer)
}

// followProgress brings the waiting layer's done bytes up to the
// holder's: best effort, it is only what the user watches.
func (s *Service) followProgress(ctx context.Context, job tarport.Job, t Task, holder tarport.Job) {
	for _, l := range holder.Layers {
		if l.Digest != t.Desc.Digest || l.Size != t.Desc.Size {
			continue
		}
		if delta := l.DoneBytes - job.Layers[t.Layer].DoneBytes; delta > 0 {
			if err := s.jobs.AddProgress(ctx, job.ID, t.Layer, delta); err != nil {
				s.log.Warn("copying a split layer's progress", "job", job.ID, "err", err)
			}
		}
		return
	}
}

// runRange puts one part of a split layer's entry; the call that leaves no
// part remaining queues the verify task (again on a redelivery, since a
// verify task lost to a failed send would leave the job hanging; verify
// is idempotent).
func (s *Service) runRange(ctx context.Context, job tarport.Job, t Task, part RangePart) error {
	sp, ok := s.splitting()
	if !ok {
		return s.fail(ctx, job.ID, cannotSplit(t))
	}
	staging := StagingKey(t.JobID, t.Desc.Digest)
	// A late delivery after the verify task completed the upload finds
	// no upload to put into: the layer's bytes are all in already. An
	// entry stored by another job is this job's only once the origin says
	// this requester may read it (the trust model's first rule).
	done := func() (bool, error) {
		want, _, _ := entryLen(t.Desc)
		if job.Layers[t.Layer].Finished {
			return true, nil
		}
		if n, err := s.objects.Size(ctx, staging); err == nil && n == want {
			return true, nil
		}
		if n, err := s.objects.Size(ctx, EntryKey(t.origin(), t.Desc.Digest)); err != nil || n != want {
			return false, nil
		}
		r, err := tarport.ParseReference(t.Ref)
		if err == nil {
			err = s.reg.CheckBlob(ctx, r, t.Desc, t.origin(), t.Creds)
		}
		return err == nil, err
	}
	ok, err := done()
	if !ok && err == nil {
		fetchCtx, cancel := taskContext(ctx, job)
		err = s.putRange(fetchCtx, sp, t, part)
		cancel()
		if err != nil {
			if ok, derr := done(); ok || derr != nil {
				err = derr
			}
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The job is over: its upload's parts would be billed until the
		// bucket's lifecycle rule aborts it.
		if aerr := sp.objects.AbortParts(context.WithoutCancel(ctx), staging, part.ID); aerr != nil {
			s.log.Warn("aborting a split layer's upload", "job", job.ID, "err", aerr)
		}
		return s.fail(ctx, job.ID, err)
	}
	remaining, _, err := sp.jobs.FinishPart(ctx, job.ID, t.Layer, part.Part)
	if err != nil {
		return fmt.Errorf("finishing part %d of layer %d of job %s: %w", part.Part, t.Layer, job.ID, err)
	}
	if remaining > 0 {
		return nil
	}
	if err := s.queue.Enqueue(ctx, []Task{t.verifyTask(part.SplitUpload)}); err != nil {
		return fmt.Errorf("queueing the check of layer %s of job %s: %w", t.Desc.Digest, job.ID, err)
	}
	return nil
}

// putRange fetches the task's range of the entry and puts it as its part,
// retrying broken fetches.
func (s *Service) putRange(ctx context.Context, sp splitter, t Task, part RangePart) error {
	r, err := tarport.ParseReference(t.Ref)
	if err != nil {
		return err
	}
	n, hdr, err := entryLen(t.Desc)
	if err != nil {
		return err
	}
	if part.Offset < 0 || part.Length <= 0 || part.Offset+part.Length > n {
		return tarport.Errorf(tarport.CodeInternal, "part %d of layer %s covers bytes %d+%d of a %d-byte entry", part.Part, t.Desc.Digest, part.Offset, part.Length, n)
	}
	// The part's bytes: some of the header, a range of the blob, some of
	// the zero padding.
	hlen := int64(len(hdr))
	start, end := part.Offset, part.Offset+part.Length
	blobFrom, blobTo := max(start, hlen)-hlen, min(end, hlen+t.Desc.Size)-hlen
	padFrom, padTo := max(start, hlen+t.Desc.Size), end
	progress := newProgress(s, t)
	defer progress.flush(context.WithoutCancel(ctx))
	return s.retry(ctx, t, progress, func() error {
		readers := []io.Reader{}
		if start < hlen {
			readers = append(readers, bytes.NewReader(hdr[start:min(end, hlen)]))
		}
		if blobTo > blobFrom {
			body, err := sp.reg.OpenBlobRange(ctx, r, t.Desc, t.origin(), blobFrom, blobTo-blobFrom, t.Creds)
			if err != nil {
				return err
			}
			defer body.Close()
			readers = append(readers, progress.reader(body))
		}
		if padTo > padFrom {
			readers = append(readers, bytes.NewReader(make([]byte, padTo-padFrom)))
		}
		return sp.objects.PutPart(ctx, StagingKey(t.JobID, t.Desc.Digest), part.ID, part.Part, io.MultiReader(readers...), part.Length)
	})
}

// runVerify completes a split layer's staging upload, hashes the entry in
// order and moves it to the entry key; then the layer counts as done. It
// is idempotent: a redelivered or duplicate verify finds the entry moved.
func (s *Service) runVerify(ctx context.Context, job tarport.Job, t Task, up SplitUpload) error {
	sp, ok := s.splitting()
	if !ok {
		return s.fail(ctx, job.ID, cannotSplit(t))
	}
	want, hdr, err := entryLen(t.Desc)
	if err != nil {
		return s.fail(ctx, job.ID, err)
	}
	key, staging := EntryKey(t.origin(), t.Desc.Digest), StagingKey(t.JobID, t.Desc.Digest)
	if n, err := s.objects.Size(ctx, key); err == nil && n == want {
		// Another job stored the layer first: ours is not needed. Best
		// effort: the bucket's lifecycle rule is the backstop.
		if aerr := sp.objects.AbortParts(ctx, staging, up.ID); aerr != nil {
			s.log.Warn("aborting a split layer's upload", "job", job.ID, "err", aerr)
		}
		if derr := sp.objects.Delete(ctx, staging); derr != nil {
			s.log.Warn("deleting a split layer's staging object", "job", job.ID, "err", derr)
		}
	} else {
		if err := sp.objects.FinishParts(ctx, staging, up.ID, up.Parts); err != nil {
			if size, serr := s.objects.Size(ctx, key); serr != nil || size != want {
				return fmt.Errorf("completing split layer %s of job %s: %w", t.Desc.Digest, job.ID, err)
			}
			// A duplicate verify moved it meanwhile.
		} else {
			if err := s.checkEntry(ctx, staging, t.Desc, hdr, want); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if tarport.ErrorCode(err) == tarport.CodeDigestMismatch {
					if derr := sp.objects.Delete(ctx, staging); derr != nil {
						s.log.Warn("deleting a split layer that did not verify", "job", job.ID, "err", derr)
					}
					return s.fail(ctx, job.ID, err)
				}
				if size, serr := s.objects.Size(ctx, key); serr != nil || size != want {
					return err
				}
				// A duplicate verify moved it while this one read it.
				return s.finishLayer(ctx, job, t.Layer)
			}
			if err := sp.objects.Move(ctx, staging, key, want); err != nil {
				return fmt.Errorf("storing split layer %s of job %s: %w", t.Desc.Digest, job.ID, err)
			}
		}
	}
	return s.finishLayer(ctx, job, t.Layer)
}

// checkEntry reads a stored entry in order and checks it is the entry of
// d: the expected header, then bytes hashing to d's digest, then zeros.
// Where the store reads ranges, several are read ahead at once (ahead.go).
func (s *Service) checkEntry(ctx context.Context, key string, d descriptor.Descriptor, hdr []byte, want int64) error {
	mismatch := func(format string, args ...any) error {
		return tarport.Errorf(tarport.CodeDigestMismatch, "layer %s: "+format, append([]any{d.Digest}, args...)...)
	}
	var rc io.ReadCloser
	if ro, ok := s.objects.(RangedObjects); ok && want > verifyChunk {
		// Reading exactly want bytes, a longer object would go unseen.
		if n, err := s.objects.Size(ctx, key); err != nil {
			return fmt.Errorf("reading split layer %s: %w", d.Digest, err)
		} else if n != want {
			return mismatch("the stored entry has %d bytes, not %d", n, want)
		}
		rc = ReadAhead(ctx, ro, key, want)
	} else {
		var err error
		if rc, err = s.objects.Get(ctx, key); err != nil {
			return fmt.Errorf("reading split layer %s: %w", d.Digest, err)
		}
	}
	defer rc.Close()
	gotHdr := make([]byte, len(hdr))
	if _, err := io.ReadFull(rc, gotHdr); err != nil {
		return fmt.Errorf("reading split layer %s: %w", d.Digest, err)
	}
	if !bytes.Equal(gotHdr, hdr) {
		return mismatch("the stored entry's header is not the layer's")
	}
	h := sha256.New()
	if _, err := io.CopyN(h, rc, d.Size); err != nil {
		return fmt.Errorf("reading split layer %s: %w", d.Digest, err)
	}
	if got := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil))); got != d.Digest {
		return mismatch("the bytes the registry sent hash to %s", got)
	}
	pad := make([]byte, want-int64(len(hdr))-d.Size)
	if _, err := io.ReadFull(rc, pad); err != nil {
		return fmt.Errorf("reading split layer %s: %w", d.Digest, err)
	}
	if !bytes.Equal(pad, make([]byte, len(pad))) {
		return mismatch("the stored entry's padding is not zeros")
	}
	var one [1]byte
	switch n, err := io.ReadFull(rc, one[:]); {
	case n > 0:
		return mismatch("the stored entry is longer than %d bytes", want)
	case !errors.Is(err, io.EOF):
		return fmt.Errorf("reading split layer %s: %w", d.Digest, err)
	}
	return nil
}
