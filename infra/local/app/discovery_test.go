package app_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/testkit/fakehub"
	"github.com/tarport/tarport/shared/testkit/regtest"
)

// TestDiscoveryEndpoints: search, popular and image details from the
// local server against the fake Docker Hub serving the fixtures, in the
// DESIGN.md shapes, cached (a second answer makes no upstream call).
func TestDiscoveryEndpoints(t *testing.T) {
	t.Parallel()
	hub := fakehub.New(t, "")
	srv := startServer(t, map[string]string{"TARPORT_HUB_API": hub.URL})

	get := func(t *testing.T, path string) (*http.Response, map[string]any) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("GET %s: %d, not JSON: %v", path, resp.StatusCode, err)
		}
		return resp, body
	}

	t.Run("search", func(t *testing.T) {
		resp, body := get(t, "/api/search?q=nginx&limit=3")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != "MISS" {
			t.Fatalf("%d X-Cache %q: %v", resp.StatusCode, resp.Header.Get("X-Cache"), body)
		}
		for _, k := range []string{"query", "page", "limit", "total", "results"} {
			if _, ok := body[k]; !ok {
				t.Errorf("search answer lacks %q: %v", k, body)
			}
		}
		results, _ := body["results"].([]any)
		if len(results) == 0 || len(results) > 3 {
			t.Fatalf("%d results, want 1..3", len(results))
		}
		first := results[0].(map[string]any)
		for _, k := range []string{"name", "namespace", "official", "description", "stars", "pulls", "updated"} {
			if _, ok := first[k]; !ok {
				t.Errorf("result lacks %q: %v", k, first)
			}
		}
		hits := hub.TotalHits()
		resp, _ = get(t, "/api/search?query=NGINX&limit=3")
		if resp.Header.Get("X-Cache") != "HIT" || hub.TotalHits() != hits {
			t.Fatalf("second search: X-Cache %q, hub hits %d -> %d; want a cached answer", resp.Header.Get("X-Cache"), hits, hub.TotalHits())
		}
		// The seed's POST form answers the same.
		r, err := http.Post(srv.URL+"/api/search", "application/json", strings.NewReader(`{"query":"nginx","limit":"3"}`))
		if err != nil || r.StatusCode != http.StatusOK {
			t.Fatalf("POST /api/search: %v %v", r.StatusCode, err)
		}
		r.Body.Close()
	})

	t.Run("concurrent identical searches call Docker Hub once", func(t *testing.T) {
		before := hub.TotalHits()
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.Get(srv.URL + "/api/search?q=redis&limit=5")
				if err == nil {
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		if n := hub.TotalHits() - before; n != 1 {
			t.Fatalf("%d upstream calls for 50 identical searches, want 1", n)
		}
	})

	t.Run("popular", func(t *testing.T) {
		resp, body := get(t, "/api/popular?limit=5")
		results, _ := body["results"].([]any)
		if resp.StatusCode != http.StatusOK || len(results) == 0 || len(results) > 5 {
			t.Fatalf("%d, %d results: %v", resp.StatusCode, len(results), body)
		}
	})

	t.Run("image details", func(t *testing.T) {
		resp, body := get(t, "/api/image-details?image=nginx")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d: %v", resp.StatusCode, body)
		}
		tags, _ := body["tags"].([]any)
		if len(tags) == 0 {
			t.Fatalf("no tags: %v", body)
		}
		tag := tags[0].(map[string]any)
		for _, k := range []string{"name", "digest", "size", "updated", "platforms"} {
			if _, ok := tag[k]; !ok {
				t.Errorf("tag lacks %q: %v", k, tag)
			}
		}
		for _, p := range tag["platforms"].([]any) {
			pm := p.(map[string]any)
			if pm["os"] == "unknown" || pm["architecture"] == "unknown" {
				t.Errorf("attestation entry listed: %v", pm)
			}
		}
	})

	t.Run("bad inputs", func(t *testing.T) {
		for _, tc := range []struct {
			path   string
			status int
			code   string
		}{
			{"/api/search", 400, "invalid_request"},
			{"/api/search?q=nginx&limit=0x", 400, "invalid_request"},
			{"/api/search?q=nginx&limit=101", 400, "invalid_request"},
			{"/api/search?q=nginx&page=0", 400, "invalid_request"},
			{"/api/search?q=" + strings.Repeat("a", 200), 400, "invalid_request"},
			{"/api/image-details?image=library/does-not-exist", 404, "not_found"},
			{"/api/image-details?image=Bad!Name", 400, "invalid_reference"},
		} {
			resp, body := get(t, tc.path)
			e, _ := body["error"].(map[string]any)
			if resp.StatusCode != tc.status || e == nil || e["code"] != tc.code {
				t.Errorf("GET %s: %d %v, want %d %s", tc.path, resp.StatusCode, body, tc.status, tc.code)
			}
		}
	})
}

// TestRegistryDetails: details of an image outside Docker Hub come from
// its registry: tags, and each tag's platforms (attestations left out) with
// compressed sizes; Hub-only facts are null, not invented.
func TestRegistryDetails(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	multi := regtest.PushMultiArch(t, reg, "team/multi", "v1")
	regtest.PushImage(t, reg, "team/multi", "v0.9", regtest.ImageSpec{Platform: "linux/arm/v6", Layers: make([]regtest.LayerSpec, 2)})
	srv := startServer(t, registryEnv(reg.Host))

	resp, err := http.Get(srv.URL + "/api/image-details?image=" + reg.Ref("team/multi", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Name  string `json:"name"`
		Stars *int64 `json:"stars"`
		Pulls *int64 `json:"pulls"`
		Tags  []struct {
			Name      string `json:"name"`
			Digest    string `json:"digest"`
			Size      int64  `json:"size"`
			Platforms []struct {
				OS, Architecture, Variant, Digest string
				Size                              int64
			} `json:"platforms"`
		} `json:"tags"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%d: %v", resp.StatusCode, err)
	}
	if d.Name != reg.Host+"/team/multi" || d.Stars != nil || d.Pulls != nil || len(d.Tags) != 2 {
		t.Fatalf("details %+v", d)
	}
	v1 := d.Tags[0]
	if v1.Name != "v1" || v1.Digest != multi.Digest() || len(v1.Platforms) != len(regtest.MultiArchPlatforms) {
		t.Fatalf("v1: %+v, want the index digest %s and %d platforms", v1, multi.Digest(), len(regtest.MultiArchPlatforms))
	}
	for _, p := range v1.Platforms {
		img, ok := multi.Platform(strings.TrimSuffix(p.OS+"/"+p.Architecture+"/"+p.Variant, "/"))
		if !ok || p.Digest != img.Manifest.Digest || p.Size <= 0 {
			t.Errorf("platform %+v: not the pushed one (%+v) or no size", p, img.Manifest)
		}
	}
	if d.Tags[1].Name != "v0.9" || len(d.Tags[1].Platforms) != 1 || d.Tags[1].Platforms[0].Variant != "v6" {
		t.Fatalf("v0.9: %+v", d.Tags[1])
	}
}

// TestWarmNow: an explicit warm (what SIGUSR1 asks the local server for)
// fills the popular list and the top images' details, so the next
// visitors' answers are cache hits that cost Docker Hub nothing.
func TestWarmNow(t *testing.T) {
	t.Parallel()
	hub := fakehub.New(t, "")
	srv := startServer(t, map[string]string{"TARPORT_HUB_API": hub.URL})
	if n := hub.TotalHits(); n != 0 {
		t.Fatalf("%d upstream calls before any request or warm", n)
	}
	srv.app.WarmNow()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(srv.logs.String(), "warmed the discovery cache") {
		if time.Now().After(deadline) {
			t.Fatalf("no warm finished in 20 s; log:\n%s", srv.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	hits := hub.TotalHits()
	if hits == 0 {
		t.Fatal("the warm made no upstream call")
	}
	for _, path := range []string{"/api/popular", "/api/image-details?image=nginx"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != "HIT" {
			t.Errorf("GET %s after the warm: %d X-Cache %q, want a 200 HIT", path, resp.StatusCode, resp.Header.Get("X-Cache"))
		}
	}
	if n := hub.TotalHits(); n != hits {
		t.Fatalf("answers after the warm made %d upstream calls", n-hits)
	}
}
