package registry_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/registry"
	"github.com/tarport/tarport/shared/tarport"
)

// fakeRegistry serves fixed manifests and blobs and counts GETs, for the
// cases a real registry will not store (schema 1, lying servers).
type fakeRegistry struct {
	*httptest.Server
	mu           sync.Mutex
	manifests    map[string]fakeManifest // by tag or digest
	blobs        map[digest.Digest][]byte
	gets         atomic.Int32
	noHeadDigest bool
}

type fakeManifest struct {
	mediaType string
	body      []byte
}

func newFake(t *testing.T) *fakeRegistry {
	f := &fakeRegistry{manifests: map[string]fakeManifest{}, blobs: map[digest.Digest][]byte{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeRegistry) host() string { return strings.TrimPrefix(f.URL, "http://") }

func (f *fakeRegistry) addManifest(tag, mediaType string, body []byte) digest.Digest {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := digest.FromBytes(body)
	m := fakeManifest{mediaType: mediaType, body: body}
	f.manifests[d.String()] = m
	if tag != "" {
		f.manifests[tag] = m
	}
	return d
}

func (f *fakeRegistry) addBlob(b []byte) digest.Digest {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := digest.FromBytes(b)
	f.blobs[d] = b
	return d
}

func (f *fakeRegistry) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	if r.URL.Path == "/v2/" {
		return
	}
	if r.Method == http.MethodGet {
		f.gets.Add(1)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := strings.Index(r.URL.Path, "/manifests/"); i >= 0 {
		m, ok := f.manifests[r.URL.Path[i+len("/manifests/"):]]
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", m.mediaType)
		if !(r.Method == http.MethodHead && f.noHeadDigest) {
			w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.body).String())
		}
		if r.Method == http.MethodGet {
			w.Write(m.body)
		}
		return
	}
	if i := strings.Index(r.URL.Path, "/blobs/"); i >= 0 {
		b, ok := f.blobs[digest.Digest(r.URL.Path[i+len("/blobs/"):])]
		if !ok {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Write(b)
		return
	}
	http.NotFound(w, r)
}

func jsonBytes(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// image adds a config and a manifest referencing one layer of layerSize.
func (f *fakeRegistry) image(t *testing.T, tag, configMediaType string, layerSize int64) digest.Digest {
	cfg := jsonBytes(t, map[string]any{"os": "linux", "architecture": "amd64", "rootfs": map[string]any{"type": "layers", "diff_ids": []string{}}})
	cd := f.addBlob(cfg)
	m := jsonBytes(t, map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": configMediaType, "digest": cd, "size": len(cfg)},
		"layers": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
			"digest":    digest.FromString("layer"), "size": layerSize,
		}},
	})
	return f.addManifest(tag, "application/vnd.oci.image.manifest.v1+json", m)
}

// memCache is the meta cache in memory, one namespace per origin as the
// stores keep it.
type memCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMemCache() *memCache { return &memCache{m: map[string][]byte{}} }

func (c *memCache) GetMeta(_ context.Context, o tarport.Origin, d digest.Digest) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.m[download.MetaKey(o, d)]; ok {
		return b, nil
	}
	return nil, tarport.Errorf(tarport.CodeNotFound, "no %s", d)
}

func (c *memCache) PutMeta(_ context.Context, o tarport.Origin, d digest.Digest, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[download.MetaKey(o, d)] = b
	return nil
}

func resolve(t *testing.T, c *registry.Client, image, platform string) (tarport.Image, error) {
	t.Helper()
	r, err := tarport.ParseReference(image)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tarport.ParsePlatform(platform)
	if err != nil {
		t.Fatal(err)
	}
	return c.Resolve(t.Context(), r, p, tarport.Credentials{})
}

func TestResolveRefuses(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.addManifest("schema1", "application/vnd.docker.distribution.manifest.v1+prettyjws", []byte(`{"schemaVersion":1,"name":"x","tag":"schema1","fsLayers":[]}`))
	f.image(t, "helm", "application/vnd.cncf.helm.config.v1+json", 100)
	f.image(t, "huge", "application/vnd.oci.image.config.v1+json", 2<<30)
	c := registry.New(registry.Options{Insecure: []string{f.host()}, MaxImageBytes: 1 << 30})
	for _, tc := range []struct {
		tag  string
		code tarport.Code
		say  string
	}{
		{"schema1", tarport.CodeUnsupported, "schema 1"},
		{"helm", tarport.CodeUnsupported, "not a container image"},
		{"huge", tarport.CodeTooLarge, "over this server's limit"},
		{"missing", tarport.CodeNotFound, "not found"},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			_, err := resolve(t, c, f.host()+"/team/app:"+tc.tag, "linux/amd64")
			if tarport.ErrorCode(err) != tc.code || !strings.Contains(tarport.ErrorMessage(err), tc.say) {
				t.Fatalf("got %v (%s), want %s saying %q", tarport.ErrorCode(err), tarport.ErrorMessage(err), tc.code, tc.say)
			}
		})
	}
}

// TestResolveUsesTheCache: a second resolve of the same tag costs a HEAD
// and no GET (Docker Hub counts GETs against its pull limit).
func TestResolveUsesTheCache(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	want := f.image(t, "v1", "application/vnd.oci.image.config.v1+json", 100)
	c := registry.New(registry.Options{Insecure: []string{f.host()}, Cache: newMemCache()})
	img, err := resolve(t, c, f.host()+"/team/app:v1", "linux/amd64")
	if err != nil || img.ManifestDigest != want {
		t.Fatalf("first resolve: %v, %s", err, img.ManifestDigest)
	}
	before := f.gets.Load()
	if _, err := resolve(t, c, f.host()+"/team/app:v1", "linux/amd64"); err != nil {
		t.Fatal(err)
	}
	if after := f.gets.Load(); after != before {
		t.Fatalf("second resolve made %d GETs, want 0", after-before)
	}
}

// TestResolveWithoutHeadDigest: a registry that omits the digest on HEAD
// still resolves (by GET).
func TestResolveWithoutHeadDigest(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	f.noHeadDigest = true
	want := f.image(t, "v1", "application/vnd.oci.image.config.v1+json", 100)
	c := registry.New(registry.Options{Insecure: []string{f.host()}})
	img, err := resolve(t, c, f.host()+"/team/app:v1", "linux/amd64")
	if err != nil || img.ManifestDigest != want {
		t.Fatalf("got %v, %s; want %s", err, img.ManifestDigest, want)
	}
}

// TestResolveCatchesALyingRegistry: a manifest asked for by digest that
// hashes to something else is refused.
func TestResolveCatchesALyingRegistry(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	good := f.image(t, "", "application/vnd.oci.image.config.v1+json", 100)
	other := f.image(t, "", "application/vnd.docker.container.image.v1+json", 200)
	f.mu.Lock()
	f.manifests[good.String()] = f.manifests[other.String()]
	f.mu.Unlock()
	c := registry.New(registry.Options{Insecure: []string{f.host()}})
	_, err := resolve(t, c, f.host()+"/team/app@"+good.String(), "linux/amd64")
	if tarport.ErrorCode(err) != tarport.CodeDigestMismatch {
		t.Fatalf("got %v, want digest_mismatch", err)
	}
}
