package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	searchBegin = "<!-- bench-search:begin -->"
	searchEnd   = "<!-- bench-search:end -->"

	searchRequests    = 2000
	searchConcurrency = 32
	searchQueries     = 20 // distinct queries, asked round robin
)

// searchBench measures /api/search on a local tarport whose Docker Hub is an
// in-process stand-in serving the v4 search fixture: per-request latency
// (p50, p99) seen by the client over searchRequests requests at
// searchConcurrency, the cache hit ratio from X-Cache, and the upstream calls.
func searchBench(ctx context.Context, bin, work string) (string, error) {
	fixture, err := os.ReadFile(filepath.Join("..", "shared", "fixtures", "hub", "search-v4-nginx.json"))
	if err != nil {
		return "", fmt.Errorf("reading the search fixture: %w", err)
	}
	var upstream atomic.Int64
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(fixture)
	}))
	defer hub.Close()

	srv, err := startServer(ctx, bin, filepath.Join(work, "search-data"), "",
		"TARPORT_HUB_API="+hub.URL, "TARPORT_RATE_LIMIT_PER_MINUTE=100000000", "TARPORT_WARM_EVERY=0")
	if err != nil {
		return "", err
	}
	defer srv.stop()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: searchConcurrency}, Timeout: 30 * time.Second}
	var (
		mu        sync.Mutex
		latencies []time.Duration
		hits      int
		failures  int
	)
	next := make(chan int)
	var wg sync.WaitGroup
	started := time.Now()
	for range searchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				url := fmt.Sprintf("%s/api/search?q=query%d&limit=10", srv.base, i%searchQueries)
				t0 := time.Now()
				resp, err := client.Get(url)
				d := time.Since(t0)
				mu.Lock()
				if err != nil || resp.StatusCode != http.StatusOK {
					failures++
				} else {
					latencies = append(latencies, d)
					if resp.Header.Get("X-Cache") == "HIT" {
						hits++
					}
				}
				mu.Unlock()
				if err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	for i := range searchRequests {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	elapsed := time.Since(started)
	if failures > 0 {
		return "", fmt.Errorf("%d of %d searches failed", failures, searchRequests)
	}
	slices.Sort(latencies)
	q := func(p float64) time.Duration { return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))] }
	return fmt.Sprintf(`Measured %s: %d GET /api/search requests, %d at a time, over %d distinct queries, on a local tarport whose Docker Hub is an in-process stand-in serving the v4 search fixture.

| p50 | p99 | max | cache hit ratio | Docker Hub calls | throughput |
|---|---|---|---|---|---|
| %.2f ms | %.2f ms | %.2f ms | %.1f%% (%d of %d) | %d | %.0f requests/s |`,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), searchRequests, searchConcurrency, searchQueries,
		ms(q(0.50)), ms(q(0.99)), ms(latencies[len(latencies)-1]),
		100*float64(hits)/float64(searchRequests), hits, searchRequests, upstream.Load(),
		float64(searchRequests)/elapsed.Seconds()), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
