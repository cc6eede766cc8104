package discovery_test

import (
	"context"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/discovery"
	"github.com/tarport/tarport/shared/tarport"
)

// TestWarmRefreshesPopularAndTopDetails: Warm fetches popular and the
// details of the top N even when fresh; visitors then hit the cache.
func TestWarmRefreshesPopularAndTopDetails(t *testing.T) {
	t.Parallel()
	for _, tc := range caches {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			hub := newFakeHub()
			s, _ := newService(hub, tc.open(t), discovery.Config{WarmTop: 5, WarmMaxCalls: 100})
			for range 2 {
				if err := s.Warm(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if p, r, tg := hub.count("popular"), hub.count("repository"), hub.count("tags"); p != 2 || r != 10 || tg != 10 {
				t.Fatalf("calls: popular %d, repository %d, tags %d; want 2, 10, 10", p, r, tg)
			}
			if res, err := s.Popular(ctx, 10); err != nil || !res.Cached {
				t.Fatalf("popular after warm: cached=%v err=%v", res.Cached, err)
			}
			for _, image := range []string{"image0", "library/image4"} {
				if res, err := s.Details(ctx, image); err != nil || !res.Cached {
					t.Fatalf("%s after warm: cached=%v err=%v", image, res.Cached, err)
				}
			}
			if res, err := s.Details(ctx, "image5"); err != nil || res.Cached {
				t.Fatalf("image5 is not in the top 5: cached=%v err=%v", res.Cached, err)
			}
		})
	}
}

// TestWarmRespectsMaxCalls: popular (1) + 2 details (4) fit in 6 calls, a
// third details would not.
func TestWarmRespectsMaxCalls(t *testing.T) {
	t.Parallel()
	hub := newFakeHub()
	s, _ := newService(hub, newMemCache(), discovery.Config{WarmTop: 20, WarmMaxCalls: 6})
	if err := s.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := hub.count("popular") + hub.count("repository") + hub.count("tags"); n != 5 || hub.count("repository") != 2 {
		t.Fatalf("upstream calls %d (repository %d), want 5 (2)", n, hub.count("repository"))
	}
}

// TestWarmRespectsBudget: with slow upstream calls Warm stops when its
// time budget is spent, without error.
func TestWarmRespectsBudget(t *testing.T) {
	t.Parallel()
	hub := newFakeHub()
	hub.delay = 20 * time.Millisecond
	// A budget of some 20 calls (all 30 details take 60): room enough that
	// a loaded machine still makes one before it is spent.
	s, _ := newService(hub, newMemCache(), discovery.Config{WarmTop: 30, WarmMaxCalls: 1000, WarmBudget: 400 * time.Millisecond})
	start := time.Now()
	if err := s.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Warm took %v with a 400ms budget", took)
	}
	if n := hub.count("repository"); n == 0 || n >= 30 {
		t.Fatalf("repository calls = %d, want some but not all 30", n)
	}
}

// TestWarmReportsFailures: a failed refresh is an error; the entries it
// could not refresh stay.
func TestWarmReportsFailures(t *testing.T) {
	t.Parallel()
	hub := newFakeHub()
	hub.setErr(tarport.Errorf(tarport.CodeUpstream, "down"))
	s, _ := newService(hub, newMemCache(), discovery.Config{})
	if err := s.Warm(context.Background()); tarport.ErrorCode(err) != tarport.CodeUpstream {
		t.Fatalf("err = %v, want upstream_error", err)
	}
}
