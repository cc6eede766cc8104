package tarcheck

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// The test image is built by hand, independently of the rest of the repo,
// so the kit can be tested before (and against) tarport's own tar writer.

const (
	testImageName = "docker.io/library/tarcheck:test"
	testRepoTag   = "tarcheck:test"
	testRefName   = "test"
	testPlatform  = "linux/amd64"
)

const (
	mtLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	mtLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
	mtLayerTar  = "application/vnd.oci.image.layer.v1.tar"
)

// testLayer is one layer of the test image: the files it adds and how it is
// compressed (one of the mtLayer* media types).
type testLayer struct {
	mediaType string
	files     map[string]string
}

// mixedLayers has one layer per media type a registry serves, so every
// reader is exercised on gzip, zstd and uncompressed content.
func mixedLayers() []testLayer {
	return []testLayer{
		{mediaType: mtLayerGzip, files: map[string]string{"etc/tarcheck/base": "base layer\n", "bin/hello": "#!/bin/sh\necho hello\n"}},
		{mediaType: mtLayerZstd, files: map[string]string{"etc/tarcheck/zstd": "zstd layer\n"}},
		{mediaType: mtLayerTar, files: map[string]string{"etc/tarcheck/plain": "plain layer\n"}},
	}
}

// dockerLayerType maps the OCI layer types to Docker's; Docker has no
// registered zstd type.
var dockerLayerType = map[string]string{
	mtLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
	mtLayerTar:  "application/vnd.docker.image.rootfs.diff.tar",
}

// imageSpec describes a test tar; the edit hooks break it on purpose.
type imageSpec struct {
	layers []testLayer
	// docker uses Docker's media types (schema 2 manifest and config,
	// rootfs.diff.tar[.gzip] layers) as many registries still serve them.
	docker bool
	// Hooks on the decoded JSON before it is serialized; digests of what
	// they change are computed after them, so the result stays consistent
	// except for what the hook broke.
	editConfig         func(map[string]any)
	editManifest       func(map[string]any)
	editIndex          func(map[string]any)
	editDockerManifest func(map[string]any)
	// editEntries changes the final tar entries (headers included).
	editEntries func([]tarEntry) []tarEntry
	// noEnd leaves out the end-of-archive blocks; trailing is appended
	// after them.
	noEnd    bool
	trailing []byte
}

type tarEntry struct {
	hdr  tar.Header
	data []byte
}

// builtImage is a test image tar and the facts the checks should report.
type builtImage struct {
	path           string
	manifestDigest string
	configDigest   string
	layers         []Descriptor
	diffIDs        []string
	// contentOffset is where each entry's content starts in the tar.
	contentOffset map[string]int64
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// layerTar returns a real filesystem tar holding files and their parent
// directories.
func layerTar(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	for _, n := range names {
		var parents []string
		for d := filepath.Dir(n); d != "."; d = filepath.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if !dirs[d] {
				dirs[d] = true
				writeEntry(t, tw, &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: mtime}, nil)
			}
		}
		writeEntry(t, tw, &tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o755, ModTime: mtime}, []byte(files[n]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeEntry(t testing.TB, tw *tar.Writer, hdr *tar.Header, data []byte) {
	t.Helper()
	hdr.Size = int64(len(data))
	if err := tw.WriteHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
}

func compressLayer(t testing.TB, mediaType string, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch mediaType {
	case mtLayerGzip:
		zw := gzip.NewWriter(&buf)
		if _, err = zw.Write(raw); err == nil {
			err = zw.Close()
		}
	case mtLayerZstd:
		var zw *zstd.Encoder
		if zw, err = zstd.NewWriter(&buf); err == nil {
			if _, err = zw.Write(raw); err == nil {
				err = zw.Close()
			}
		}
	case mtLayerTar:
		return raw
	default:
		t.Fatalf("unknown layer media type %s", mediaType)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func blobEntry(digest string, data []byte) tarEntry {
	return tarEntry{hdr: tar.Header{Name: blobName(digest)}, data: data}
}

// buildImageTar writes a linux/amd64 image as a tar in the Docker 25
// `docker save` layout with the headers the design asks for (regular files
// only, mode 0644, uid/gid 0, mtime 0), big entries first and the metadata
// at the end, like tarport's writer.
func buildImageTar(t testing.TB, dir string, spec imageSpec) *builtImage {
	t.Helper()
	img := &builtImage{contentOffset: map[string]int64{}}
	var entries []tarEntry
	seen := map[string]bool{}
	var layerDescs []any
	for _, l := range spec.layers {
		raw := layerTar(t, l.files)
		blob := compressLayer(t, l.mediaType, raw)
		d := sha(blob)
		mt := l.mediaType
		if spec.docker {
			mt = dockerLayerType[mt]
		}
		if mt == "" {
			t.Fatalf("no Docker media type for %s", l.mediaType)
		}
		img.layers = append(img.layers, Descriptor{MediaType: mt, Digest: d, Size: int64(len(blob))})
		img.diffIDs = append(img.diffIDs, sha(raw))
		layerDescs = append(layerDescs, map[string]any{"mediaType": mt, "digest": d, "size": len(blob)})
		if !seen[d] {
			seen[d] = true
			entries = append(entries, blobEntry(d, blob))
		}
	}
	config := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      "2024-01-01T00:00:00Z",
		"config":       map[string]any{"Cmd": []string{"/bin/hello"}, "Env": []string{"PATH=/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": img.diffIDs},
	}
	if spec.editConfig != nil {
		spec.editConfig(config)
	}
	configJSON := mustJSON(t, config)
	img.configDigest = sha(configJSON)
	manifestType, configType := mediaTypeOCIManifest, mediaTypeOCIConfig
	if spec.docker {
		manifestType, configType = mediaTypeDockerManifest, mediaTypeDockerConfig
	}
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     manifestType,
		"config":        map[string]any{"mediaType": configType, "digest": img.configDigest, "size": len(configJSON)},
		"layers":        layerDescs,
	}
	if spec.editManifest != nil {
		spec.editManifest(manifest)
	}
	manifestJSON := mustJSON(t, manifest)
	img.manifestDigest = sha(manifestJSON)
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeOCIIndex,
		"manifests": []any{map[string]any{
			"mediaType": manifestType,
			"digest":    img.manifestDigest,
			"size":      len(manifestJSON),
			"annotations": map[string]any{
				annotationImageName: testImageName,
				annotationRefName:   testRefName,
			},
		}},
	}
	if spec.editIndex != nil {
		spec.editIndex(index)
	}
	var layerPaths []any
	for _, l := range img.layers {
		layerPaths = append(layerPaths, blobName(l.Digest))
	}
	dockerManifest := map[string]any{
		"Config":   blobName(img.configDigest),
		"RepoTags": []any{testRepoTag},
		"Layers":   layerPaths,
	}
	if spec.editDockerManifest != nil {
		spec.editDockerManifest(dockerManifest)
	}
	entries = append(entries,
		blobEntry(img.configDigest, configJSON),
		blobEntry(img.manifestDigest, manifestJSON),
		tarEntry{hdr: tar.Header{Name: "oci-layout"}, data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		tarEntry{hdr: tar.Header{Name: "index.json"}, data: mustJSON(t, index)},
		tarEntry{hdr: tar.Header{Name: "manifest.json"}, data: mustJSON(t, []any{dockerManifest})},
	)
	for i := range entries {
		h := &entries[i].hdr
		h.Typeflag, h.Mode, h.ModTime, h.Format = tar.TypeReg, 0o644, time.Unix(0, 0), tar.FormatUSTAR
	}
	if spec.editEntries != nil {
		entries = spec.editEntries(entries)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		hdr.Size = int64(len(e.data))
		if err := tw.WriteHeader(&hdr); err != nil {
			t.Fatal(err)
		}
		// WriteHeader has written the header through, so this is where the
		// content starts.
		img.contentOffset[hdr.Name] = int64(buf.Len())
		if _, err := tw.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if spec.noEnd {
		if err := tw.Flush(); err != nil {
			t.Fatal(err)
		}
	} else if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	buf.Write(spec.trailing)
	img.path = filepath.Join(dir, "image.tar")
	if err := os.WriteFile(img.path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}

// corruptLayer copies the image tar to dir and flips one bit in the middle
// of the content of the layer with the given digest, leaving every header
// and the tar framing intact.
func corruptLayer(t testing.TB, img *builtImage, dir, layerDigest string) string {
	t.Helper()
	b, err := os.ReadFile(img.path)
	if err != nil {
		t.Fatal(err)
	}
	off, ok := img.contentOffset[blobName(layerDigest)]
	if !ok {
		t.Fatalf("no blob %s in the test image", layerDigest)
	}
	for _, l := range img.layers {
		if l.Digest == layerDigest {
			b[off+l.Size/2] ^= 0x01
		}
	}
	out := filepath.Join(dir, "corrupt.tar")
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
