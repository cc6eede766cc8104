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
	"golang.org/x/sync/errgroup"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// Request asks for one image, or several in one tar (a bundle), for one
// platform.
type Request struct {
	Image string
	// Images, instead of Image, asks for a bundle: at most MaxBundle
	// images, named as the user wrote them (the same image written twice,
	// in any spelling, is one).
	Images   []string
	Platform string
	Creds    tarport.Credentials
	// Client identifies the requester for fair scheduling and quotas
	// (never stored in a job).
	Client string
}

// MaxBundle is the most images one tar holds.
const MaxBundle = 50

// Create resolves the images (authorizing the requester), plans the tar
// and starts a job, or joins the live job for the same images, platform
// and tags.
func (s *Service) Create(ctx context.Context, req Request) (View, error) {
	p, imgs, err := s.resolve(ctx, req)
	if err != nil {
		return View{}, err
	}
	job, tasks, err := s.newJob(ctx, p, imgs, req)
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
		return View{}, fmt.Errorf("creating job for %s: %w", job.Image, err)
	}
	if !created {
		// Resolving just now authorized this requester for these manifests.
		return s.view(ctx, live)
	}
	s.metrics.JobCreated()
	// The job exists now and others may join it: the requester going
	// away must not leave it half queued.
	ctx = context.WithoutCancel(ctx)
	s.log.Info("job created", "job", job.ID, "image", job.Image, "images", len(imgs), "platform", job.Platform, "bytes", job.TotalBytes, "layers", len(tasks))
	if err := s.start(ctx, job, tasks); err != nil {
		return View{}, err
	}
	job, err = s.jobs.Get(ctx, job.ID)
	if err != nil {
		return View{}, err
	}
	return s.view(ctx, job) // the requester was authorized to create it
}

// refs parses the request's references: its image, or its bundle's
// distinct images in the order given.
func (req Request) refs() ([]ref.Ref, error) {
	if len(req.Images) == 0 {
		r, err := tarport.ParseReference(req.Image)
		return []ref.Ref{r}, err
	}
	if req.Image != "" {
		return nil, tarport.Errorf(tarport.CodeInvalid, "ask for one image or a list of images, not both")
	}
	var refs []ref.Ref
	seen := map[string]bool{}
	for _, name := range req.Images {
		r, err := tarport.ParseReference(name)
		if err != nil {
			return nil, err // it names the reference
		}
		if !seen[r.CommonName()] {
			seen[r.CommonName()] = true
			refs = append(refs, r)
		}
	}
	if len(refs) > MaxBundle {
		return nil, tarport.Errorf(tarport.CodeTooLarge, "%d images asked for; one tar holds at most %d", len(refs), MaxBundle)
	}
	return refs, nil
}

// oneRegistry refuses credentials for images of several registries: a
// login is sent only to the registry it is for, and a pasted list or
// Compose file may name any host (which would then be sent it).
func oneRegistry(refs []ref.Ref, creds tarport.Credentials) error {
	if creds.Anonymous() {
		return nil
	}
	var hosts []string
	for _, r := range refs {
		if !slices.Contains(hosts, r.Registry) {
			hosts = append(hosts, r.Registry)
		}
	}
	if len(hosts) > 1 {
		return tarport.Errorf(tarport.CodeInvalid, "registry credentials go to one registry only, and these images come from %s: download each registry's images in their own tar (without credentials where they are public)", strings.Join(hosts, ", "))
	}
	return nil
}

// resolveConcurrency bounds the registries asked at once for a bundle.
const resolveConcurrency = 8

// resolve parses the request and resolves its images with the requester's
// credentials, within an API request's time. A bundle's error names the
// image it is about.
func (s *Service) resolve(ctx context.Context, req Request) (tarport.Platform, []tarport.Image, error) {
	refs, err := req.refs()
	if err != nil {
		return tarport.Platform{}, nil, err
	}
	p, err := tarport.ParsePlatform(req.Platform)
	if err != nil {
		return tarport.Platform{}, nil, err
	}
	if err := oneRegistry(refs, req.Creds); err != nil {
		return tarport.Platform{}, nil, err
	}
	// An API request must answer within API Gateway's ~30 s.
	budget := resolveTimeout
	if dl, ok := ctx.Deadline(); ok {
		budget = min(budget, time.Until(dl)-createReserve)
	}
	resolveCtx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	imgs := make([]tarport.Image, len(refs))
	g, gctx := errgroup.WithContext(resolveCtx)
	g.SetLimit(resolveConcurrency)
	for i, r := range refs {
		g.Go(func() error {
			img, err := s.reg.Resolve(gctx, r, p, req.Creds)
			if err != nil && len(refs) > 1 {
				err = named(err, r)
			}
			imgs[i] = img
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return tarport.Platform{}, nil, err
	}
	if len(imgs) > 1 && s.cfg.MaxImageBytes > 0 {
		var layers []descriptor.Descriptor
		for _, img := range imgs {
			layers = append(layers, img.Layers...)
		}
		if total := (tarport.Image{Layers: layers}).TotalLayerBytes(); total > s.cfg.MaxImageBytes {
			return tarport.Platform{}, nil, tarport.Errorf(tarport.CodeTooLarge, "the %d images' layers add up to %d bytes; one download holds at most %d", len(imgs), total, s.cfg.MaxImageBytes)
		}
	}
	return p, imgs, nil
}

// named is a bundle's error about one of its images: the same code and
// wait (Retry-After), the image named.
func named(err error, r ref.Ref) error {
	e := tarport.Wrap(err, tarport.ErrorCode(err), "image %s: %s", r.CommonName(), tarport.ErrorMessage(err))
	var orig *tarport.Error
	if errors.As(err, &orig) {
		e.RetryAfter = orig.RetryAfter
	}
	return e
}

// newJob plans the tar of resolved images and makes its job record and
// one task per distinct layer (each fetched for the first image that
// lists it), refusing what cannot be laid out.
func (s *Service) newJob(ctx context.Context, p tarport.Platform, imgs []tarport.Image, req Request) (tarport.Job, []Task, error) {
	var layers []descriptor.Descriptor
	var layerRefs []ref.Ref
	index := map[digest.Digest]int{}
	images := make([]tarport.JobImage, len(imgs))
	ins := make([]tarplan.Image, len(imgs))
	for i, img := range imgs {
		images[i] = jobImageOf(img)
		if len(imgs) > 1 && img.Ref.Tag != "" {
			// podman loads a tar of several images from manifest.json
			// alone, and names a short RepoTag (nginx:1.27) localhost/...;
			// docker load reads the full name as the short one.
			images[i].RepoTags = []string{images[i].Name + ":" + img.Ref.Tag}
		}
		ins[i] = planInput(images[i], img.Manifest, img.ManifestMediaType, img.Config, img.Layers)
		for _, l := range distinctLayers(img.Layers) {
			j, ok := index[l.Digest]
			if !ok {
				j = len(layers)
				index[l.Digest] = j
				layers, layerRefs = append(layers, l), append(layerRefs, img.Ref)
			}
			images[i].Layers = append(images[i].Layers, j)
		}
	}
	name := bundleName(images)
	if len(layers) > MaxLayers {
		return tarport.Job{}, nil, tarport.Errorf(tarport.CodeTooLarge, "%s has %d layers; at most %d are supported", name, len(layers), MaxLayers)
	}
	layout, err := tarplan.PlanImages(ins)
	if err != nil {
		return tarport.Job{}, nil, tarport.Wrap(err, tarport.CodeTooLarge, "%s cannot be laid out as a tar: its layers are too large", name)
	}
	if _, err := tarplan.Parts(layout, tarplan.S3Limits); err != nil {
		return tarport.Job{}, nil, tarport.Wrap(err, tarport.CodeTooLarge, "%s has too many layers to assemble", name)
	}
	now := s.now()
	job := tarport.Job{
		ID:         newID(),
		Key:        jobKey(images, p, req.Creds),
		Image:      name,
		Platform:   p.String(),
		Private:    !req.Creds.Anonymous(),
		Status:     tarport.StatusQueued,
		TotalBytes: layout.Size,
		FileName:   fileName(imgs, p),
		TarKey:     TarKey(),
		CreatedAt:  now,
		UpdatedAt:  now,
		ExpiresAt:  now.Add(s.cfg.JobTTL),
	}
	if len(images) == 1 {
		ji := images[0]
		job.Ref, job.Digest, job.IndexDigest, job.ConfigDigest = ji.Ref, ji.Digest, ji.IndexDigest, ji.ConfigDigest
		job.RepoTags, job.RefName, job.Name = ji.RepoTags, ji.RefName, ji.Name
	} else {
		job.Bundle = images
	}
	tasks := make([]Task, 0, len(layers))
	for i, l := range layers {
		t := layerTask(job.ID, i, layerRefs[i].CommonName(), l, req, now)
		parts, err := s.shouldSplit(ctx, layerRefs[i], &t)
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
		rts, _, err := s.claimSplit(ctx, job, t, parts, "")
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

// jobKey is what identical requests share: the same manifests, named the
// same way, in the same order, for the same platform, asked for by the
// same kind of requester: anonymous requests share jobs, and a registry
// login shares only with itself (its tasks run with that login; a job
// another login made could fail for reasons of that login's, or be
// private to it). The key is a hash: it names no login. A job of one
// image keeps the key it always had.
func jobKey(images []tarport.JobImage, p tarport.Platform, creds tarport.Credentials) string {
	var parts []string
	if len(images) > 1 {
		parts = append(parts, "bundle")
	}
	for _, ji := range images {
		parts = append(parts, ji.Name, ji.RefName, ji.Digest.String())
	}
	parts = append(parts, p.String())
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

// bundleName is how a job's images are shown together: the first's name,
// and how many more there are.
func bundleName(images []tarport.JobImage) string {
	if len(images) == 1 {
		return images[0].Image
	}
	return fmt.Sprintf("%s + %d more", images[0].Image, len(images)-1)
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// fileName names a tar after its image, tag (or digest) and platform; a
// bundle's after how many images it holds.
func fileName(imgs []tarport.Image, p tarport.Platform) string {
	platform := strings.ReplaceAll(p.String(), "/", "_")
	if len(imgs) > 1 {
		return unsafeFileChars.ReplaceAllString(fmt.Sprintf("bundle_%d-images_%s", len(imgs), platform), "-") + ".tar"
	}
	img := imgs[0]
	tag := img.Ref.Tag
	if tag == "" {
		tag = strings.TrimPrefix(img.Ref.Digest, "sha256:")
		if len(tag) > 12 {
			tag = tag[:12]
		}
	}
	base := strings.ReplaceAll(tarport.ShortName(img.Ref), "/", "_") + "_" + tag + "_" + platform
	return unsafeFileChars.ReplaceAllString(base, "-") + ".tar"
}
