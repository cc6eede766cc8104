package tarplan_test

// Builders shared by the tests: images to plan, blob content, and a writer
// that turns a Layout into the tar the stitcher would produce.

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarplan"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
	tib = int64(1) << 40

	// ustarMax is the biggest size a ustar header holds: 8 GiB - 1.
	ustarMax = 8*gib - 1
	// paxHeaderLen is Header's length for a blob name (77 bytes, under
	// ustar's 100) and a size beyond ustarMax: the extended header block,
	// one block of records ("NN size=...\n"), the ustar block.
	paxHeaderLen = 3 * 512
)

// fakeDigest names a layer that is planned but never fetched: planning
// needs only a digest and a size, so a TiB layer costs nothing.
func fakeDigest(i int) digest.Digest {
	return digest.FromString(fmt.Sprintf("layer %d", i))
}

// pseudoRandom returns n deterministic, incompressible bytes for seed.
func pseudoRandom(seed string, n int64) []byte {
	r := rand.NewChaCha8(sha256.Sum256([]byte(seed)))
	b := make([]byte, n)
	_, _ = r.Read(b) // ChaCha8.Read never fails
	return b
}

// testConfig is a small, fixed config; its digest is real.
var testConfig = []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}`)

// ociManifest and ociDescriptor are enough of the OCI image manifest to
// write and read one in tests (image-spec is not a dependency of tarport).
type ociManifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Config        ociDescriptor   `json:"config"`
	Layers        []ociDescriptor `json:"layers"`
}

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      digest.Digest     `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ociIndex struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Manifests     []ociDescriptor `json:"manifests"`
}

// dockerManifest is one element of manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

const (
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// manifestFor returns a valid OCI image manifest for config and layers.
func manifestFor(t testing.TB, config []byte, layers []tarplan.Blob) []byte {
	t.Helper()
	m := ociManifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        ociDescriptor{MediaType: mediaTypeConfig, Digest: digest.FromBytes(config), Size: int64(len(config))},
		Layers:        []ociDescriptor{},
	}
	for _, l := range layers {
		mt := l.MediaType
		if mt == "" {
			mt = mediaTypeLayerGz
		}
		m.Layers = append(m.Layers, ociDescriptor{MediaType: mt, Digest: l.Digest, Size: l.Size})
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// imageOf returns docker.io/library/app:1.0 with testConfig and layers.
func imageOf(t testing.TB, layers ...tarplan.Blob) tarplan.Image {
	t.Helper()
	return tarplan.Image{
		Name:              "docker.io/library/app",
		RepoTags:          []string{"app:1.0"},
		RefName:           "1.0",
		Manifest:          manifestFor(t, testConfig, layers),
		ManifestMediaType: mediaTypeManifest,
		Config:            testConfig,
		ConfigDigest:      digest.FromBytes(testConfig),
		Layers:            layers,
	}
}

// sizedLayers returns one fake layer per size, the i-th named fakeDigest(i).
func sizedLayers(sizes ...int64) []tarplan.Blob {
	out := make([]tarplan.Blob, len(sizes))
	for i, s := range sizes {
		out[i] = tarplan.Blob{Digest: fakeDigest(i), Size: s, MediaType: mediaTypeLayerGz}
	}
	return out
}

// planSizes plans an image whose fake layers have the given sizes.
func planSizes(t testing.TB, sizes ...int64) tarplan.Layout {
	t.Helper()
	l, err := tarplan.Plan(imageOf(t, sizedLayers(sizes...)...))
	if err != nil {
		t.Fatalf("Plan(sizes %v): %v", sizes, err)
	}
	return l
}

// blobWithContent returns a layer descriptor for content, whose digest is real.
func blobWithContent(content []byte) tarplan.Blob {
	return tarplan.Blob{Digest: digest.FromBytes(content), Size: int64(len(content)), MediaType: mediaTypeLayerGz}
}

// writeTar writes the tar l plans, as the stitcher does: for each entry its
// header, its content (inline, or the blob from blobs) and padding, then the
// end-of-archive blocks. It returns the bytes written.
func writeTar(w io.Writer, l tarplan.Layout, blobs map[digest.Digest][]byte) (int64, error) {
	var n int64
	write := func(b []byte) error {
		m, err := w.Write(b)
		n += int64(m)
		return err
	}
	for _, e := range l.Entries {
		if n != e.Offset {
			return n, fmt.Errorf("entry %s planned at offset %d, written at %d", e.Name, e.Offset, n)
		}
		content := e.Inline
		if e.Fetched() {
			b, ok := blobs[e.Digest]
			if !ok {
				return n, fmt.Errorf("no content for blob %s", e.Digest)
			}
			if int64(len(b)) != e.Size {
				return n, fmt.Errorf("blob %s has %d bytes, planned %d", e.Digest, len(b), e.Size)
			}
			if got := digest.FromBytes(b); got != e.Digest {
				return n, fmt.Errorf("blob %s hashes to %s", e.Digest, got)
			}
			content = b
		}
		for _, b := range [][]byte{e.Header, content, tarplan.Padding(e.Size)} {
			if err := write(b); err != nil {
				return n, err
			}
		}
	}
	if n != l.Size-1024 {
		return n, fmt.Errorf("entries end at %d, want %d", n, l.Size-1024)
	}
	return n, write(make([]byte, 1024))
}
