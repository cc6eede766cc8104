package fakehub_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/testkit/fakehub"
)

// get fetches path from the hub and decodes a JSON object.
func get(t *testing.T, h *fakehub.Hub, path string) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := h.Client().Get(h.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding %s: %v (%s)", path, err, b)
	}
	return resp.StatusCode, resp.Header, m
}

func TestFixturesDir(t *testing.T) {
	t.Parallel()
	dir := fakehub.FixturesDir(t)
	if !strings.HasSuffix(dir, "fixtures/hub") {
		t.Errorf("FixturesDir = %s, want .../fixtures/hub", dir)
	}
}

func TestPaths(t *testing.T) {
	t.Parallel()
	h := fakehub.New(t, "")
	tests := []struct {
		path       string
		wantStatus int
		check      func(t *testing.T, m map[string]any)
	}{
		{"/v2/namespaces/library/repositories/nginx", 200, func(t *testing.T, m map[string]any) {
			if m["name"] != "nginx" || m["full_description"] == "" {
				t.Errorf("repo = %v", m["name"])
			}
		}},
		{"/v2/repositories/library/nginx/", 200, func(t *testing.T, m map[string]any) {
			if m["namespace"] != "library" {
				t.Errorf("namespace = %v", m["namespace"])
			}
		}},
		{"/v2/namespaces/tensorflow/repositories/tensorflow", 200, nil},
		{"/v2/namespaces/library/repositories/alpine", 200, nil}, // from the list fixture
		{"/v2/namespaces/library/repositories/doesnotexist", 404, func(t *testing.T, m map[string]any) {
			info, _ := m["errinfo"].(map[string]any)
			if m["message"] != "httperror 404: object not found" || info["repository"] != "doesnotexist" {
				t.Errorf("404 body = %v", m)
			}
		}},
		{"/v2/namespaces/library/repositories/nginx/tags?page_size=2", 200, func(t *testing.T, m map[string]any) {
			if n := len(m["results"].([]any)); n != 2 || m["count"] != float64(5) {
				t.Errorf("tags page: %d results, count %v", n, m["count"])
			}
		}},
		{"/v2/repositories/library/nginx/tags?page=1&page_size=5&ordering=last_updated", 200, func(t *testing.T, m map[string]any) {
			first := m["results"].([]any)[0].(map[string]any)
			if first["name"] != "latest" || m["next"] != nil {
				t.Errorf("first tag %v, next %v", first["name"], m["next"])
			}
		}},
		{"/v2/repositories/library/nginx/tags/1.9.15", 200, func(t *testing.T, m map[string]any) {
			if m["name"] != "1.9.15" {
				t.Errorf("tag = %v", m["name"])
			}
		}},
		{"/v2/namespaces/library/repositories?ordering=pull_count&page_size=2", 200, func(t *testing.T, m map[string]any) {
			res := m["results"].([]any)
			if res[0].(map[string]any)["name"] != "nginx" || res[1].(map[string]any)["name"] != "alpine" {
				t.Errorf("most pulled = %v", res)
			}
			if _, ok := res[0].(map[string]any)["full_description"]; ok {
				t.Error("list entries carry full_description")
			}
		}},
		{"/v2/namespaces/library/repositories?ordering=-pull_count&page_size=1", 200, func(t *testing.T, m map[string]any) {
			if name := m["results"].([]any)[0].(map[string]any)["name"]; name != "redis" {
				t.Errorf("least pulled = %v", name)
			}
		}},
		{"/api/search/v4?query=nginx&from=0&size=2", 200, func(t *testing.T, m map[string]any) {
			if m["total"] != float64(4) || len(m["results"].([]any)) != 2 {
				t.Errorf("v4 = total %v, %d results", m["total"], len(m["results"].([]any)))
			}
		}},
		{"/v2/search/repositories/?query=nginx&page_size=6", 200, func(t *testing.T, m map[string]any) {
			if m["count"] != float64(6) || m["previous"] != nil {
				t.Errorf("v2 = count %v previous %v", m["count"], m["previous"])
			}
		}},
		{"/v2/namespaces/library/repositories?page=99", 404, nil},
		{"/nowhere", 404, nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			t.Parallel()
			status, hdr, m := get(t, h, tt.path)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%v)", status, tt.wantStatus, m)
			}
			if hdr.Get("X-RateLimit-Limit") != "180" {
				t.Errorf("X-RateLimit-Limit = %q", hdr.Get("X-RateLimit-Limit"))
			}
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

func TestPagingCapAndNext(t *testing.T) {
	t.Parallel()
	h := fakehub.New(t, "")
	for i := range 150 {
		h.AddRepo(fakehub.Repo{Namespace: "acme", Name: fmt.Sprintf("r%03d", i), Pulls: int64(i)})
	}
	_, _, m := get(t, h, "/v2/namespaces/acme/repositories?page_size=150&ordering=name")
	if n := len(m["results"].([]any)); n != 100 {
		t.Errorf("page_size=150 gave %d results, want the cap of 100", n)
	}
	next, _ := m["next"].(string)
	if !strings.HasPrefix(next, h.URL+"/v2/namespaces/acme/repositories?") || !strings.Contains(next, "page_size=150") || !strings.Contains(next, "page=2") {
		t.Errorf("next = %q, want own base URL, page=2, echoed page_size=150", next)
	}
	_, _, m = get(t, h, strings.TrimPrefix(next, h.URL))
	if n := len(m["results"].([]any)); n != 50 || m["next"] != nil || m["previous"] == nil {
		t.Errorf("page 2: %d results, next %v, previous %v", n, m["next"], m["previous"])
	}
}

func TestHitsAndFailures(t *testing.T) {
	t.Parallel()
	h := fakehub.New(t, "")
	const path = "/v2/namespaces/library/repositories/nginx"
	h.FailNext(http.StatusTooManyRequests, 1, 2500*time.Millisecond)
	h.FailNext(http.StatusServiceUnavailable, 1, 0)

	status, hdr, m := get(t, h, path)
	if status != 429 || hdr.Get("Retry-After") != "3" || m["detail"] != "Rate limit exceeded" {
		t.Errorf("first = %d Retry-After %q %v", status, hdr.Get("Retry-After"), m)
	}
	if status, _, _ := get(t, h, path); status != 503 {
		t.Errorf("second = %d, want 503", status)
	}
	if status, _, _ := get(t, h, path); status != 200 {
		t.Errorf("third = %d, want 200", status)
	}
	get(t, h, "/v2/repositories/library/nginx/")
	if got := h.Hits(path); got != 3 {
		t.Errorf("Hits = %d, want 3", got)
	}
	if got := h.TotalHits(); got != 4 {
		t.Errorf("TotalHits = %d, want 4", got)
	}
	h.ResetHits()
	if h.TotalHits() != 0 || h.Hits(path) != 0 {
		t.Error("ResetHits left counts")
	}
}

func TestDepthLimit(t *testing.T) {
	t.Parallel()
	h := fakehub.New(t, "")
	h.DepthLimit(4)
	if status, _, _ := get(t, h, "/v2/namespaces/library/repositories?page_size=2&page=2"); status != 200 {
		t.Errorf("offset 2 = %d, want 200", status)
	}
	status, _, m := get(t, h, "/v2/namespaces/library/repositories?page_size=2&page=3")
	if status != 403 || !strings.Contains(m["message"].(string), "pagination") {
		t.Errorf("offset 4 = %d %v, want 403 pagination", status, m)
	}
	if status, _, _ := get(t, h, "/api/search/v4?query=nginx&from=4"); status != 403 {
		t.Errorf("v4 from=4 = %d, want 403", status)
	}
}

func TestDelay(t *testing.T) {
	t.Parallel()
	h := fakehub.New(t, "")
	h.Delay(150 * time.Millisecond)
	start := time.Now()
	get(t, h, "/v2/namespaces/library/repositories/nginx")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("answer took %v, want >= 150ms", d)
	}
}

func TestAddedDataIsServed(t *testing.T) {
	t.Parallel()
	h := fakehub.New(t, "")
	h.AddRepo(fakehub.Repo{Namespace: "bitnami", Name: "redis", Description: "Bitnami Redis", Pulls: 2_345_678, Stars: 5})
	h.AddTags("bitnami", "redis", fakehub.Tag{Name: "7", Digest: "sha256:aa", LastUpdated: time.Now(), Images: []fakehub.Image{
		{OS: "linux", Architecture: "amd64", Digest: "sha256:bb", Size: 10},
		{OS: "unknown", Architecture: "unknown", Digest: "sha256:cc", Size: 1},
	}})
	_, _, m := get(t, h, "/api/search/v4?query=bitnami")
	r := m["results"].([]any)[0].(map[string]any)
	if r["id"] != "bitnami/redis" || r["pull_count"] != "1M+" || r["raw_pull_count"] != float64(2345678) || r["badge"] != nil {
		t.Errorf("v4 result = %v", r)
	}
	_, _, m = get(t, h, "/v2/search/repositories/?query=bitnami/redis")
	if r := m["results"].([]any)[0].(map[string]any); r["repo_name"] != "bitnami/redis" {
		t.Errorf("v2 result = %v", r)
	}
	_, _, m = get(t, h, "/v2/namespaces/bitnami/repositories/redis/tags")
	img := m["results"].([]any)[0].(map[string]any)["images"].([]any)[0].(map[string]any)
	if img["variant"] != nil || img["size"] != float64(10) {
		t.Errorf("image = %v", img)
	}
}

func TestRoundedPulls(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{5: "5", 42: "10+", 14288: "10K+", 18820491: "10M+", 1189002764: "1B+", 13718294112: "1B+"} {
		if got := fakehub.RoundedPulls(n); got != want {
			t.Errorf("RoundedPulls(%d) = %q, want %q", n, got, want)
		}
	}
}
