package download

import (
	"context"
	"fmt"
	"time"

	"github.com/tarport/tarport/shared/tarport"
)

// Resume restarts jobs a stopped process left unfinished (local mode; on
// AWS the queue keeps their tasks). A private job cannot resume: its
// credentials were never stored, so it fails asking for a new request.
func (s *Service) Resume(ctx context.Context, jobs []tarport.Job) error {
	for _, job := range jobs {
		if job.Remaining == 0 { // stitching needs no credentials
			if err := s.stitch(ctx, job); err != nil {
				s.log.Warn("resuming job", "job", job.ID, "err", err)
			}
			continue
		}
		// A job that cannot go on is failed; a store that cannot record
		// that is broken, and the server should not start on it.
		if job.Private {
			if err := s.fail(ctx, job.ID, tarport.Errorf(tarport.CodeCredentialsGone, "the server restarted during this private download; request it again with your credentials")); err != nil {
				return fmt.Errorf("resuming job %s: %w", job.ID, err)
			}
			continue
		}
		tasks, err := s.unfinishedTasks(ctx, job)
		if err != nil {
			if ferr := s.fail(ctx, job.ID, tarport.Wrap(err, tarport.CodeInternal, "the download could not resume after a restart; request it again")); ferr != nil {
				return fmt.Errorf("resuming job %s: %w", job.ID, ferr)
			}
			continue
		}
		if err := s.queue.Enqueue(ctx, tasks); err != nil {
			if ctx.Err() != nil || tarport.ErrorCode(err) == tarport.CodeInternal {
				return fmt.Errorf("resuming job %s: %w", job.ID, err) // the queue is broken
			}
			// A full queue: this job fails, the others and the server go on.
			if ferr := s.fail(ctx, job.ID, tarport.Wrap(err, tarport.CodeUnavailable, "the download could not resume after a restart; request it again")); ferr != nil {
				return fmt.Errorf("resuming job %s: %w", job.ID, ferr)
			}
			continue
		}
		s.log.Info("job resumed", "job", job.ID, "image", job.Image, "layers", len(tasks))
	}
	return nil
}

func (s *Service) unfinishedTasks(ctx context.Context, job tarport.Job) ([]Task, error) {
	_, layers, err := s.replan(ctx, job)
	if err != nil {
		return nil, err
	}
	var tasks []Task
	for i, l := range job.Layers {
		if l.Finished {
			continue
		}
		if l.Parts > 0 {
			// Its staging upload's parts are not tracked across a restart.
			return nil, fmt.Errorf("layer %s was split into parts, which cannot resume", l.Digest)
		}
		tasks = append(tasks, layerTask(job.ID, i, layers[i].ref.CommonName(), layers[i].desc, Request{}, time.Time{}))
	}
	return tasks, nil
}
