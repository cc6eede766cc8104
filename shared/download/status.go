package download

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tarport/tarport/shared/tarport"
)

// View is a job as its user sees it, with a fresh link when ready.
type View struct {
	tarport.Job
	URL           string
	LinkExpiresAt time.Time
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
		if err := s.checkAccess(ctx, job, creds); err != nil {
			return View{}, err
		}
	}
	return s.view(ctx, job)
}

// checkAccess asks the registry of each of a private job's images whether
// creds may read it (its manifest by digest), several at once, all within
// linkCheckTimeout: a registry that does not answer must not hold a status
// read (or a Lambda) for long.
func (s *Service) checkAccess(ctx context.Context, job tarport.Job, creds tarport.Credentials) error {
	checkCtx, cancel := context.WithTimeout(ctx, linkCheckTimeout)
	defer cancel()
	g, gctx := errgroup.WithContext(checkCtx)
	g.SetLimit(resolveConcurrency)
	for _, ji := range job.Images() {
		g.Go(func() error {
			r, err := tarport.ParseReference(ji.Ref)
			if err != nil {
				return fmt.Errorf("job %s: %w", job.ID, err)
			}
			err = s.reg.CheckManifest(gctx, r.SetDigest(ji.Digest.String()), creds)
			if err != nil && creds.Anonymous() && isRefusal(err) {
				return tarport.Wrap(err, tarport.CodeCredentialsGone, "download %s is of a private image: its link is given only with registry credentials that may read it (send them as HTTP basic auth, e.g. curl -u USER:TOKEN)", job.ID)
			}
			return err
		})
	}
	return g.Wait()
}

// view signs a ready job's link, for at most the job's remaining life.
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

// isRefusal says whether err is a registry's no (rather than a failure).
func isRefusal(err error) bool {
	switch tarport.ErrorCode(err) {
	case tarport.CodeUnauthorized, tarport.CodeForbidden, tarport.CodeNotFound:
		return true
	}
	return false
}
