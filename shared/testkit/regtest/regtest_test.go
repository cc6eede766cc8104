package regtest_test

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/klauspost/compress/zstd"

	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/regtest"
)

func TestBinaryEnvOverride(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "fake-tool")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TARPORT_FAKE_TOOL_BIN", fake)
	if got := daemon.Binary(t, "fake-tool"); got != fake {
		t.Errorf("Binary = %q, want the override %q", got, fake)
	}
}

func TestFindBinary(t *testing.T) {
	if _, err := daemon.FindBinary("tarport-no-such-tool"); !errors.Is(err, daemon.ErrToolNotFound) {
		t.Errorf("missing tool: err = %v, want ErrToolNotFound", err)
	}
	// A candidate name is tried on PATH after the tool's own name.
	if p, err := daemon.FindBinary("tarport-no-such-tool", "sh"); err != nil || filepath.Base(p) != "sh" {
		t.Errorf("candidate sh: got %q, %v", p, err)
	}
	for name, want := range map[string]string{
		"registry":       "TARPORT_REGISTRY_BIN",
		"aws-lambda-rie": "TARPORT_AWS_LAMBDA_RIE_BIN",
	} {
		if got := daemon.BinaryEnv(name); got != want {
			t.Errorf("BinaryEnv(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestStartAndRestart(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	resp, err := http.Get(reg.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ = %d, want 200", resp.StatusCode)
	}
	p := regtest.PushImage(t, reg, "restart/me", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 100}}})

	reg.Stop()
	if _, err := http.Get(reg.URL() + "/v2/"); err == nil {
		t.Fatal("registry still answers after Stop")
	}
	if err := reg.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkImage(t, reg, p.Ref, p.Images[0])
}

func TestPushMultiArch(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	p := regtest.PushMultiArch(t, reg, "multi/arch", "v1")
	idx := checkIndex(t, reg, p, regtest.MediaTypeOCIIndex)

	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	n := len(regtest.MultiArchPlatforms)
	if len(im.Manifests) != 2*n {
		t.Fatalf("index has %d manifests, want %d images and %d attestations", len(im.Manifests), n, n)
	}
	for i, img := range p.Images {
		att := im.Manifests[n+i]
		if att.Platform.String() != "unknown/unknown" ||
			att.Annotations[regtest.AnnotationReferenceType] != "attestation-manifest" ||
			att.Annotations[regtest.AnnotationReferenceDigest] != img.Manifest.Digest ||
			img.Attestation == nil || att.Digest.String() != img.Attestation.Manifest.Digest {
			t.Errorf("attestation %d = %+v, want one for %s (%s)", i, att, img.Platform, img.Manifest.Digest)
			continue
		}
		ai, err := idx.Image(att.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := ai.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Layers) != 1 || m.Layers[0].MediaType != regtest.MediaTypeInToto {
			t.Errorf("attestation %d layers = %+v, want one in-toto layer", i, m.Layers)
		}
	}
	if img, ok := p.Platform("linux/arm64"); !ok || img.Platform != "linux/arm64/v8" {
		t.Errorf(`Platform("linux/arm64") = %q, %v`, img.Platform, ok)
	}
}

func TestPushDockerList(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	p := regtest.PushDockerList(t, reg, "docker/list", "v1")
	checkIndex(t, reg, p, regtest.MediaTypeDockerList)
	for _, img := range p.Images {
		if img.Manifest.MediaType != regtest.MediaTypeDockerManifest || img.Attestation != nil {
			t.Errorf("%s: manifest %s, attestation %v; want a schema2 manifest without attestation",
				img.Platform, img.Manifest.MediaType, img.Attestation)
		}
	}
}

func TestPushImage(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	many := make([]regtest.LayerSpec, 120)
	tests := []struct {
		name  string
		spec  regtest.ImageSpec
		check func(t *testing.T, img regtest.Image)
	}{{
		name: "gzip layers",
		spec: regtest.ImageSpec{Layers: []regtest.LayerSpec{{}, {Size: 1000}, {Size: 3<<20 + 5, Random: true}}},
		check: func(t *testing.T, img regtest.Image) {
			if big := img.Layers[2].Size; big < 3<<20 {
				t.Errorf("random 3 MiB layer compressed to %d bytes", big)
			}
		},
	}, {
		name: "duplicated layer",
		spec: regtest.ImageSpec{Layers: []regtest.LayerSpec{{Seed: "dup", Size: 10}, {Size: 10}, {Seed: "dup", Size: 10}}},
		check: func(t *testing.T, img regtest.Image) {
			if img.Layers[0].Digest != img.Layers[2].Digest || img.Layers[0].Digest == img.Layers[1].Digest {
				t.Errorf("layers %v: want 0 and 2 the same, 1 different", img.Layers)
			}
		},
	}, {
		name: "empty layer",
		spec: regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 10}, {Empty: true}}},
		check: func(t *testing.T, img regtest.Image) {
			if img.Layers[1].Digest != regtest.EmptyLayerDigest || img.DiffIDs[1] != regtest.EmptyLayerDiffID {
				t.Errorf("empty layer = %v (diff id %s)", img.Layers[1], img.DiffIDs[1])
			}
		},
	}, {
		name: "zstd and uncompressed",
		spec: regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 5000, Compression: regtest.Zstd}, {Size: 5000, Compression: regtest.Uncompressed}}},
		check: func(t *testing.T, img regtest.Image) {
			if img.Layers[0].MediaType != regtest.MediaTypeOCILayerZstd || img.Layers[1].MediaType != regtest.MediaTypeOCILayer {
				t.Errorf("media types %s, %s", img.Layers[0].MediaType, img.Layers[1].MediaType)
			}
			if img.Layers[1].Digest != img.DiffIDs[1] {
				t.Errorf("uncompressed layer digest %s != diff id %s", img.Layers[1].Digest, img.DiffIDs[1])
			}
		},
	}, {
		name: "120 layers",
		spec: regtest.ImageSpec{Layers: many},
		check: func(t *testing.T, img regtest.Image) {
			seen := map[string]bool{}
			for _, l := range img.Layers {
				seen[l.Digest] = true
			}
			if len(img.Layers) != 120 || len(seen) != 120 {
				t.Errorf("%d layers, %d distinct; want 120", len(img.Layers), len(seen))
			}
		},
	}, {
		name: "docker schema2",
		spec: regtest.ImageSpec{Platform: "linux/arm64/v8", Docker: true, Layers: []regtest.LayerSpec{
			{Size: 100, Files: map[string]string{"etc/motd": "hi\n"}}, {Empty: true}, {Size: 100, Compression: regtest.Uncompressed},
		}},
		check: func(t *testing.T, img regtest.Image) {
			want := []string{regtest.MediaTypeDockerLayer, regtest.MediaTypeDockerLayer, regtest.MediaTypeDockerLayerTar}
			for i, l := range img.Layers {
				if l.MediaType != want[i] {
					t.Errorf("layer %d media type %s, want %s", i, l.MediaType, want[i])
				}
			}
			if img.Manifest.MediaType != regtest.MediaTypeDockerManifest || img.Config.MediaType != regtest.MediaTypeDockerConfig {
				t.Errorf("manifest %s, config %s", img.Manifest.MediaType, img.Config.MediaType)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := regtest.PushImage(t, reg, "images/"+strings.ReplaceAll(tt.name, " ", "-"), "v1", tt.spec)
			if p.Index != nil || len(p.Images) != 1 || len(p.Images[0].Layers) != len(tt.spec.Layers) {
				t.Fatalf("pushed %+v, want one image with %d layers", p, len(tt.spec.Layers))
			}
			checkImage(t, reg, p.Ref, p.Images[0])
			tt.check(t, p.Images[0])
		})
	}
}

func TestPushImageRefusesDockerZstd(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	_, err := regtest.WriteImage(t.Context(), reg.Dest("bad/zstd", "v1"), regtest.ImageSpec{
		Docker: true, Layers: []regtest.LayerSpec{{Compression: regtest.Zstd}},
	})
	if err == nil {
		t.Fatal("docker image with a zstd layer pushed; want an error")
	}
}

func TestPushImageIsDeterministic(t *testing.T) {
	t.Parallel()
	reg1, reg2 := regtest.Start(t), regtest.Start(t)
	spec := regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 2000, Random: true}, {Size: 10, Compression: regtest.Zstd}}}
	a := regtest.PushImage(t, reg1, "same/repo", "v1", spec)
	b := regtest.PushImage(t, reg2, "same/repo", "v1", spec)
	if a.Digest() != b.Digest() {
		t.Errorf("same repo:tag on two registries: digests %s and %s differ", a.Digest(), b.Digest())
	}
}

func TestPushWindows(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	var fetches atomic.Int32
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		regtest.ForeignLayerHandler().ServeHTTP(w, r)
	}))
	t.Cleanup(cdn.Close)
	url := cdn.URL + "/windows/base.tar.gz"

	p := regtest.PushWindows(t, reg, "windows/app", "ltsc2022", url)
	img := p.Images[0]
	base := img.Layers[0]
	if img.Platform != "windows/amd64" || base.MediaType != regtest.MediaTypeDockerForeign ||
		len(base.URLs) != 1 || base.URLs[0] != url || base.Digest != digestOf(regtest.ForeignLayer()) {
		t.Fatalf("pushed %+v, want a windows/amd64 image with a foreign first layer at %s", img, url)
	}
	resp, err := http.Head(reg.URL() + "/v2/windows/app/blobs/" + base.Digest)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD foreign blob in registry = %d, want 404", resp.StatusCode)
	}
	// Validation reads every layer: the foreign one can only come from the URL.
	checkImage(t, reg, p.Ref, img)
	if fetches.Load() == 0 {
		t.Error("the foreign layer's URL was never fetched")
	}
}

func TestPushWithCredentials(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t, regtest.WithHtpasswd("alice", "s3cret"))
	p := regtest.PushImage(t, reg, "private/app", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 100}}})
	checkImage(t, reg, p.Ref, p.Images[0])

	ref, err := name.ParseReference(p.Ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for name, auth := range map[string]authn.Authenticator{
		"anonymous":      authn.Anonymous,
		"wrong password": &authn.Basic{Username: "alice", Password: "nope"},
	} {
		_, err := remote.Head(ref, remote.WithAuth(auth), remote.WithContext(t.Context()))
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: HEAD manifest err = %v, want 401", name, err)
		}
	}
	if _, err := regtest.WriteImage(t.Context(), regtest.Dest{Ref: p.Ref}, regtest.ImageSpec{}); err == nil {
		t.Error("anonymous push to a registry with auth succeeded")
	}
}

// checkImage reads ref back from the registry, validates it, and compares it with what
// the fixture said it pushed.
//
// go-containerregistry's validate reads every layer as gzip and counts only tar layers
// against diff_ids, so it fully validates only images of gzip layers; for the others
// (zstd, plain tar, in-toto attestations) it checks manifest, config and that every
// layer exists. checkLayers then reads each layer independently of it.
func checkImage(t *testing.T, reg *regtest.Registry, ref string, want regtest.Image) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, readOptions(t, reg)...)
	if err != nil {
		t.Fatalf("reading %s: %v", ref, err)
	}
	var opts []validate.Option
	for _, l := range want.Layers {
		switch l.MediaType {
		case regtest.MediaTypeOCILayerGzip, regtest.MediaTypeDockerLayer, regtest.MediaTypeDockerForeign:
		default:
			opts = []validate.Option{validate.Fast}
		}
	}
	if err := validate.Image(foreignFromURL{img}, opts...); err != nil {
		t.Fatalf("validating %s: %v", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	if d.String() != want.Manifest.Digest || string(m.MediaType) != want.Manifest.MediaType {
		t.Errorf("%s: manifest %s %s, want %s %s", ref, d, m.MediaType, want.Manifest.Digest, want.Manifest.MediaType)
	}
	if m.Config.Digest.String() != want.Config.Digest || m.Config.Size != want.Config.Size ||
		string(m.Config.MediaType) != want.Config.MediaType {
		t.Errorf("%s: config %v, want %+v", ref, m.Config, want.Config)
	}
	if len(m.Layers) != len(want.Layers) {
		t.Fatalf("%s: %d layers, want %d", ref, len(m.Layers), len(want.Layers))
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.RootFS.DiffIDs) != len(m.Layers) {
		t.Fatalf("%s: %d diff ids for %d layers", ref, len(cf.RootFS.DiffIDs), len(m.Layers))
	}
	for i, l := range m.Layers {
		w := want.Layers[i]
		if l.Digest.String() != w.Digest || l.Size != w.Size || string(l.MediaType) != w.MediaType ||
			!slices.Equal(l.URLs, w.URLs) || cf.RootFS.DiffIDs[i].String() != want.DiffIDs[i] {
			t.Errorf("%s: layer %d = %s/%d/%s (diff id %s), want %+v (diff id %s)",
				ref, i, l.Digest, l.Size, l.MediaType, cf.RootFS.DiffIDs[i], w, want.DiffIDs[i])
		}
	}
	if want.Platform != "unknown/unknown" && len(cf.History) != len(m.Layers) {
		t.Errorf("%s: %d history entries for %d layers", ref, len(cf.History), len(m.Layers))
	}
	checkLayers(t, img, m, cf)
	return img
}

// checkLayers reads every layer as a runtime would: the blob (from the registry, or
// from its URL when foreign) must match digest and size, and decompressed by its media
// type it must be a tar whose digest is the config's diff id. It streams, so it also
// checks multi-GiB layers.
func checkLayers(t *testing.T, img v1.Image, m *v1.Manifest, cf *v1.ConfigFile) {
	t.Helper()
	for i, desc := range m.Layers {
		layer, err := img.LayerByDigest(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		blob, err := openBlob(layer, desc)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		digest, diffID := sha256.New(), sha256.New()
		counted := &countingReader{r: io.TeeReader(blob, digest)}
		var tarStream io.Reader
		switch desc.MediaType {
		case regtest.MediaTypeOCILayerGzip, regtest.MediaTypeDockerLayer, regtest.MediaTypeDockerForeign:
			zr, err := gzip.NewReader(counted)
			if err != nil {
				t.Fatalf("layer %d: %v", i, err)
			}
			tarStream = zr
		case regtest.MediaTypeOCILayerZstd:
			zr, err := zstd.NewReader(counted)
			if err != nil {
				t.Fatal(err)
			}
			defer zr.Close()
			tarStream = zr
		case regtest.MediaTypeOCILayer, regtest.MediaTypeDockerLayerTar:
			tarStream = counted
		default: // an attestation's in-toto statement: not a tar
			tarStream = nil
		}
		if tarStream != nil {
			tr := tar.NewReader(io.TeeReader(tarStream, diffID))
			for {
				_, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("layer %d: reading tar: %v", i, err)
				}
			}
		}
		// Drain what the tar reader leaves (padding) and the compressed trailer.
		if tarStream != nil {
			if _, err := io.Copy(diffID, tarStream); err != nil {
				t.Fatalf("layer %d: %v", i, err)
			}
		}
		if _, err := io.Copy(io.Discard, counted); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		blob.Close()
		if got := "sha256:" + hex.EncodeToString(digest.Sum(nil)); got != desc.Digest.String() || counted.n != desc.Size {
			t.Errorf("layer %d: blob %s/%d, manifest says %s/%d", i, got, counted.n, desc.Digest, desc.Size)
		}
		want := cf.RootFS.DiffIDs[i].String()
		got := "sha256:" + hex.EncodeToString(diffID.Sum(nil))
		if tarStream == nil {
			got = desc.Digest.String()
		}
		if got != want {
			t.Errorf("layer %d: uncompressed digest %s, config diff id %s", i, got, want)
		}
	}
}

// openBlob reads a layer from the registry, or a foreign layer from its URL: plainly,
// because go-containerregistry refuses foreign URLs on loopback.
func openBlob(layer v1.Layer, desc v1.Descriptor) (io.ReadCloser, error) {
	if len(desc.URLs) == 0 {
		return layer.Compressed()
	}
	resp, err := http.Get(desc.URLs[0])
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s", desc.URLs[0], resp.Status)
	}
	return resp.Body, nil
}

// foreignFromURL lets validate.Image read foreign layers from their loopback URLs.
type foreignFromURL struct{ v1.Image }

func (i foreignFromURL) Layers() ([]v1.Layer, error) {
	m, err := i.Manifest()
	if err != nil {
		return nil, err
	}
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	for n, l := range ls {
		if len(m.Layers[n].URLs) > 0 {
			ls[n] = urlLayer{l, m.Layers[n]}
		}
	}
	return ls, nil
}

type urlLayer struct {
	v1.Layer // only v1.Layer's methods: no Exists, which would ask the registry
	desc     v1.Descriptor
}

func (l urlLayer) Compressed() (io.ReadCloser, error) { return openBlob(nil, l.desc) }

func (l urlLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(rc)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(zr), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// checkIndex validates the index p points at, each platform image, and that each image
// holds PlatformFile naming its own platform.
func checkIndex(t *testing.T, reg *regtest.Registry, p regtest.Pushed, mediaType string) v1.ImageIndex {
	t.Helper()
	r, err := name.ParseReference(p.Ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(r, readOptions(t, reg)...)
	if err != nil {
		t.Fatalf("reading %s: %v", p.Ref, err)
	}
	// validate cannot check attestation manifests (see checkImage): validate the index
	// without them, then check them one by one.
	images := mutate.RemoveManifests(idx, match.Annotation(regtest.AnnotationReferenceType, "attestation-manifest"))
	if err := validate.Index(images); err != nil {
		t.Fatalf("validating %s: %v", p.Ref, err)
	}
	d, _ := idx.Digest()
	mt, _ := idx.MediaType()
	if d.String() != p.Digest() || string(mt) != mediaType || p.Index.MediaType != mediaType {
		t.Errorf("%s: index %s %s, want %s %s", p.Ref, d, mt, p.Digest(), mediaType)
	}
	if len(p.Images) != len(regtest.MultiArchPlatforms) {
		t.Fatalf("%d images, want %d", len(p.Images), len(regtest.MultiArchPlatforms))
	}
	for i, want := range p.Images {
		if want.Platform != regtest.MultiArchPlatforms[i] {
			t.Errorf("image %d is %s, want %s", i, want.Platform, regtest.MultiArchPlatforms[i])
		}
		img := checkImage(t, reg, r.Context().Digest(want.Manifest.Digest).String(), want)
		if want.Attestation != nil {
			checkImage(t, reg, r.Context().Digest(want.Attestation.Manifest.Digest).String(), *want.Attestation)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if got := cf.Platform().String(); got != want.Platform {
			t.Errorf("config platform %s, want %s", got, want.Platform)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		if got := readFile(t, layers[len(layers)-1], regtest.PlatformFile); got != want.Platform+"\n" {
			t.Errorf("%s: %s = %q", want.Platform, regtest.PlatformFile, got)
		}
	}
	return idx
}

func readFile(t *testing.T, l v1.Layer, path string) string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in layer: %v", path, err)
		}
		if h.Name == path {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
}

func readOptions(t *testing.T, reg *regtest.Registry) []remote.Option {
	auth := authn.Anonymous
	if reg.Username != "" {
		auth = &authn.Basic{Username: reg.Username, Password: reg.Password}
	}
	return []remote.Option{remote.WithAuth(auth), remote.WithContext(t.Context())}
}

func digestOf(b []byte) string {
	h, _, _ := v1.SHA256(strings.NewReader(string(b)))
	return h.String()
}
