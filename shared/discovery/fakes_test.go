package discovery_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/boltdb"
	"github.com/tarport/tarport/shared/discovery"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/fakeclock"
)

// t0 is near the real time: the bbolt cache drops entries past DeleteAt
// by its own clock.
var t0 = time.Now().UTC().Truncate(time.Second)

func newClock() *fakeclock.Clock { return fakeclock.At(t0) }

// fakeHub counts calls per method and answers from simple rules.
type fakeHub struct {
	delay time.Duration

	mu        sync.Mutex
	calls     map[string]int
	err       error // returned by every method while set
	popular   []tarport.RepoSummary
	tags      int // how many tags a repository has
	desc      string
	gotTags   int
	gotNotabl []string
	gotRepos  []string
}

var _ discovery.Hub = (*fakeHub)(nil)

func newFakeHub() *fakeHub {
	h := &fakeHub{calls: map[string]int{}, tags: 3}
	for i := range 30 {
		h.popular = append(h.popular, tarport.RepoSummary{Name: fmt.Sprintf("image%d", i), Namespace: "library", Official: true})
	}
	return h
}

func (h *fakeHub) call(ctx context.Context, method string) error {
	h.mu.Lock()
	h.calls[method]++
	err := h.err
	h.mu.Unlock()
	if h.delay > 0 {
		select {
		case <-time.After(h.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

func (h *fakeHub) count(method string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[method]
}

func (h *fakeHub) setErr(err error) {
	h.mu.Lock()
	h.err = err
	h.mu.Unlock()
}

func (h *fakeHub) Search(ctx context.Context, query string, page, limit int) (tarport.SearchPage, error) {
	if err := h.call(ctx, "search"); err != nil {
		return tarport.SearchPage{}, err
	}
	h.mu.Lock()
	n := h.calls["search"]
	h.mu.Unlock()
	// The description tells which upstream call produced the page.
	return tarport.SearchPage{Total: 1, Results: []tarport.RepoSummary{{Name: query, Namespace: "library", Description: fmt.Sprintf("call %d", n)}}}, nil
}

func (h *fakeHub) Repository(ctx context.Context, namespace, name string) (tarport.RepoDetails, error) {
	if err := h.call(ctx, "repository"); err != nil {
		return tarport.RepoDetails{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gotRepos = append(h.gotRepos, namespace+"/"+name)
	return tarport.RepoDetails{RepoSummary: tarport.RepoSummary{Name: name, Namespace: namespace}, FullDescription: h.desc}, nil
}

func (h *fakeHub) Tags(ctx context.Context, namespace, name string, limit int) ([]tarport.TagInfo, error) {
	if err := h.call(ctx, "tags"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gotTags = limit
	updated := t0.Add(-time.Hour)
	var tags []tarport.TagInfo
	for i := range min(h.tags, limit) {
		tag := tarport.TagInfo{Name: fmt.Sprintf("1.%d", i), Digest: fmt.Sprintf("sha256:%064x", i), Size: int64(i) << 20, Updated: &updated}
		for _, arch := range []string{"amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "mips64le"} {
			tag.Platforms = append(tag.Platforms, tarport.PlatformInfo{OS: "linux", Architecture: arch, Digest: fmt.Sprintf("sha256:%064x", i*100+len(arch)), Size: int64(i) << 20})
		}
		tags = append(tags, tag)
	}
	return tags, nil
}

func (h *fakeHub) Popular(ctx context.Context, limit int, notable []string) ([]tarport.RepoSummary, error) {
	if err := h.call(ctx, "popular"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gotNotabl = notable
	return h.popular[:min(limit, len(h.popular))], nil
}

// memCache is the in-memory Cache; it keeps everything (as DynamoDB does
// before its late TTL deletion).
type memCache struct {
	mu      sync.Mutex
	entries map[string]discovery.Entry
	getErr  error
}

var _ discovery.Cache = (*memCache)(nil)

func newMemCache() *memCache { return &memCache{entries: map[string]discovery.Entry{}} }

func (c *memCache) Get(_ context.Context, key string) (discovery.Entry, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.getErr != nil {
		return discovery.Entry{}, false, c.getErr
	}
	e, ok := c.entries[key]
	return e, ok, nil
}

func (c *memCache) Set(_ context.Context, key string, e discovery.Entry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[key] = e
	return nil
}

func (c *memCache) entry(key string) (discovery.Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e, ok
}

// caches are the Cache implementations every service test runs against.
var caches = []struct {
	name string
	open func(t *testing.T) discovery.Cache
}{
	{"memory", func(*testing.T) discovery.Cache { return newMemCache() }},
	{"bbolt", func(t *testing.T) discovery.Cache {
		c, err := boltdb.OpenCache(filepath.Join(t.TempDir(), "cache.db"))
		if err != nil {
			t.Fatalf("OpenCache: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}},
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newService builds a service over hub and cache with a fake clock.
func newService(hub discovery.Hub, cache discovery.Cache, cfg discovery.Config) (*discovery.Service, *fakeclock.Clock) {
	clk := newClock()
	cfg.Now = clk.Now
	cfg.Logger = quiet
	return discovery.New(hub, cache, cfg), clk
}
