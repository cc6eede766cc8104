package discovery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/discovery"
	"github.com/tarport/tarport/shared/tarport"
)

// TestCacheHitAndExpiry: a second identical search (modulo case and
// spaces) is served from the cache; after the TTL it goes upstream again.
func TestCacheHitAndExpiry(t *testing.T) {
	t.Parallel()
	for _, tc := range caches {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			hub := newFakeHub()
			s, clk := newService(hub, tc.open(t), discovery.Config{})

			first, err := s.Search(ctx, "Nginx", 1, 10)
			if err != nil || first.Cached || first.Stale {
				t.Fatalf("first search: %+v %v", first, err)
			}
			if first.Value.Query != "nginx" || first.Value.Page != 1 || first.Value.Limit != 10 {
				t.Fatalf("page fields = %q %d %d", first.Value.Query, first.Value.Page, first.Value.Limit)
			}
			clk.Advance(4 * time.Minute)
			second, err := s.Search(ctx, "  nGINX ", 1, 10)
			if err != nil || !second.Cached || second.Stale || hub.count("search") != 1 {
				t.Fatalf("second search: %+v %v, upstream calls %d", second, err, hub.count("search"))
			}
			if !second.StoredAt.Equal(t0) || second.Value.Results[0].Description != "call 1" {
				t.Fatalf("second search served %+v", second)
			}
			if _, err := s.Search(ctx, "nginx", 2, 10); err != nil || hub.count("search") != 2 {
				t.Fatalf("another page must be its own entry: %v, calls %d", err, hub.count("search"))
			}

			clk.Advance(time.Minute + time.Second) // past the 5 min TTL
			third, err := s.Search(ctx, "nginx", 1, 10)
			if err != nil || third.Cached || hub.count("search") != 3 || third.Value.Results[0].Description != "call 3" {
				t.Fatalf("after TTL: %+v %v, calls %d", third, err, hub.count("search"))
			}
		})
	}
}

// TestConcurrentMissesCallUpstreamOnce: 100 identical searches at once
// make one upstream call and all get its answer.
func TestConcurrentMissesCallUpstreamOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range caches {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hub := newFakeHub()
			hub.delay = 50 * time.Millisecond
			s, _ := newService(hub, tc.open(t), discovery.Config{})
			var wg sync.WaitGroup
			errs := make(chan error, 100)
			for range 100 {
				wg.Go(func() {
					res, err := s.Search(context.Background(), "redis", 1, 25)
					if err == nil && res.Value.Results[0].Description != "call 1" {
						err = errors.New("wrong value: " + res.Value.Results[0].Description)
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if n := hub.count("search"); n != 1 {
				t.Fatalf("upstream calls = %d, want 1", n)
			}
		})
	}
}

// TestStaleOnError: when Docker Hub fails, an expired entry is served,
// marked stale; a repository that is gone is not brought back.
func TestStaleOnError(t *testing.T) {
	t.Parallel()
	for _, tc := range caches {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			hub := newFakeHub()
			s, clk := newService(hub, tc.open(t), discovery.Config{})
			if _, err := s.Details(ctx, "bitnami/redis"); err != nil {
				t.Fatal(err)
			}
			clk.Advance(31 * time.Minute) // past the 30 min TTL

			for _, code := range []tarport.Code{tarport.CodeUpstream, tarport.CodeUpstreamTimeout, tarport.CodeRateLimited} {
				hub.setErr(tarport.Errorf(code, "hub trouble"))
				res, err := s.Details(ctx, "docker.io/bitnami/redis")
				if err != nil || !res.Stale || !res.Cached || res.Value.Name != "redis" || len(res.Value.Tags) != 3 || !res.StoredAt.Equal(t0) {
					t.Fatalf("%s: %+v %v", code, res, err)
				}
			}

			hub.setErr(tarport.Errorf(tarport.CodeNotFound, "no such repository"))
			if _, err := s.Details(ctx, "bitnami/redis"); tarport.ErrorCode(err) != tarport.CodeNotFound {
				t.Fatalf("not found upstream: err = %v", err)
			}

			hub.setErr(nil)
			res, err := s.Details(ctx, "bitnami/redis")
			if err != nil || res.Stale || res.Cached {
				t.Fatalf("upstream back: %+v %v", res, err)
			}
			if hub.count("repository") != 6 {
				t.Fatalf("repository calls = %d, want 6", hub.count("repository"))
			}
		})
	}
}

// TestRateLimitedWithoutEntry: no entry to fall back on, the client gets
// rate_limited with Docker Hub's Retry-After.
func TestRateLimitedWithoutEntry(t *testing.T) {
	t.Parallel()
	hub := newFakeHub()
	hub.setErr(&tarport.Error{Code: tarport.CodeRateLimited, Message: "Docker Hub is throttling us", RetryAfter: 30})
	s, _ := newService(hub, newMemCache(), discovery.Config{})
	_, err := s.Popular(context.Background(), 10)
	var coded *tarport.Error
	if !errors.As(err, &coded) || coded.Code != tarport.CodeRateLimited || coded.RetryAfter != 30 {
		t.Fatalf("err = %v, want rate_limited with RetryAfter 30", err)
	}
}

// TestUpstreamDeadlineIsCoded: a Hub that lets our timeout through
// uncoded still yields upstream_timeout, not internal_error.
func TestUpstreamDeadlineIsCoded(t *testing.T) {
	t.Parallel()
	hub := newFakeHub()
	hub.delay = time.Second
	s, _ := newService(hub, newMemCache(), discovery.Config{UpstreamTimeout: 20 * time.Millisecond})
	if _, err := s.Search(context.Background(), "slow", 1, 1); tarport.ErrorCode(err) != tarport.CodeUpstreamTimeout {
		t.Fatalf("err = %v, want upstream_timeout", err)
	}
}

// TestCacheFailureFallsBackToUpstream: a broken cache slows browsing
// down, it does not break it.
func TestCacheFailureFallsBackToUpstream(t *testing.T) {
	t.Parallel()
	hub := newFakeHub()
	cache := newMemCache()
	cache.getErr = errors.New("cache offline")
	s, _ := newService(hub, cache, discovery.Config{})
	if res, err := s.Search(context.Background(), "nginx", 1, 1); err != nil || res.Cached {
		t.Fatalf("%+v %v", res, err)
	}
}

// TestDetailsNormalizesNames: every spelling of one repository is one
// entry and one upstream fetch, with up to DetailsTags tags.
func TestDetailsNormalizesNames(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hub := newFakeHub()
	hub.tags = 150
	cache := newMemCache()
	s, _ := newService(hub, cache, discovery.Config{})
	for _, image := range []string{"nginx", "library/nginx", "docker.io/library/nginx", "docker.io/nginx", "nginx:1.27", "index.docker.io/library/nginx"} {
		res, err := s.Details(ctx, image)
		if err != nil || res.Value.Namespace != "library" || res.Value.Name != "nginx" || len(res.Value.Tags) != 100 {
			t.Fatalf("%s: %v %v %v %d", image, err, res.Value.Namespace, res.Value.Name, len(res.Value.Tags))
		}
	}
	if _, err := s.Details(ctx, "docker.io/bitnami/redis"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(hub.gotRepos, " "); got != "library/nginx bitnami/redis" || hub.count("tags") != 2 || hub.gotTags != 100 {
		t.Fatalf("upstream repository calls %q, tags calls %d with limit %d", got, hub.count("tags"), hub.gotTags)
	}
	if _, ok := cache.entry("v1:details:docker.io/library/nginx"); !ok {
		t.Fatalf("no entry under the versioned key; have %v", keys(cache))
	}
}

// TestPopularIsOneEntryForEveryLimit: the list is fetched once, at its
// full size with the notable repositories, and cut per request.
func TestPopularIsOneEntryForEveryLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	hub := newFakeHub()
	s, _ := newService(hub, newMemCache(), discovery.Config{PopularNotable: []string{"bitnami/redis"}})
	for _, tc := range []struct{ limit, want int }{{0, 25}, {5, 5}, {100, 30}} {
		res, err := s.Popular(ctx, tc.limit)
		if err != nil || len(res.Value) != tc.want {
			t.Fatalf("limit %d: %d results, %v", tc.limit, len(res.Value), err)
		}
	}
	if hub.count("popular") != 1 || len(hub.gotNotabl) != 1 || hub.gotNotabl[0] != "bitnami/redis" {
		t.Fatalf("popular calls %d, notable %v", hub.count("popular"), hub.gotNotabl)
	}
}

// TestValidation: bad input is refused with a coded error before any
// upstream call.
func TestValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		call func(*discovery.Service) error
		want tarport.Code
	}{
		{"empty query", search("", 1, 10), tarport.CodeInvalid},
		{"blank query", search(" \t ", 1, 10), tarport.CodeInvalid},
		{"query of 101 characters", search(strings.Repeat("é", 101), 1, 10), tarport.CodeInvalid},
		{"control character", search("a\x00b", 1, 10), tarport.CodeInvalid},
		{"invalid UTF-8", search("a\xffb", 1, 10), tarport.CodeInvalid},
		{"negative limit", search("a", 1, -1), tarport.CodeInvalid},
		{"limit over 100", search("a", 1, 101), tarport.CodeInvalid},
		{"negative page", search("a", -1, 10), tarport.CodeInvalid},
		{"page over 100", search("a", 101, 10), tarport.CodeInvalid},
		{"popular limit over 100", func(s *discovery.Service) error { _, err := s.Popular(context.Background(), 101); return err }, tarport.CodeInvalid},
		{"empty image", details(""), tarport.CodeInvalidReference},
		{"uppercase image", details("NGINX"), tarport.CodeInvalidReference},
		{"scheme", details("https://docker.io/nginx"), tarport.CodeInvalidReference},
		{"three levels on Hub", details("docker.io/a/b/c"), tarport.CodeInvalidReference},
		{"too long", details(strings.Repeat("a", 600)), tarport.CodeInvalidReference},
		{"other registry", details("ghcr.io/owner/repo"), tarport.CodeUnsupported},
		{"local registry", details("localhost:5000/x"), tarport.CodeUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hub := newFakeHub()
			s, _ := newService(hub, newMemCache(), discovery.Config{})
			if err := tc.call(s); tarport.ErrorCode(err) != tc.want {
				t.Fatalf("err = %v, want code %s", err, tc.want)
			}
			if n := hub.count("search") + hub.count("repository") + hub.count("popular"); n != 0 {
				t.Fatalf("%d upstream calls for invalid input", n)
			}
		})
	}
	// The bounds themselves are valid.
	s, _ := newService(newFakeHub(), newMemCache(), discovery.Config{})
	for _, call := range []func(*discovery.Service) error{search(strings.Repeat("é", 100), 100, 100), search("a", 0, 0), details("bitnami/redis:7")} {
		if err := call(s); err != nil {
			t.Fatal(err)
		}
	}
}

func search(q string, page, limit int) func(*discovery.Service) error {
	return func(s *discovery.Service) error { _, err := s.Search(context.Background(), q, page, limit); return err }
}

func details(image string) func(*discovery.Service) error {
	return func(s *discovery.Service) error { _, err := s.Details(context.Background(), image); return err }
}

// TestLargeValuesAreCompressed: details over CompressAbove are stored
// gzipped, under MaxValueSize, and read back equal; a value too large
// even gzipped is served but not cached.
func TestLargeValuesAreCompressed(t *testing.T) {
	t.Parallel()
	for _, tc := range caches {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			hub := newFakeHub()
			hub.tags = 100
			hub.desc = strings.Repeat("A long README. ", 5000)
			cache := tc.open(t)
			s, _ := newService(hub, cache, discovery.Config{})
			fresh, err := s.Details(ctx, "grafana/grafana")
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := json.Marshal(fresh.Value)
			if len(plain) <= discovery.CompressAbove {
				t.Fatalf("test value is only %d bytes", len(plain))
			}
			e, found, err := cache.Get(ctx, "v1:details:docker.io/grafana/grafana")
			if err != nil || !found || !bytes.HasPrefix(e.Value, []byte{0x1f, 0x8b}) || len(e.Value) > discovery.MaxValueSize {
				t.Fatalf("stored %d bytes (of %d), found %v, err %v", len(e.Value), len(plain), found, err)
			}
			cached, err := s.Details(ctx, "grafana/grafana")
			if err != nil || !cached.Cached {
				t.Fatalf("second read: cached=%v err=%v", cached.Cached, err)
			}
			if again, _ := json.Marshal(cached.Value); !bytes.Equal(again, plain) {
				t.Fatal("the value changed in the round trip through the cache")
			}

			// Incompressible and over MaxValueSize: not cached.
			noise := make([]byte, 600<<10)
			for i := range noise {
				noise[i] = byte('a' + rand.IntN(26))
			}
			hub.mu.Lock()
			hub.desc = string(noise)
			hub.mu.Unlock()
			if _, err := s.Details(ctx, "grafana/loki"); err != nil {
				t.Fatal(err)
			}
			if _, found, _ := cache.Get(ctx, "v1:details:docker.io/grafana/loki"); found {
				t.Fatal("a value over MaxValueSize was cached")
			}
		})
	}
}

func keys(c *memCache) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k := range c.entries {
		out = append(out, k)
	}
	return out
}
