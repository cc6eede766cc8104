package regtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// MultiArchPlatforms are the platforms of WriteMultiArch and WriteDockerList, in index order.
var MultiArchPlatforms = []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v6", "linux/arm/v7", "linux/386"}

// PlatformFile is the file every multi-arch fixture image carries, holding its platform
// ("linux/arm/v7\n"), so a test can tell which platform ended up in a tar.
const PlatformFile = "etc/tarport-platform"

// Annotations BuildKit puts on an attestation manifest's index entry.
const (
	AnnotationReferenceType   = "vnd.docker.reference.type"
	AnnotationReferenceDigest = "vnd.docker.reference.digest"
)

// WriteMultiArch pushes an OCI image index of MultiArchPlatforms as BuildKit writes it:
// each platform's image, then for each one an attestation manifest (platform
// unknown/unknown, whose layer is an in-toto statement) pointing back at the image.
// Every platform has different content: a 64 KiB random layer, then a layer holding
// PlatformFile.
func WriteMultiArch(ctx context.Context, dst Dest) (Pushed, error) {
	return writeIndex(ctx, dst, false)
}

// PushMultiArch is WriteMultiArch for tests.
func PushMultiArch(t testing.TB, reg *Registry, repo, tag string) Pushed {
	t.Helper()
	p, err := WriteMultiArch(t.Context(), reg.Dest(repo, tag))
	if err != nil {
		t.Fatalf("pushing multi-arch index: %v", err)
	}
	return p
}

// WriteDockerList pushes the images of WriteMultiArch with Docker v2 schema2 media types,
// in a Docker manifest list, without attestations (Docker lists never carry them).
func WriteDockerList(ctx context.Context, dst Dest) (Pushed, error) {
	return writeIndex(ctx, dst, true)
}

// PushDockerList is WriteDockerList for tests.
func PushDockerList(t testing.TB, reg *Registry, repo, tag string) Pushed {
	t.Helper()
	p, err := WriteDockerList(t.Context(), reg.Dest(repo, tag))
	if err != nil {
		t.Fatalf("pushing docker manifest list: %v", err)
	}
	return p
}

func writeIndex(ctx context.Context, dst Dest, docker bool) (Pushed, error) {
	s, err := newSession(dst)
	if err != nil {
		return Pushed{}, err
	}
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: MediaTypeOCIIndex}
	if docker {
		idx.MediaType = MediaTypeDockerList
	}
	var images, attestations []builtImage
	for _, platform := range MultiArchPlatforms {
		img, err := buildImage(ImageSpec{Platform: platform, Docker: docker, Layers: []LayerSpec{
			// Seeds name the platform, not the tag: the same platform image in two
			// repositories shares its blobs, as real base images do.
			{Size: 64 << 10, Random: true, Seed: "multiarch base " + platform},
			{Files: map[string]string{PlatformFile: platform + "\n"}, Seed: "multiarch app " + platform},
		}}, s.seed)
		if err != nil {
			return Pushed{}, fmt.Errorf("building %s: %w", platform, err)
		}
		images = append(images, img)
		p, _ := v1.ParsePlatform(platform)
		idx.Manifests = append(idx.Manifests, indexEntry(img.Manifest, p, nil))
	}
	if !docker {
		for i := range images {
			att, err := attestation(images[i].Image, s.tag.Context().RepositoryStr())
			if err != nil {
				return Pushed{}, err
			}
			images[i].Attestation = &att.Image
			attestations = append(attestations, att)
			idx.Manifests = append(idx.Manifests, indexEntry(att.Manifest, &v1.Platform{OS: "unknown", Architecture: "unknown"},
				map[string]string{
					AnnotationReferenceType:   "attestation-manifest",
					AnnotationReferenceDigest: images[i].Manifest.Digest,
				}))
		}
	}
	// Children first, by digest: the registry refuses an index whose manifests it lacks.
	for _, img := range append(images, attestations...) {
		ref := s.tag.Context().Digest(img.Manifest.Digest)
		if err := s.pushImage(ctx, img, ref); err != nil {
			return Pushed{}, err
		}
	}
	raw, err := json.Marshal(idx)
	if err != nil {
		return Pushed{}, err
	}
	if err := s.put(ctx, s.tag, raw, string(idx.MediaType)); err != nil {
		return Pushed{}, err
	}
	index := blobOf(raw, string(idx.MediaType))
	out := Pushed{Ref: dst.Ref, Index: &index}
	for _, img := range images {
		out.Images = append(out.Images, img.Image)
	}
	return out, nil
}

func indexEntry(b Blob, p *v1.Platform, annotations map[string]string) v1.Descriptor {
	d := descriptor(b)
	d.Platform = p
	d.Annotations = annotations
	return d
}

// attestation builds a BuildKit-style provenance attestation manifest for img.
func attestation(img Image, repo string) (builtImage, error) {
	subject := img.Manifest.Digest[len("sha256:"):]
	statement, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v0.1",
		"predicateType": "https://slsa.dev/provenance/v0.2",
		"subject": []any{map[string]any{
			"name":   "pkg:docker/" + repo + "?platform=" + url.QueryEscape(img.Platform),
			"digest": map[string]string{"sha256": subject},
		}},
		"predicate": map[string]any{
			"builder":   map[string]string{"id": "tarport-regtest"},
			"buildType": "https://mobyproject.org/buildkit@v1",
		},
	})
	if err != nil {
		return builtImage{}, err
	}
	layer := blobOf(statement, MediaTypeInToto)
	// BuildKit's attestation config: platform unknown, no history, diff_ids = the
	// statement's digest since it is stored uncompressed.
	rawCfg, err := json.Marshal(map[string]any{
		"architecture": "unknown",
		"os":           "unknown",
		"config":       map[string]any{},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{layer.Digest}},
	})
	if err != nil {
		return builtImage{}, err
	}
	att := builtImage{Image: Image{Platform: "unknown/unknown", DiffIDs: []string{layer.Digest}, Layers: []Blob{layer}}}
	return finish(att, MediaTypeOCIManifest, rawCfg, MediaTypeOCIConfig, []layerBlob{{
		desc: layer, diffID: layer.Digest, data: statement,
		annotations: map[string]string{"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"},
	}})
}

// WindowsOSVersion is the os.version of the Windows fixture (Windows Server 2022).
const WindowsOSVersion = "10.0.20348.2340"

var foreignLayer = sync.OnceValue(func() []byte {
	raw, err := layerTar(LayerSpec{
		Size:  16 << 10,
		Files: map[string]string{"Files/Windows/System32/tarport-foreign.txt": "foreign base layer\r\n"},
	}, "windows foreign base")
	if err != nil {
		panic(err) // writing to memory cannot fail
	}
	return gzipBytes(raw)
})

// ForeignLayer returns the blob of the Windows fixture's foreign layer: what its URL
// must serve. It is the same in every run.
func ForeignLayer() []byte { return bytes.Clone(foreignLayer()) }

// ForeignLayerHandler serves ForeignLayer on every path, with Range support, as the CDN
// behind a foreign layer's URL would: httptest.NewServer(regtest.ForeignLayerHandler()).
func ForeignLayerHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(foreignLayer()))
	})
}

// WriteWindows pushes a windows/amd64 Docker schema2 image whose first layer is foreign
// (MediaTypeDockerForeign, fetched from foreignURL, which must serve ForeignLayer) and
// whose second is an ordinary gzip layer. Only the second layer is uploaded: the
// registry never holds the foreign blob, as with Microsoft's base images.
func WriteWindows(ctx context.Context, dst Dest, foreignURL string) (Pushed, error) {
	s, err := newSession(dst)
	if err != nil {
		return Pushed{}, err
	}
	foreign := foreignLayer()
	raw, err := gunzip(foreign)
	if err != nil {
		return Pushed{}, err
	}
	base := layerBlob{desc: blobOf(foreign, MediaTypeDockerForeign), diffID: digestOf(raw), history: "regtest: foreign base layer"}
	base.desc.URLs = []string{foreignURL}
	app, err := buildLayer(LayerSpec{
		Size:  4 << 10,
		Files: map[string]string{"Files/tarport/app.txt": "windows app layer\r\n"},
	}, "windows app "+s.seed, true)
	if err != nil {
		return Pushed{}, err
	}
	img, err := assemble(v1.Platform{OS: "windows", Architecture: "amd64", OSVersion: WindowsOSVersion}, true, []layerBlob{base, app})
	if err != nil {
		return Pushed{}, err
	}
	if err := s.pushImage(ctx, img, s.tag); err != nil {
		return Pushed{}, err
	}
	return Pushed{Ref: dst.Ref, Images: []Image{img.Image}}, nil
}

// PushWindows is WriteWindows for tests.
func PushWindows(t testing.TB, reg *Registry, repo, tag, foreignURL string) Pushed {
	t.Helper()
	p, err := WriteWindows(t.Context(), reg.Dest(repo, tag), foreignURL)
	if err != nil {
		t.Fatalf("pushing windows image: %v", err)
	}
	return p
}
