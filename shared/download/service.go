package download

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"
	"golang.org/x/sync/singleflight"

	"github.com/tarport/tarport/shared/metrics"
	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// Task is one layer of one job. Credentials travel with the task in
// memory only; they are never serialized (json:"-").
type Task struct {
	JobID string                `json:"job_id"`
	Layer int                   `json:"layer"` // index into Job.Layers
	Ref   string                `json:"ref"`
	Desc  descriptor.Descriptor `json:"desc"`
	Creds tarport.Credentials   `json:"-"`
	// Origin pins where the layer is read from; empty, the worker locates
	// it (Registry.Locate). A split layer's parts all name the same one.
	Origin tarport.Origin `json:"origin,omitempty"`
	// Client is who asked for the job (an address, or an IPv6 /64): the
	// local pool shares its workers fairly between clients and registries.
	Client string `json:"client,omitempty"`

	// A split layer's tasks (see split.go) carry its staging upload: a
	// range task puts entry bytes [Offset, Offset+Length) as part Part of
	// Parts; the verify task checks and stores the entry once all are in.
	Part     int    `json:"part,omitempty"`
	Parts    int    `json:"parts,omitempty"`
	UploadID string `json:"upload_id,omitempty"`
	Offset   int64  `json:"offset,omitempty"`
	Length   int64  `json:"length,omitempty"`
	Verify   bool   `json:"verify,omitempty"`
}

// Config tunes a Service.
type Config struct {
	// LinkTTL is the lifetime of a download link.
	LinkTTL time.Duration
	// JobTTL is how long a finished job (and its tar) is kept.
	JobTTL time.Duration
	// Attempts is how often a layer is fetched before its job fails.
	Attempts int
	// ProgressEvery bounds how often a worker writes progress.
	ProgressEvery time.Duration
	// SplitAbove splits a layer whose tar entry is larger into range tasks
	// of RangeSize bytes (0: never), where the registry, objects and jobs
	// adapters can do it (RangeRegistry, PartedObjects, PartedJobs).
	SplitAbove int64
	RangeSize  int64
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
		cfg.Attempts = 3
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 250 * time.Millisecond
	}
	if cfg.RangeSize <= 0 {
		cfg.RangeSize = DefaultRangeSize
	}
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

// Request asks for one image for one platform.
type Request struct {
	Image    string
	Platform string
	Creds    tarport.Credentials
	// Client identifies the requester for fair scheduling and quotas
	// (never stored in a job).
	Client string
}

// View is a job as its user sees it, with a fresh link when ready.
type View struct {
	tarport.Job
	URL           string
	LinkExpiresAt time.Time
}

// Create resolves the image (authorizing the requester), plans the tar and
// starts a job, or joins the live job for the same image, platform and tag.
func (s *Service) Create(ctx context.Context, req Request) (View, error) {
	r, err := tarport.ParseReference(req.Image)
	if err != nil {
		return View{}, err
	}
	p, err := tarport.ParsePlatform(req.Platform)
	if err != nil {
		return View{}, err
	}
	// An API request must answer within API Gateway's ~30 s.
	budget := resolveTimeout
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)-createReserve)
	}
	resolveCtx, cancel := context.WithTimeout(ctx, budget)
	img, err := s.reg.Resolve(resolveCtx, r, p, req.Creds)
	cancel()
	if err != nil {
		return View{}, err
	}
	layers := distinctLayers(img.Layers)
	if len(layers) > MaxLayers {
		return View{}, tarport.Errorf(tarport.CodeTooLarge, "%s has %d layers; at most %d are supported", r.CommonName(), len(layers), MaxLayers)
	}
	in := imagePlanInput(img)
	layout, err := tarplan.Plan(in)
	if err != nil {
		return View{}, tarport.Wrap(err, tarport.CodeTooLarge, "%s cannot be laid out as a tar: its layers are too large", r.CommonName())
	}
	if _, err := tarplan.Parts(layout, tarplan.S3Limits); err != nil {
		return View{}, tarport.Wrap(err, tarport.CodeTooLarge, "%s has too many layers to assemble", r.CommonName())
	}
	now := s.now()
	job := tarport.Job{
		ID:           newID(),
		Key:          jobKey(in.Name, in.RefName, layout.ManifestDigest, p, req.Creds),
		Image:        displayName(img),
		Ref:          r.CommonName(),
		Platform:     p.String(),
		Digest:       layout.ManifestDigest,
		IndexDigest:  img.IndexDigest,
		ConfigDigest: img.ConfigDigest,
		RepoTags:     in.RepoTags,
		RefName:      in.RefName,
		Name:         in.Name,
		Private:      !req.Creds.Anonymous(),
		Status:       tarport.StatusQueued,
		TotalBytes:   layout.Size,
		FileName:     fileName(img, p),
		CreatedAt:    now,
		UpdatedAt:    now,
		ExpiresAt:    now.Add(s.cfg.JobTTL),
	}
	job.TarKey = TarKey()
	var tasks []Task
	for _, l := range layers {
		t := Task{JobID: job.ID, Layer: len(job.Layers), Ref: r.CommonName(), Desc: l, Creds: req.Creds, Client: req.Client}
		parts, err := s.shouldSplit(ctx, r, &t)
		if err != nil {
			return View{}, err
		}
		tasks = append(tasks, t)
		job.Layers = append(job.Layers, tarport.LayerProgress{Digest: l.Digest, Size: l.Size, Parts: parts})
	}
	job.Remaining = len(tasks)
	// A client is charged for the tar it asks for, joined or new; the
	// warm (no client) is the operator's own.
	if s.quota != nil && req.Client != "" {
		if err := s.quota.Charge(ctx, req.Client, job.Key, job.TotalBytes); err != nil {
			return View{}, err
		}
	}

	live, created, err := s.jobs.Create(ctx, job)
	if err == nil && !created && s.stalled(live) {
		// Its creator died before queueing its tasks (or they were all
		// lost): fail it, so this request makes a new job.
		s.log.Warn("failing a job whose tasks never started", "job", live.ID, "queued", live.UpdatedAt)
		if err = s.fail(ctx, live.ID, tarport.Errorf(tarport.CodeUnavailable, "the download never started; request it again")); err == nil {
			live, created, err = s.jobs.Create(ctx, job)
		}
	}
	if err != nil {
		return View{}, fmt.Errorf("creating job for %s: %w", job.Ref, err)
	}
	if !created {
		// Resolving just now authorized this requester for this manifest.
		return s.view(ctx, live)
	}
	s.metrics.JobCreated()
	// The job exists now and others may join it: the requester going
	// away must not leave it half queued.
	ctx = context.WithoutCancel(ctx)
	s.log.Info("job created", "job", job.ID, "image", job.Ref, "platform", job.Platform, "bytes", job.TotalBytes, "layers", len(tasks))
	if tasks, err = s.splitTasks(ctx, job, tasks); err != nil {
		// The job must not be joined: failed, or (if even that fails) left
		// to the stall check; the requester sees only the coded message.
		ferr := s.fail(ctx, job.ID, tarport.Wrap(err, tarport.CodeUnavailable, "could not start the download"))
		return View{}, tarport.Wrap(errors.Join(err, ferr), tarport.CodeUnavailable, "could not start the download; try again")
	}
	if len(tasks) == 0 {
		if err := s.stitch(ctx, job); err != nil {
			return View{}, err
		}
	} else if err := s.queue.Enqueue(ctx, tasks); err != nil {
		if tarport.ErrorCode(err) == tarport.CodeInternal {
			err = tarport.Wrap(err, tarport.CodeUnavailable, "could not queue the download; try again")
		}
		// A refused job must not be joined: fail it, with the queue's answer.
		if ferr := s.fail(ctx, job.ID, err); ferr != nil {
			s.log.Error("failing a job the queue refused", "job", job.ID, "err", ferr)
		}
		return View{}, err
	}
	job, err = s.jobs.Get(ctx, job.ID)
	if err != nil {
		return View{}, err
	}
	return s.view(ctx, job) // the requester was authorized to create it
}

// Status returns a job with a freshly signed link when it is ready. Links
// are signed at read time, never stored: a stored one would die with the
// credentials that signed it. A private job's link is signed only for
// creds the registry authorizes again for its manifest: a link, or the
// job id, may have reached others, and must not outlive the requester's
// own access.
func (s *Service) Status(ctx context.Context, id string, creds tarport.Credentials) (View, error) {
	job, err := s.jobs.Get(ctx, id)
	if err != nil {
		return View{}, err
	}
	if job.Private && job.Status == tarport.StatusReady {
		r, err := tarport.ParseReference(job.Ref)
		if err != nil {
			return View{}, fmt.Errorf("job %s: %w", job.ID, err)
		}
		// Bounded: a registry that does not answer must not hold a
		// status read (or a Lambda) for long.
		checkCtx, cancel := context.WithTimeout(ctx, linkCheckTimeout)
		err = s.reg.CheckManifest(checkCtx, r.SetDigest(job.Digest.String()), creds)
		cancel()
		if err != nil && creds.Anonymous() && isRefusal(err) {
			return View{}, tarport.Wrap(err, tarport.CodeCredentialsGone, "download %s is of a private image: its link is given only with registry credentials that may read it (send them as HTTP basic auth, e.g. curl -u USER:TOKEN)", job.ID)
		}
		if err != nil {
			return View{}, err
		}
	}
	return s.view(ctx, job)
}

func (s *Service) view(ctx context.Context, job tarport.Job) (View, error) {
	v := View{Job: job}
	if job.Status != tarport.StatusReady {
		return v, nil
	}
	// A link must not outlive the tar it points at.
	ttl := min(s.cfg.LinkTTL, job.ExpiresAt.Sub(s.now()))
	if ttl <= 0 {
		return View{}, tarport.Errorf(tarport.CodeNotFound, "download job %q has expired", job.ID)
	}
	url, lifetime, err := s.signer.Sign(ctx, job.TarKey, job.FileName, ttl)
	if err != nil {
		return View{}, fmt.Errorf("signing the link of job %s: %w", job.ID, err)
	}
	v.URL, v.LinkExpiresAt = url, s.now().Add(min(ttl, lifetime))
	return v, nil
}

// Wait polls a job until it is terminal or wait has passed; creds are
// those Status needs for a private job's link.
func (s *Service) Wait(ctx context.Context, id string, wait time.Duration, creds tarport.Credentials) (View, error) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		job, err := s.jobs.Get(ctx, id)
		if err != nil {
			return View{}, err
		}
		if job.Status.Terminal() {
			return s.Status(ctx, id, creds)
		}
		select {
		case <-ctx.Done():
			return View{Job: job}, nil
		case <-deadline.C:
			return View{Job: job}, nil
		case <-tick.C:
		}
	}
}

// RunTask fetches one layer into the entry store and stitches the tar if
// it was the last one. It is idempotent: a redelivered task finds the
// entry stored and the layer already counted.
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
	if job.Status == tarport.StatusQueued {
		if err := s.jobs.SetStatus(ctx, job.ID, tarport.StatusFetching, nil); err != nil {
			return fmt.Errorf("starting job %s: %w", job.ID, err)
		}
	}
	switch {
	case t.Verify:
		return s.runVerify(ctx, job, t)
	case t.Parts > 0:
		return s.runRange(ctx, job, t)
	}
	fetchCtx, cancel := taskContext(ctx, job)
	err = s.fetchEntry(fetchCtx, t)
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

// stalled says whether a job has been queued, none of its tasks started,
// for longer than stallAfter.
func (s *Service) stalled(job tarport.Job) bool {
	return job.Status == tarport.StatusQueued && s.now().Sub(job.UpdatedAt) > stallAfter
}

// splitTasks replaces the task of each layer the job splits by its range
// tasks, starting their staging uploads.
func (s *Service) splitTasks(ctx context.Context, job tarport.Job, tasks []Task) ([]Task, error) {
	var out []Task
	for _, t := range tasks {
		parts := job.Layers[t.Layer].Parts
		if parts == 0 {
			out = append(out, t)
			continue
		}
		rts, err := s.rangeTasks(ctx, t, parts)
		if err != nil {
			return nil, err
		}
		out = append(out, rts...)
	}
	return out, nil
}

// sleep waits before retry attempt n (1-based) of a fetch.
func sleep(ctx context.Context, attempt int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(attempt*attempt) * 500 * time.Millisecond):
		return nil
	}
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

// isRefusal says whether err is a registry's no (rather than a failure).
func isRefusal(err error) bool {
	switch tarport.ErrorCode(err) {
	case tarport.CodeUnauthorized, tarport.CodeForbidden, tarport.CodeNotFound:
		return true
	}
	return false
}

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
	r, err := tarport.ParseReference(t.Ref)
	if err != nil {
		return err
	}
	hdr, err := tarplan.Header(tarplan.BlobName(t.Desc.Digest), t.Desc.Size)
	if err != nil {
		return tarport.Wrap(err, tarport.CodeUpstream, "layer %s cannot be stored", t.Desc.Digest)
	}
	origin := t.Origin
	if origin == "" {
		if origin, err = s.reg.Locate(ctx, r, t.Desc, t.Creds); err != nil {
			return err
		}
	}
	key := EntryKey(origin, t.Desc.Digest)
	want := tarplan.EntryLen(len(hdr), t.Desc.Size)
	progress := newProgress(s, t)
	defer progress.flush(context.WithoutCancel(ctx))
	stored := func() bool {
		n, err := s.objects.Size(ctx, key)
		return err == nil && n == want
	}
	fetch := func() error { return s.fetchWithRetries(ctx, t, r, origin, key, hdr, want, progress) }
	useStored := func() error {
		err := s.reg.CheckBlob(ctx, r, t.Desc, origin, t.Creds)
		if tarport.ErrorCode(err) == tarport.CodeNotFound {
			// The origin's HEAD does not know the blob (or misstates its
			// size); a GET, whose bytes are verified, is the real test.
			return fetch()
		}
		if err != nil {
			return err
		}
		s.metrics.CacheHitBytes(t.Desc.Size)
		progress.add(t.Desc.Size)
		return nil
	}
	// The key includes the size, so manifests disagreeing on it never share.
	flight := fmt.Sprintf("%s/%d", key, want)
	for range 3 {
		if stored() {
			return useStored()
		}
		var fetchedHere atomic.Bool
		shared := s.fetches.DoChan(flight, func() (any, error) {
			if stored() {
				return nil, nil
			}
			fetchedHere.Store(true)
			return nil, fetch()
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
			if stored() {
				return useStored()
			}
			return fetch()
		}
		// Someone else stored it: loop to check we may read it.
	}
	return fetch()
}

func (s *Service) fetchWithRetries(ctx context.Context, t Task, r ref.Ref, origin tarport.Origin, key string, hdr []byte, want int64, progress *progress) error {
	return s.retry(ctx, t, progress, func() error {
		body, err := s.reg.OpenBlob(ctx, r, t.Desc, origin, t.Creds)
		if err != nil {
			return err
		}
		defer body.Close()
		entry := io.MultiReader(bytes.NewReader(hdr), progress.reader(body), bytes.NewReader(tarplan.Padding(t.Desc.Size)))
		return s.objects.Put(ctx, key, entry, want)
	})
}

// retry runs attempt up to cfg.Attempts times, backing off between
// them, while its error is one another attempt may help; each attempt's
// progress starts afresh.
func (s *Service) retry(ctx context.Context, t Task, progress *progress, attempt func() error) error {
	var last error
	for n := 1; n <= s.cfg.Attempts; n++ {
		if n > 1 {
			s.metrics.RegistryRetry()
			if err := sleep(ctx, n); err != nil {
				return err
			}
		}
		progress.reset()
		if last = attempt(); last == nil || !retryable(last) {
			return last
		}
		s.log.Warn("layer fetch failed, retrying", "job", t.JobID, "layer", t.Desc.Digest, "part", t.Part, "attempt", n, "err", last)
	}
	return last
}

// retryable says whether another attempt may help: corrupt or broken
// transfers may, a refusal from the registry will not.
func retryable(err error) bool {
	switch tarport.ErrorCode(err) {
	case tarport.CodeDigestMismatch, tarport.CodeUpstream, tarport.CodeUpstreamTimeout, tarport.CodeRateLimited, tarport.CodeInternal:
		return true
	}
	return false
}

// stitch assembles the tar of a job whose layers are all stored. A stitch
// that fails fails the job and returns nil; its error means "try again":
// the context ended, or the job's state could not be written.
func (s *Service) stitch(ctx context.Context, job tarport.Job) error {
	err := s.jobs.SetStatus(ctx, job.ID, tarport.StatusAssembling, nil)
	var layout tarplan.Layout
	var layers []descriptor.Descriptor
	if err == nil {
		layout, layers, err = s.replan(ctx, job)
	}
	var entryKey func(digest.Digest) string
	if err == nil {
		entryKey, err = s.entryKeys(ctx, job, layers)
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
	s.log.Info("job ready", "job", job.ID, "image", job.Ref, "bytes", job.TotalBytes)
	return nil
}

// replan rebuilds the job's layout from the cached manifest and config;
// planning is pure, so it is the layout the job was created with. It also
// returns the manifest's layer descriptors.
func (s *Service) replan(ctx context.Context, job tarport.Job) (tarplan.Layout, []descriptor.Descriptor, error) {
	origin, err := jobOrigin(job)
	if err != nil {
		return tarplan.Layout{}, nil, err
	}
	manifest, err := s.meta.GetMeta(ctx, origin, job.Digest)
	if err != nil {
		return tarplan.Layout{}, nil, fmt.Errorf("loading manifest %s: %w", job.Digest, err)
	}
	config, err := s.meta.GetMeta(ctx, origin, job.ConfigDigest)
	if err != nil {
		return tarplan.Layout{}, nil, fmt.Errorf("loading config %s: %w", job.ConfigDigest, err)
	}
	in, layers, err := replanInput(job, manifest, config)
	if err != nil {
		return tarplan.Layout{}, nil, err
	}
	layout, err := tarplan.Plan(in)
	if err != nil {
		return tarplan.Layout{}, nil, err
	}
	if layout.Size != job.TotalBytes || layout.ManifestDigest != job.Digest {
		return tarplan.Layout{}, nil, fmt.Errorf("re-planning job %s: got %d bytes of %s, planned %d of %s", job.ID, layout.Size, layout.ManifestDigest, job.TotalBytes, job.Digest)
	}
	return layout, layers, nil
}

// jobOrigin is the registry a job's image, manifest and config come from.
func jobOrigin(job tarport.Job) (tarport.Origin, error) {
	r, err := tarport.ParseReference(job.Ref)
	if err != nil {
		return "", fmt.Errorf("job %s: %w", job.ID, err)
	}
	return tarport.RegistryOrigin(r.Registry), nil
}

// entryKeys says where each layer entry of a job is stored. Every task of
// the job has checked, with its origin, that the requester may read its
// entry there; a foreign layer's entry is found under the first of its
// origins that holds it (its digest verified, the same bytes under any).
func (s *Service) entryKeys(ctx context.Context, job tarport.Job, layers []descriptor.Descriptor) (func(digest.Digest) string, error) {
	r, err := tarport.ParseReference(job.Ref)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", job.ID, err)
	}
	keys := map[digest.Digest]string{}
	for _, l := range layers {
		if _, ok := keys[l.Digest]; ok {
			continue
		}
		origins := tarport.Origins(r, l)
		keys[l.Digest] = EntryKey(origins[0], l.Digest)
		if len(origins) == 1 {
			continue
		}
		want, _, err := entryLen(l)
		if err != nil {
			return nil, err
		}
		for _, o := range origins {
			if n, err := s.objects.Size(ctx, EntryKey(o, l.Digest)); err == nil && n == want {
				keys[l.Digest] = EntryKey(o, l.Digest)
				break
			}
		}
	}
	return func(d digest.Digest) string { return keys[d] }, nil
}

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

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err)) // crypto/rand never fails on Linux
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// jobKey is what identical requests share: the same manifest, named the
// same way, for the same platform, asked for by the same kind of
// requester: anonymous requests share jobs, and a registry login shares
// only with itself (its tasks run with that login; a job another login
// made could fail for reasons of that login's, or be private to it).
// The key is a hash: it names no login.
func jobKey(name, refName string, d digest.Digest, p tarport.Platform, creds tarport.Credentials) string {
	parts := []string{name, refName, d.String(), p.String()}
	if !creds.Anonymous() {
		parts = append(parts, "login", creds.Username)
	}
	h := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(h[:])
}

func displayName(img tarport.Image) string {
	name := tarport.ShortName(img.Ref)
	if img.Ref.Tag != "" {
		return name + ":" + img.Ref.Tag
	}
	return name + "@" + img.Ref.Digest
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

func fileName(img tarport.Image, p tarport.Platform) string {
	tag := img.Ref.Tag
	if tag == "" {
		tag = strings.TrimPrefix(img.Ref.Digest, "sha256:")
		if len(tag) > 12 {
			tag = tag[:12]
		}
	}
	base := strings.ReplaceAll(tarport.ShortName(img.Ref), "/", "_") + "_" + tag + "_" + strings.ReplaceAll(p.String(), "/", "_")
	return unsafeFileChars.ReplaceAllString(base, "-") + ".tar"
}

func distinctLayers(layers []descriptor.Descriptor) []descriptor.Descriptor {
	seen := map[digest.Digest]bool{}
	var out []descriptor.Descriptor
	for _, l := range layers {
		if !seen[l.Digest] {
			seen[l.Digest] = true
			out = append(out, l)
		}
	}
	return out
}

// progress batches a task's byte counts into AddProgress writes.
type progress struct {
	s       *Service
	t       Task
	mu      sync.Mutex
	pending int64
	sent    int64
	last    time.Time
}

func newProgress(s *Service, t Task) *progress { return &progress{s: s, t: t, last: s.now()} }

func (p *progress) add(n int64) {
	p.mu.Lock()
	p.pending += n
	due := p.s.now().Sub(p.last) >= p.s.cfg.ProgressEvery
	p.mu.Unlock()
	if due {
		p.flush(context.Background())
	}
}

// reset takes back what a failed attempt reported, so a retry does not
// count bytes twice.
func (p *progress) reset() {
	p.mu.Lock()
	p.pending = -p.sent // unsent bytes are dropped; sent ones taken back
	p.mu.Unlock()
}

func (p *progress) flush(ctx context.Context) {
	p.mu.Lock()
	n := p.pending
	p.pending = 0
	p.sent += n
	p.last = p.s.now()
	p.mu.Unlock()
	if n == 0 {
		return
	}
	if err := p.s.jobs.AddProgress(ctx, p.t.JobID, p.t.Layer, n); err != nil {
		p.s.log.Warn("recording progress", "job", p.t.JobID, "err", err)
	}
}

func (p *progress) reader(r io.Reader) io.Reader { return &countingReader{r: r, p: p} }

type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.p.add(int64(n))
		c.p.s.metrics.RegistryBytes(int64(n))
	}
	return n, err
}

// replanInput is the planner input of a job, from its record and the
// manifest and config it was planned from, and the manifest's layers.
func replanInput(job tarport.Job, manifest, config []byte) (tarplan.Image, []descriptor.Descriptor, error) {
	m, err := decodeManifest(job, manifest)
	if err != nil {
		return tarplan.Image{}, nil, err
	}
	return planInput(jobNames(job), manifest, m.MediaType, config, job.ConfigDigest, m.Layers), m.Layers, nil
}

// cachedManifest is what a job needs of its image manifest.
type cachedManifest struct {
	MediaType string                  `json:"mediaType"`
	Layers    []descriptor.Descriptor `json:"layers"`
}

// decodeManifest reads a job's cached image manifest (Docker schema2 and
// OCI manifests share these fields).
func decodeManifest(job tarport.Job, raw []byte) (cachedManifest, error) {
	var m cachedManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return cachedManifest{}, fmt.Errorf("decoding manifest %s: %w", job.Digest, err)
	}
	return m, nil
}
