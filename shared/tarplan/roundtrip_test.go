package tarplan_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/testkit/daemon"
)

// gzipLayer returns a real layer, a gzip-compressed tar of files (name to
// content), and its diff_id, the digest of the uncompressed tar.
func gzipLayer(t testing.TB, files map[string][]byte) (layer []byte, diffID digest.Digest) {
	t.Helper()
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: time.Unix(1e9, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return gz.Bytes(), digest.FromBytes(raw.Bytes())
}

// runnableImage returns an image a container runtime would accept: gzip
// tar layers (one big enough to be stored, one listed twice), an OCI
// config whose diff_ids match them, an OCI manifest; and the layer bytes.
func runnableImage(t testing.TB) (tarplan.Image, map[digest.Digest][]byte) {
	t.Helper()
	blobs := map[digest.Digest][]byte{}
	var layers []tarplan.Blob
	var diffIDs []digest.Digest
	add := func(files map[string][]byte) tarplan.Blob {
		b, diffID := gzipLayer(t, files)
		blob := blobWithContent(b)
		blobs[blob.Digest] = b
		layers = append(layers, blob)
		diffIDs = append(diffIDs, diffID)
		return blob
	}
	// Random bytes do not compress: this layer stays over 5 MiB gzipped.
	big := add(map[string][]byte{"opt/big.bin": pseudoRandom("big", 6*mib), "opt/README": []byte("big layer\n")})
	add(map[string][]byte{"etc/hostname": []byte("tarport\n"), "etc/motd": pseudoRandom("motd", 700)})
	add(map[string][]byte{"usr/share/empty": nil})
	// The big layer again, as a rebuilt base can list it (same diff_id).
	layers = append(layers, big)
	diffIDs = append(diffIDs, diffIDs[0])

	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Cmd": []string{"/bin/true"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		"history":      []map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	img := tarplan.Image{
		Name:              "example.com/team/app",
		RepoTags:          []string{"example.com/team/app:1.0"},
		RefName:           "1.0",
		Manifest:          manifestFor(t, config, layers),
		ManifestMediaType: mediaTypeManifest,
		Config:            config,
		ConfigDigest:      digest.FromBytes(config),
		Layers:            layers,
	}
	return img, blobs
}

// opaqueImage has layers of random bytes (not tars) at the sizes that
// matter to the layout: empty, around a block, and at the stored threshold.
func opaqueImage(t testing.TB) (tarplan.Image, map[digest.Digest][]byte) {
	t.Helper()
	blobs := map[digest.Digest][]byte{}
	var layers []tarplan.Blob
	for i, n := range []int64{0, 1, 511, 512, 513, tarplan.BigEntryMin - 1024, tarplan.BigEntryMin - 1023, 6*mib + 3} {
		b := pseudoRandom(fmt.Sprint("opaque ", i), n)
		blob := blobWithContent(b)
		blobs[blob.Digest] = b
		layers = append(layers, blob)
	}
	layers = append(layers, layers[1], layers[7])
	img := imageOf(t, layers...)
	img.RepoTags, img.RefName = nil, "" // asked for by digest
	return img, blobs
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		image func(testing.TB) (tarplan.Image, map[digest.Digest][]byte)
		// stored is how many entries the plan must store (copy whole).
		stored   int
		runnable bool
	}{
		{"opaque blobs", opaqueImage, 2, false},
		{"runnable image", runnableImage, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			img, blobs := tt.image(t)
			l, err := tarplan.Plan(img)
			if err != nil {
				t.Fatal(err)
			}
			checkLayout(t, l)
			if l.Stored != tt.stored {
				t.Fatalf("Stored = %d, want %d", l.Stored, tt.stored)
			}
			var buf bytes.Buffer
			n, err := writeTar(&buf, l, blobs)
			if err != nil {
				t.Fatal(err)
			}
			if n != l.Size || int64(buf.Len()) != l.Size {
				t.Fatalf("wrote %d bytes, planned %d", buf.Len(), l.Size)
			}
			data := buf.Bytes()
			for _, e := range l.Entries {
				if !bytes.Equal(data[e.Offset:e.Offset+int64(len(e.Header))], e.Header) {
					t.Fatalf("entry %s: no header at offset %d", e.Name, e.Offset)
				}
			}
			files := readTar(t, data, l)
			checkBlobs(t, files)
			checkMetadata(t, files, img, l)

			if !tt.runnable {
				return
			}
			dir := t.TempDir()
			tarPath := filepath.Join(dir, "image.tar")
			if err := os.WriteFile(tarPath, data, 0o644); err != nil {
				t.Fatal(err)
			}
			layoutDir := filepath.Join(dir, "layout")
			extract(t, files, layoutDir)
			t.Run("go-containerregistry", func(t *testing.T) {
				checkWithGGCR(t, tarPath, layoutDir, img, l)
			})
			t.Run("skopeo", func(t *testing.T) {
				checkWithSkopeo(t, tarPath, img)
			})
		})
	}
}

// readTar reads data with archive/tar and returns every file's content,
// checking the files come in the layout's order, each exactly once, and
// that the archive ends with the two zero blocks.
func readTar(t testing.TB, data []byte, l tarplan.Layout) map[string][]byte {
	t.Helper()
	if !bytes.Equal(data[len(data)-1024:], make([]byte, 1024)) {
		t.Fatal("the tar does not end with two zero blocks")
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			if i != len(l.Entries) {
				t.Fatalf("tar has %d files, layout %d", i, len(l.Entries))
			}
			return files
		}
		if err != nil {
			t.Fatalf("reading file %d: %v", i, err)
		}
		if i >= len(l.Entries) || h.Name != l.Entries[i].Name {
			t.Fatalf("file %d is %s, want %v", i, h.Name, entryNames(l.Entries[i:min(i+1, len(l.Entries))]))
		}
		if h.Typeflag != tar.TypeReg || h.Mode != 0o644 || h.ModTime.Unix() != 0 || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: type %q mode %o mtime %v owner %d/%d", h.Name, h.Typeflag, h.Mode, h.ModTime, h.Uid, h.Gid)
		}
		if _, dup := files[h.Name]; dup {
			t.Fatalf("%s appears twice", h.Name)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", h.Name, err)
		}
		if e := l.Entries[i]; int64(len(b)) != e.Size || (!e.Fetched() && !bytes.Equal(b, e.Inline)) {
			t.Fatalf("%s: read %d bytes, planned %d (or other inline bytes)", h.Name, len(b), e.Size)
		}
		files[h.Name] = b
	}
}

// checkBlobs checks every blobs/sha256/<hex> file hashes to its name.
func checkBlobs(t testing.TB, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		hex, ok := strings.CutPrefix(name, "blobs/sha256/")
		if !ok {
			continue
		}
		if got := digest.FromBytes(b).Encoded(); got != hex {
			t.Errorf("%s hashes to %s", name, got)
		}
	}
}

// blobAt returns the blob a descriptor or path names, checking it is in
// the tar with the right size.
func blobAt(t testing.TB, files map[string][]byte, d digest.Digest, size int64) []byte {
	t.Helper()
	b, ok := files[tarplan.BlobName(d)]
	if !ok {
		t.Fatalf("blob %s is not in the tar", d)
	}
	if size >= 0 && int64(len(b)) != size {
		t.Fatalf("blob %s: %d bytes, descriptor says %d", d, len(b), size)
	}
	return b
}

// checkMetadata follows both ways in: index.json to the manifest to the
// config and layers (OCI layout), manifest.json to the config and layers
// (docker-archive); both must name the image's blobs, all in the tar.
func checkMetadata(t testing.TB, files map[string][]byte, img tarplan.Image, l tarplan.Layout) {
	t.Helper()
	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %q", got)
	}

	var idx ociIndex
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != l.ManifestDigest {
		t.Fatalf("index.json manifests = %+v, want %s", idx.Manifests, l.ManifestDigest)
	}
	var m ociManifest
	if err := json.Unmarshal(blobAt(t, files, idx.Manifests[0].Digest, idx.Manifests[0].Size), &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if m.Config.Digest != img.ConfigDigest {
		t.Errorf("manifest config %s, want %s", m.Config.Digest, img.ConfigDigest)
	}
	blobAt(t, files, m.Config.Digest, m.Config.Size)
	var layers []string
	for _, d := range m.Layers {
		blobAt(t, files, d.Digest, d.Size)
		layers = append(layers, tarplan.BlobName(d.Digest))
	}

	var dm []dockerManifest
	if err := json.Unmarshal(files["manifest.json"], &dm); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	if len(dm) != 1 {
		t.Fatalf("manifest.json has %d images", len(dm))
	}
	if dm[0].Config != tarplan.BlobName(img.ConfigDigest) {
		t.Errorf("manifest.json Config = %s", dm[0].Config)
	}
	if !slices.Equal(dm[0].Layers, layers) {
		t.Errorf("manifest.json Layers = %v, manifest layers %v", dm[0].Layers, layers)
	}
	for _, p := range append([]string{dm[0].Config}, dm[0].Layers...) {
		if _, ok := files[p]; !ok {
			t.Errorf("manifest.json names %s, not in the tar", p)
		}
	}
	want := img.RepoTags
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(dm[0].RepoTags, want) {
		t.Errorf("RepoTags = %q, want %q", dm[0].RepoTags, want)
	}
}

// extract writes files under dir, as `tar -x` would.
func extract(t testing.TB, files map[string][]byte, dir string) {
	t.Helper()
	for name, b := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ggcrReport is what testdata/ggcrcheck prints.
type ggcrReport struct {
	TarballConfig     string            `json:"tarball_config"`
	TarballLayers     []string          `json:"tarball_layers"`
	LayoutManifest    string            `json:"layout_manifest"`
	LayoutAnnotations map[string]string `json:"layout_annotations"`
	LayoutConfig      string            `json:"layout_config"`
	LayoutLayers      []string          `json:"layout_layers"`
}

// checkWithGGCR checks the tar with go-containerregistry (see ggcrCheck)
// and compares what it read with the plan.
func checkWithGGCR(t *testing.T, tarPath, layoutDir string, img tarplan.Image, l tarplan.Layout) {
	r, err := ggcrCheck(tarPath, layoutDir, img.RepoTags[0])
	if err != nil {
		t.Fatalf("go-containerregistry rejects the tar: %v", err)
	}
	var layers []string
	for _, b := range img.Layers {
		layers = append(layers, b.Digest.String())
	}
	if r.TarballConfig != img.ConfigDigest.String() || r.LayoutConfig != img.ConfigDigest.String() {
		t.Errorf("config %s (tarball), %s (layout), want %s", r.TarballConfig, r.LayoutConfig, img.ConfigDigest)
	}
	if !slices.Equal(r.TarballLayers, layers) || !slices.Equal(r.LayoutLayers, layers) {
		t.Errorf("layers\n tarball %v\n  layout %v\n    want %v", r.TarballLayers, r.LayoutLayers, layers)
	}
	if r.LayoutManifest != l.ManifestDigest.String() {
		t.Errorf("layout manifest %s, want %s", r.LayoutManifest, l.ManifestDigest)
	}
	if got := r.LayoutAnnotations["io.containerd.image.name"]; got != img.Name+":"+img.RefName {
		t.Errorf("io.containerd.image.name = %q", got)
	}
	if got := r.LayoutAnnotations["org.opencontainers.image.ref.name"]; got != img.RefName {
		t.Errorf("org.opencontainers.image.ref.name = %q", got)
	}
}

// checkWithSkopeo copies the tar, read both as a docker-archive and as an
// oci-archive, into OCI layouts with skopeo (containers/image), which
// verifies each blob's digest as it copies. Skipped where skopeo is missing.
func checkWithSkopeo(t *testing.T, tarPath string, img tarplan.Image) {
	if testing.Short() {
		t.Skip("runs skopeo; skipped with -short")
	}
	skopeo := daemon.Binary(t, "skopeo")
	dir := t.TempDir()
	for i, src := range []string{"docker-archive:" + tarPath, "docker-archive:" + tarPath + ":" + img.RepoTags[0], "oci-archive:" + tarPath} {
		dst := fmt.Sprintf("oci:%s:copy", filepath.Join(dir, fmt.Sprint(i)))
		cmd := exec.Command(skopeo, "--insecure-policy", "--tmpdir", dir, "copy", "--quiet", src, dst)
		cmd.Env = append(os.Environ(), "TMPDIR="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("skopeo copy %s: %v\n%s", src, err, out)
		}
	}
}
