package download

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// Request asks for one image for one platform.
type Request struct {
	Image    string
	Platform string
	Creds    tarport.Credentials
	// Client identifies the requester for fair scheduling and quotas
	// (never stored in a job).
	Client string
}

// Create resolves the image (authorizing the requester), plans the tar and
// starts a job, or joins the live job for the same image, platform and tag.
func (s *Service) Create(ctx context.Context, req Request) (View, error) {
	r, p, img, err := s.resolve(ctx, req)
	if err != nil {
		return View{}, err
	}
	job, tasks, err := s.newJob(ctx, r, p, img, req)
	if err != nil {
		return View{}, err
	}
	// A client is charged for the tar it asks for, joined or new; the
	// warm (no client) is the operator's own.
	if s.quota != nil && req.Client != "" {
		if err := s.quota.Charge(ctx, req.Client, job.Key, job.TotalBytes); err != nil {
			return View{}, err
		}
	}
	live, created, err := s.claim(ctx, job)
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
	if err := s.start(ctx, job, tasks); err != nil {
		return View{}, err
	}
	job, err = s.jobs.Get(ctx, job.ID)
	if err != nil {
		return View{}, err
	}
	return s.view(ctx, job) // the requester was authorized to create it
}

// resolve parses the request and resolves its image with the requester's
// credentials, within an API request's time.
func (s *Service) resolve(ctx context.Context, req Request) (ref.Ref, tarport.Platform, tarport.Image, error) {
	r, err := tarport.ParseReference(req.Image)
	if err != nil {
		return ref.Ref{}, tarport.Platform{}, tarport.Image{}, err
	}
	p, err := tarport.ParsePlatform(req.Platform)
	if err != nil {
		return ref.Ref{}, tarport.Platform{}, tarport.Image{}, err
	}
	// An API request must answer within API Gateway's ~30 s.
	budget := resolveTimeout
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)-createReserve)
	}
	resolveCtx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	img, err := s.reg.Resolve(resolveCtx, r, p, req.Creds)
	return r, p, img, err
}

// newJob plans the tar of a resolved image and makes its job record and
// one task per distinct layer, refusing what cannot be laid out.
func (s *Service) newJob(ctx context.Context, r ref.Ref, p tarport.Platform, img tarport.Image, req Request) (tarport.Job, []Task, error) {
	layers := distinctLayers(img.Layers)
	if len(layers) > MaxLayers {
		return tarport.Job{}, nil, tarport.Errorf(tarport.CodeTooLarge, "%s has %d layers; at most %d are supported", r.CommonName(), len(layers), MaxLayers)
	}
	in := imagePlanInput(img)
	layout, err := tarplan.Plan(in)
	if err != nil {
		return tarport.Job{}, nil, tarport.Wrap(err, tarport.CodeTooLarge, "%s cannot be laid out as a tar: its layers are too large", r.CommonName())
	}
	if _, err := tarplan.Parts(layout, tarplan.S3Limits); err != nil {
		return tarport.Job{}, nil, tarport.Wrap(err, tarport.CodeTooLarge, "%s has too many layers to assemble", r.CommonName())
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
		TarKey:       TarKey(),
		CreatedAt:    now,
		UpdatedAt:    now,
		ExpiresAt:    now.Add(s.cfg.JobTTL),
	}
	tasks := make([]Task, 0, len(layers))
	for _, l := range layers {
		t := layerTask(job, len(job.Layers), l, req)
		parts, err := s.shouldSplit(ctx, r, &t)
		if err != nil {
			return tarport.Job{}, nil, err
		}
		tasks = append(tasks, t)
		job.Layers = append(job.Layers, tarport.LayerProgress{Digest: l.Digest, Size: l.Size, Parts: parts})
	}
	job.Remaining = len(tasks)
	// Queued in the tar's order (biggest layers first): a stream of the
	// tar waits for its entries in that order.
	pos := map[digest.Digest]int{}
	for i, e := range layout.Entries {
		pos[e.Digest] = i
	}
	slices.SortStableFunc(tasks, func(a, b Task) int { return cmp.Compare(pos[a.Desc.Digest], pos[b.Desc.Digest]) })
	return job, tasks, nil
}

// claim stores a new job, or returns the live job with the same key. A
// live job whose creator died before queueing its tasks is failed and
// replaced.
func (s *Service) claim(ctx context.Context, job tarport.Job) (tarport.Job, bool, error) {
	live, created, err := s.jobs.Create(ctx, job)
	if err == nil && !created && s.stalled(live) {
		// Its creator died before queueing its tasks (or they were all
		// lost): fail it, so this request makes a new job.
		s.log.Warn("failing a job whose tasks never started", "job", live.ID, "queued", live.UpdatedAt)
		if err = s.fail(ctx, live.ID, tarport.Errorf(tarport.CodeUnavailable, "the download never started; request it again")); err == nil {
			live, created, err = s.jobs.Create(ctx, job)
		}
	}
	return live, created, err
}

// stalled says whether a job has been queued, none of its tasks started,
// for longer than stallAfter.
func (s *Service) stalled(job tarport.Job) bool {
	return job.Status == tarport.StatusQueued && s.now().Sub(job.UpdatedAt) > stallAfter
}

// start queues a new job's tasks (splitting the layers it splits), or
// stitches at once a job with none. A job that cannot start is failed, so
// nobody joins it.
func (s *Service) start(ctx context.Context, job tarport.Job, tasks []Task) error {
	tasks, err := s.splitTasks(ctx, job, tasks)
	if err != nil {
		// The job must not be joined: failed, or (if even that fails) left
		// to the stall check; the requester sees only the coded message.
		ferr := s.fail(ctx, job.ID, tarport.Wrap(err, tarport.CodeUnavailable, "could not start the download"))
		return tarport.Wrap(errors.Join(err, ferr), tarport.CodeUnavailable, "could not start the download; try again")
	}
	if len(tasks) == 0 {
		return s.stitch(ctx, job)
	}
	if err := s.queue.Enqueue(ctx, tasks); err != nil {
		if tarport.ErrorCode(err) == tarport.CodeInternal {
			err = tarport.Wrap(err, tarport.CodeUnavailable, "could not queue the download; try again")
		}
		// A refused job must not be joined: fail it, with the queue's answer.
		if ferr := s.fail(ctx, job.ID, err); ferr != nil {
			s.log.Error("failing a job the queue refused", "job", job.ID, "err", ferr)
		}
		return err
	}
	return nil
}

// splitTasks replaces the task of each layer the job splits by its range
// tasks (starting their staging uploads), or by a task awaiting the job
// that already fetches it.
func (s *Service) splitTasks(ctx context.Context, job tarport.Job, tasks []Task) ([]Task, error) {
	var out []Task
	for _, t := range tasks {
		parts := job.Layers[t.Layer].Parts
		if parts == 0 {
			out = append(out, t)
			continue
		}
		rts, err := s.claimSplit(ctx, job, t, parts, "")
		if err != nil {
			return nil, err
		}
		out = append(out, rts...)
	}
	return out, nil
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
