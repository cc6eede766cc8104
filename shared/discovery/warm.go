package discovery

import (
	"context"
	"errors"
	"fmt"
)

// Warm refreshes the popular list and the details of its first WarmTop
// repositories, so visitors find them cached. It stops, without error,
// when WarmBudget is spent or the next refresh would exceed WarmMaxCalls
// upstream calls (popular is 1, details 2: repository and tags). Failed
// refreshes are returned joined; entries they leave keep being served.
func (s *Service) Warm(ctx context.Context) error {
	bctx, cancel := context.WithTimeout(ctx, s.cfg.WarmBudget)
	defer cancel()
	spent := func() bool { return bctx.Err() != nil && ctx.Err() == nil }

	calls := 1
	if calls > s.cfg.WarmMaxCalls {
		return nil
	}
	pop, err := s.popular(bctx, true)
	if err != nil {
		if spent() {
			return nil
		}
		return fmt.Errorf("warming the popular list: %w", err)
	}
	var errs []error
	for _, r := range pop.Value[:min(s.cfg.WarmTop, len(pop.Value))] {
		if bctx.Err() != nil || calls+2 > s.cfg.WarmMaxCalls {
			break
		}
		calls += 2
		namespace, name, err := hubRepository(r.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("warming details of %q: %w", r.Name, err))
			continue
		}
		if _, err := s.details(bctx, namespace, name, true); err != nil {
			if spent() {
				break
			}
			errs = append(errs, fmt.Errorf("warming details of %s/%s: %w", namespace, name, err))
		}
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}
