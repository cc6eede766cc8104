package app_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/testkit/regtest"
)

// TestMetrics: /metrics serves DESIGN.md's names in Prometheus' text
// format, and they count what happened: a job downloaded from the registry,
// the same image asked again (a joined job, no new bytes), a second tag of
// it (its layers from the cache), a refusal, requests by route and status.
func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	pushed := regtest.PushImage(t, reg, "team/metrics", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 300 << 10, Random: true, Seed: "metrics"}}})
	regtest.PushImage(t, reg, "team/metrics", "v2", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 300 << 10, Random: true, Seed: "metrics"}}})
	srv := startServer(t, registryEnv(reg.Host))

	j := srv.create(t, request{Image: pushed.Ref})
	srv.wait(t, j.ID, time.Minute)
	srv.create(t, request{Image: pushed.Ref})
	j2 := srv.create(t, request{Image: reg.Ref("team/metrics", "v2")})
	srv.wait(t, j2.ID, time.Minute)
	if st := post(t, srv.URL+"/api/downloads", request{Image: reg.Ref("team/metrics", "nope")}, nil); st != http.StatusNotFound {
		t.Fatalf("a missing tag: %d", st)
	}

	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !regexp.MustCompile(`^text/plain; version=0\.0\.4`).MatchString(res.Header.Get("Content-Type")) {
		t.Fatalf("/metrics: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	value := func(series string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("no series %s in:\n%s", series, body)
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	for series, want := range map[string]float64{
		"tarport_jobs_created_total":                                           2,
		`tarport_jobs_finished_total{code="none",status="ready"}`:              2,
		`tarport_job_duration_seconds_count{status="ready"}`:                   2,
		`tarport_http_requests_total{class="2xx",route="POST /api/downloads"}`: 3, // two new jobs, one joined
		`tarport_http_requests_total{class="4xx",route="POST /api/downloads"}`: 1,
		`tarport_registry_retries_total`:                                       0,
	} {
		if got := value(series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	// One layer: read once from the registry (v1), served once from the
	// cache (v2, the same layer).
	if got, hit := value("tarport_registry_bytes_total"), value("tarport_cache_hit_bytes_total"); got < 300<<10 || hit != got {
		t.Errorf("registry bytes %v, cache hit bytes %v; want the one layer's size (over %d) each", got, hit, 300<<10)
	}
	// The joined request answered 200 or 202; the status reads were counted.
	if value(`tarport_http_requests_total{class="2xx",route="GET /api/downloads/{id}"}`) < 2 {
		t.Errorf("status reads not counted")
	}
}
