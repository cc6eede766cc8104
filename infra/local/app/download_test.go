package app_test

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/testkit/regtest"
	"github.com/tarport/tarport/shared/testkit/tarcheck"
)

// TestMultiArchExactPlatform downloads every platform of an OCI index with
// attestations and arm v6/v7 variants: each tar holds exactly the asked
// platform's manifest and layers, never a neighbour's.
func TestMultiArchExactPlatform(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	pushed := regtest.PushMultiArch(t, reg, "team/multi", "v1")
	srv := startServer(t, registryEnv(reg.Host))

	cases := []struct{ ask, want string }{
		{"linux/amd64", "linux/amd64"},
		{"linux/arm64", "linux/arm64/v8"},
		{"linux/arm64/v8", "linux/arm64/v8"},
		{"linux/arm/v6", "linux/arm/v6"},
		{"linux/arm/v7", "linux/arm/v7"},
		{"linux/arm", "linux/arm/v7"},
		{"linux/386", "linux/386"},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.ask, "/", "_"), func(t *testing.T) {
			t.Parallel()
			want, ok := pushed.Platform(tc.want)
			if !ok {
				t.Fatalf("fixture has no %s", tc.want)
			}
			path, j := srv.download(t, request{Image: reg.Ref("team/multi", "v1"), Platform: tc.ask})
			c := tarcheck.Structure(t, path)
			if c.ManifestDigest != want.Manifest.Digest || j.Digest != want.Manifest.Digest {
				t.Errorf("asked %s: tar has manifest %s (job says %s), want %s", tc.ask, c.ManifestDigest, j.Digest, want.Manifest.Digest)
			}
			got := make([]string, 0, len(c.Layers))
			for _, l := range c.Layers {
				got = append(got, l.Digest)
			}
			if !slices.Equal(got, layerDigests(want.Layers)) {
				t.Errorf("asked %s: layers %v, want %v", tc.ask, got, layerDigests(want.Layers))
			}
			if c.Platform.String() != tc.want {
				t.Errorf("asked %s: config says %s", tc.ask, c.Platform)
			}
			if wantTag := reg.Host + "/team/multi:v1"; !slices.Equal(c.RepoTags, []string{wantTag}) || c.ImageName != wantTag || c.RefName != "v1" {
				t.Errorf("names: RepoTags %v, image name %q, ref name %q; want %s", c.RepoTags, c.ImageName, c.RefName, wantTag)
			}
			tarcheck.GGCR(t, path)
		})
	}

	t.Run("missing platform lists the others", func(t *testing.T) {
		t.Parallel()
		var e errorBody
		st := post(t, srv.URL+"/api/downloads", request{Image: reg.Ref("team/multi", "v1"), Platform: "linux/arm/v5"}, &e)
		if st != http.StatusNotFound || e.Error.Code != "platform_not_found" {
			t.Fatalf("got %d %+v, want 404 platform_not_found", st, e)
		}
		for _, p := range []string{"linux/amd64", "linux/arm64", "linux/arm/v6", "linux/arm/v7", "linux/386"} {
			if !strings.Contains(e.Error.Message, p) {
				t.Errorf("message %q does not list %s", e.Error.Message, p)
			}
		}
		if strings.Contains(e.Error.Message, "unknown") {
			t.Errorf("message %q lists attestation entries", e.Error.Message)
		}
	})
}

// TestDockerManifestList covers Docker's manifest list with schema2
// manifests, checked by skopeo and go-containerregistry.
func TestDockerManifestList(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	pushed := regtest.PushDockerList(t, reg, "team/dockerlist", "v2")
	srv := startServer(t, registryEnv(reg.Host))
	want, _ := pushed.Platform("linux/arm/v6")
	path, _ := srv.download(t, request{Image: reg.Ref("team/dockerlist", "v2"), Platform: "linux/arm/v6"})
	c := tarcheck.Structure(t, path)
	if c.ManifestDigest != want.Manifest.Digest || c.ManifestMediaType != "application/vnd.docker.distribution.manifest.v2+json" {
		t.Fatalf("got %s (%s), want %s schema2", c.ManifestDigest, c.ManifestMediaType, want.Manifest.Digest)
	}
	tarcheck.GGCR(t, path)
	tarcheck.Skopeo(t, path)
}

// TestSinglePlatformImageIsNotPassedOff: an image without an index answers
// only for its own platform.
func TestSinglePlatformImageIsNotPassedOff(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	regtest.PushImage(t, reg, "team/single", "v1", regtest.ImageSpec{Platform: "linux/amd64", Layers: make([]regtest.LayerSpec, 2)})
	srv := startServer(t, registryEnv(reg.Host))
	var e errorBody
	st := post(t, srv.URL+"/api/downloads", request{Image: reg.Ref("team/single", "v1"), Platform: "linux/arm64"}, &e)
	if st != http.StatusNotFound || e.Error.Code != "platform_not_found" || !strings.Contains(e.Error.Message, "linux/amd64") {
		t.Fatalf("got %d %+v, want 404 platform_not_found naming linux/amd64", st, e)
	}
	path, _ := srv.download(t, request{Image: reg.Ref("team/single", "v1")})
	tarcheck.Structure(t, path)
}

// TestLayerKinds: duplicated, empty, zstd, uncompressed and gzip layers,
// and an image of 120 layers, kept exactly as the registry serves them.
func TestLayerKinds(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	srv := startServer(t, registryEnv(reg.Host))
	mixed := regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 6 << 20, Random: true, Seed: "base"},
		{Empty: true},
		{Size: 300 << 10, Compression: regtest.Zstd},
		{Size: 200 << 10, Compression: regtest.Uncompressed},
		{Size: 6 << 20, Random: true, Seed: "base"}, // the first layer again
		{Size: 100 << 10},
	}}
	many := regtest.ImageSpec{Docker: true, Layers: make([]regtest.LayerSpec, 120)}
	for _, tc := range []struct {
		name string
		spec regtest.ImageSpec
	}{{"mixed", mixed}, {"120-layers", many}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pushed := regtest.PushImage(t, reg, "kinds/"+tc.name, "v1", tc.spec)
			path, j := srv.download(t, request{Image: reg.Ref("kinds/"+tc.name, "v1")})
			c := tarcheck.Structure(t, path)
			img := pushed.Images[0]
			got := make([]string, 0, len(c.Layers))
			for _, l := range c.Layers {
				got = append(got, l.Digest)
			}
			if !slices.Equal(got, layerDigests(img.Layers)) {
				t.Fatalf("layers %v, want %v", got, layerDigests(img.Layers))
			}
			distinct := map[string]bool{}
			for _, l := range img.Layers {
				distinct[l.Digest] = true
			}
			if len(j.Layers) != len(distinct) {
				t.Errorf("job lists %d layers, want %d distinct", len(j.Layers), len(distinct))
			}
			tarcheck.GGCR(t, path)
			if tc.name == "120-layers" {
				tarcheck.Skopeo(t, path) // skopeo's docker-archive refuses zstd
			}
		})
	}
}

// TestConcurrentRequestsShareOneJob: identical requests at once get one job.
func TestConcurrentRequestsShareOneJob(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	regtest.PushImage(t, reg, "team/shared", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 8 << 20, Random: true}}})
	srv := startServer(t, registryEnv(reg.Host))
	ids := make([]string, 8)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i] = srv.create(t, request{Image: reg.Ref("team/shared", "v1")}).ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("job ids differ: %v", ids)
		}
	}
	j := srv.wait(t, ids[0], time.Minute)
	if j.Status != "ready" {
		t.Fatalf("job failed: %+v", j.Error)
	}
}
