package download

import (
	"context"
	"time"

	"github.com/tarport/tarport/shared/tarport"
)

// retry runs attempt up to cfg.Attempts times (tarport.LayerAttempts, the
// retry budget's second level), backing off between them, while its error
// is one another attempt may help; each attempt's progress starts afresh.
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
		part := 0
		if t.Range != nil {
			part = t.Range.Part
		}
		s.log.Warn("layer fetch failed, retrying", "job", t.JobID, "layer", t.Desc.Digest, "part", part, "attempt", n, "err", last)
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

// sleep waits before retry attempt n (1-based) of a fetch: 0.5 s x n².
func sleep(ctx context.Context, attempt int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(attempt*attempt) * 500 * time.Millisecond):
		return nil
	}
}
