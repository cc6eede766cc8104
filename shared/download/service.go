package download

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/tarport/tarport/shared/metrics"
	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// The service's files, by concern: ports.go the interfaces it needs,
// create.go makes jobs, status.go reads them, task.go defines and
// dispatches the queue's tasks, fetch.go runs a layer task, split.go the
// range and verify tasks of a split layer, stitch.go assembles the tar and
// tail.go its tail, retry.go holds the attempt loop (the budget is
// tarport.BlobRequests and its neighbours), progress.go batches progress,
// keys.go the object keys, plan.go the planner's input, resume.go the
// local restart.

// Config tunes a Service.
type Config struct {
	// LinkTTL is the lifetime of a download link.
	LinkTTL time.Duration
	// JobTTL is how long a finished job (and its tar) is kept.
	JobTTL time.Duration
	// Attempts is how often a layer is read per delivery of its task
	// before its job fails (default tarport.LayerAttempts).
	Attempts int
	// ProgressEvery bounds how often a worker writes progress.
	ProgressEvery time.Duration
	// SplitAbove splits a layer whose tar entry is larger into range tasks
	// of RangeSize bytes (0: never), where the registry, objects and jobs
	// adapters can do it (RangeRegistry, PartedObjects, PartedJobs).
	SplitAbove int64
	RangeSize  int64
	// MaxImageBytes refuses a bundle whose images' layers add up to more
	// (0: no limit; the registry adapter refuses one image over it).
	MaxImageBytes int64
	// SplitPoll is how often a job awaiting another job's fetch of a split
	// layer looks again (default 15 s; a queue delay, so at most 15 min).
	SplitPoll time.Duration
}

// Service runs download jobs.
type Service struct {
	reg     Registry
	objects Objects
	meta    MetaStore
	jobs    Jobs
	queue   Queue
	quota   Quota
	metrics *metrics.Metrics
	signer  Signer
	cfg     Config
	log     *slog.Logger
	now     func() time.Time

	// fetches shares one in-flight fetch of a layer between jobs.
	fetches singleflight.Group
	// live are the entry writes in progress, for streams to follow.
	live liveWrites
}

// New builds a Service. The queue may be set later with SetQueue, since a
// local queue needs the service to run its tasks.
func New(reg Registry, objects Objects, meta MetaStore, jobs Jobs, signer Signer, cfg Config, log *slog.Logger) *Service {
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = time.Hour
	}
	if cfg.JobTTL <= 0 {
		cfg.JobTTL = 24 * time.Hour
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = tarport.LayerAttempts
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 250 * time.Millisecond
	}
	if cfg.RangeSize <= 0 {
		cfg.RangeSize = DefaultRangeSize
	}
	if cfg.SplitPoll <= 0 {
		cfg.SplitPoll = DefaultSplitPoll
	}
	cfg.SplitPoll = min(cfg.SplitPoll, 15*time.Minute)
	// S3's rules: parts of 5 MiB to 5 GiB.
	cfg.RangeSize = min(max(cfg.RangeSize, tarplan.S3Limits.MinPart), tarplan.S3Limits.MaxPart)
	if log == nil {
		log = slog.Default()
	}
	return &Service{reg: reg, objects: objects, meta: meta, jobs: jobs, signer: signer, cfg: cfg, log: log, now: time.Now}
}

// SetQueue sets where tasks go.
func (s *Service) SetQueue(q Queue) { s.queue = q }

// SetQuota sets what requesters are charged against; without one, nothing
// is counted.
func (s *Service) SetQuota(q Quota) { s.quota = q }

// SetMetrics sets where jobs, registry bytes and cache hits are counted.
func (s *Service) SetMetrics(m *metrics.Metrics) { s.metrics = m }

const (
	// linkCheckTimeout bounds the registry's check before a private job's
	// link is signed.
	linkCheckTimeout = 15 * time.Second
	// MaxLayers bounds the distinct layers of an image (runtimes stop at
	// about 128; a hostile manifest may list tens of thousands).
	MaxLayers = 1000
	// resolveTimeout keeps Create within an API Gateway request.
	resolveTimeout = 25 * time.Second
	// createReserve is what Create keeps of its caller's deadline (a
	// Lambda's) after resolving, to store the job and queue its tasks.
	createReserve = 8 * time.Second
	// stitchLease is how long a job must be still, with every layer in,
	// before another task's delivery takes its stitch over: longer than
	// a Lambda (15 min) lives.
	stitchLease = 16 * time.Minute
	// stallAfter is how long a job may stay queued, none of its tasks
	// started, before a request for the same image replaces it.
	stallAfter = 30 * time.Minute
)

// fail records a job's failure. Its error is the store's: a task that
// cannot record the failure returns it, so the task is delivered again
// rather than the job left hanging.
func (s *Service) fail(ctx context.Context, id string, err error) error {
	ctx = context.WithoutCancel(ctx)
	jerr := &tarport.JobError{Code: tarport.ErrorCode(err), Message: tarport.ErrorMessage(err)}
	s.log.Error("job failed", "job", id, "code", jerr.Code, "err", err)
	// Several tasks of one job may fail it: only a live job's failure is
	// counted (a race between two may count twice; the status is exact).
	before, gerr := s.jobs.Get(ctx, id)
	if serr := s.jobs.SetStatus(ctx, id, tarport.StatusFailed, jerr); serr != nil {
		s.log.Error("recording job failure", "job", id, "err", serr)
		return fmt.Errorf("recording the failure of job %s: %w", id, serr)
	}
	if gerr == nil && !before.Status.Terminal() {
		s.metrics.JobFinished(string(tarport.StatusFailed), string(jerr.Code), s.now().Sub(before.CreatedAt))
	}
	return nil
}

// newID is a random id: 128 bits in lower-case base32.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err)) // crypto/rand never fails on Linux
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
