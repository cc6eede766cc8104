package download

import (
	"context"
	"fmt"
	"time"

	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/tarport"
)

// TaskKind says which work a task does.
type TaskKind string

const (
	// KindLayer fetches a whole layer into the entry cache, or checks that
	// the requester may read the entry already there (fetch.go).
	KindLayer TaskKind = "layer"
	// KindRange puts one byte range of a split layer's entry into the
	// layer's staging upload (split.go).
	KindRange TaskKind = "range"
	// KindVerify completes a split layer's staging upload once all its
	// ranges are in, hashes it in order and stores it as the entry
	// (split.go).
	KindVerify TaskKind = "verify"
	// KindAwait waits for a split layer another job is fetching from the
	// same origin (its lease holder), and uses the entry once stored, or
	// fetches the layer itself if that job ends without it (split.go).
	KindAwait TaskKind = "await"
)

// Task is the queue's message: one unit of one job's work on one layer.
// Kind says which; a range task carries its Range, a verify task its
// Verify, an await task its Await, and a layer task none of them.
// Credentials travel with the task in memory only: they are never
// serialized (json:"-"); a queue that crosses processes seals them itself
// (sqsqueue).
type Task struct {
	Kind  TaskKind              `json:"kind"`
	JobID string                `json:"job_id"`
	Layer int                   `json:"layer"` // index into Job.Layers
	Ref   string                `json:"ref"`
	Desc  descriptor.Descriptor `json:"desc"`
	Creds tarport.Credentials   `json:"-"`
	// Origin pins where the layer is read from; empty, the worker locates
	// it (Registry.Locate). A split layer's tasks all name the same one.
	Origin tarport.Origin `json:"origin,omitempty"`
	// Client is who asked for the job (an address, or an IPv6 /64): the
	// local pool shares its workers fairly between clients and registries.
	Client string `json:"client,omitempty"`
	// Asked is when the requester gave the credentials: a queue that seals
	// them counts their life from it, however often the task is sent.
	Asked time.Time `json:"asked,omitzero"`

	Range  *RangePart   `json:"range,omitempty"`  // KindRange only
	Verify *SplitUpload `json:"verify,omitempty"` // KindVerify only
	Await  *SplitAwait  `json:"await,omitempty"`  // KindAwait only
}

// SplitAwait is an await task's work: the job holding the split layer's
// lease (the layer's part count, should this job fetch it after all, is
// in the job's record).
type SplitAwait struct {
	Holder string `json:"holder"`
}

// SplitUpload is a split layer's staging upload and its part count.
type SplitUpload struct {
	ID    string `json:"id"`
	Parts int    `json:"parts"`
}

// RangePart is a range task's work: entry bytes [Offset, Offset+Length)
// as part Part (1-based) of the upload.
type RangePart struct {
	SplitUpload
	Part   int   `json:"part"`
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// layerTask is the task that fetches layer i of job id, d, for image ref.
func layerTask(id string, i int, ref string, d descriptor.Descriptor, req Request, asked time.Time) Task {
	return Task{Kind: KindLayer, JobID: id, Layer: i, Ref: ref, Desc: d, Creds: req.Creds, Client: req.Client, Asked: asked}
}

// rangeTask is the task that puts part of t's layer into upload up.
func (t Task) rangeTask(up SplitUpload, part int, offset, length int64) Task {
	t.Kind, t.Verify, t.Await = KindRange, nil, nil
	t.Range = &RangePart{SplitUpload: up, Part: part, Offset: offset, Length: length}
	return t
}

// verifyTask is the task that checks and stores t's split layer. It needs
// no credentials: it reads only what the range tasks stored.
func (t Task) verifyTask(up SplitUpload) Task {
	t.Kind, t.Range, t.Await, t.Creds = KindVerify, nil, nil, tarport.Credentials{}
	t.Verify = &up
	return t
}

// awaitTask is the task that waits for holder's fetch of t's layer. It
// keeps the credentials: the entry is this job's only once its origin
// lets them read it.
func (t Task) awaitTask(holder string) Task {
	t.Kind, t.Range, t.Verify = KindAwait, nil, nil
	t.Await = &SplitAwait{Holder: holder}
	return t
}

// Validate says whether t is a task this version can run: a known kind,
// with exactly its own fields.
func (t Task) Validate() error {
	switch {
	case t.JobID == "" || t.Layer < 0 || t.Ref == "":
		return fmt.Errorf("task has no job, layer or reference")
	case t.Kind == KindLayer && t.Range == nil && t.Verify == nil && t.Await == nil:
		return nil
	case t.Kind == KindRange && t.Range != nil && t.Verify == nil && t.Await == nil:
		if r := t.Range; r.Parts < 1 || r.Part < 1 || r.Part > r.Parts || r.ID == "" {
			return fmt.Errorf("range task is part %d of %d of upload %q", r.Part, r.Parts, r.ID)
		}
		return nil
	case t.Kind == KindVerify && t.Verify != nil && t.Range == nil && t.Await == nil:
		if t.Verify.Parts < 1 || t.Verify.ID == "" {
			return fmt.Errorf("verify task has %d parts of upload %q", t.Verify.Parts, t.Verify.ID)
		}
		return nil
	case t.Kind == KindAwait && t.Await != nil && t.Range == nil && t.Verify == nil:
		if t.Await.Holder == "" || t.Await.Holder == t.JobID {
			return fmt.Errorf("await task of job %s waits for job %q", t.JobID, t.Await.Holder)
		}
		return nil
	}
	return fmt.Errorf("task of kind %q has the wrong fields", t.Kind)
}

// RunTask runs one task of a job. It is idempotent: a redelivered task
// finds its work stored and its layer or part already counted.
func (s *Service) RunTask(ctx context.Context, t Task) error {
	job, err := s.jobs.Get(ctx, t.JobID)
	if tarport.ErrorCode(err) == tarport.CodeNotFound {
		s.log.Info("dropping a task of a job that is gone", "job", t.JobID)
		return nil // expired: nobody waits for it, a redelivery cannot help
	}
	if err != nil {
		return fmt.Errorf("running task of job %s: %w", t.JobID, err)
	}
	if job.Status.Terminal() {
		return nil
	}
	if err := t.Validate(); err != nil {
		return s.fail(ctx, t.JobID, tarport.Wrap(err, tarport.CodeInternal, "a task of this download cannot be run by this server; request the image again"))
	}
	if job.Status == tarport.StatusQueued {
		if err := s.jobs.SetStatus(ctx, job.ID, tarport.StatusFetching, nil); err != nil {
			return fmt.Errorf("starting job %s: %w", job.ID, err)
		}
	}
	switch t.Kind {
	case KindRange:
		return s.runRange(ctx, job, t, *t.Range)
	case KindVerify:
		return s.runVerify(ctx, job, t, *t.Verify)
	case KindAwait:
		return s.runAwait(ctx, job, t, *t.Await)
	}
	return s.runLayer(ctx, job, t)
}

// Abandon fails the job of a task that cannot run (it failed every
// delivery, or its credentials are gone), so the job ends with an error
// instead of hanging. Lost credentials keep their own code: the user's
// remedy is to ask again with them.
func (s *Service) Abandon(ctx context.Context, t Task, err error) error {
	if tarport.ErrorCode(err) == tarport.CodeCredentialsGone {
		return s.fail(ctx, t.JobID, err)
	}
	return s.fail(ctx, t.JobID, tarport.Wrap(err, tarport.CodeInternal, "a worker could not finish layer %s; request the image again", t.Desc.Digest))
}

// taskContext bounds a task by its job's life. The size a manifest claims
// sets no deadline (a hostile one claims 60 GB to hold a worker for days):
// the registry adapter cuts a body under the minimum rate and gives up on
// a registry that keeps crawling, so a task lasts as long as its registry
// actually delivers; on Lambda the function's timeout bounds it too.
func taskContext(ctx context.Context, job tarport.Job) (context.Context, context.CancelFunc) {
	if job.ExpiresAt.IsZero() {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, job.ExpiresAt)
}
