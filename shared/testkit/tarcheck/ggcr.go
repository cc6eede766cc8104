package tarcheck

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// GGCRImage is the image as go-containerregistry's OCI layout reader saw it.
type GGCRImage struct {
	ManifestDigest string
	ConfigDigest   string
	Layers         []Descriptor
	DiffIDs        []string
}

// GGCR opens the tar with go-containerregistry's two readers, the way
// `docker load`'s two stores do: pkg/v1/tarball (manifest.json, the classic
// docker-archive view) and pkg/v1/layout on the extracted tar (index.json,
// the OCI view). Both must validate, down to every layer's digest, size and
// diff_id, and both must see the same layers.
//
// Limitation of go-containerregistry v0.22.1, handled here: validate.Image
// decompresses every layer with compress/gzip (validate/layer.go
// computeLayer), so it rejects valid zstd and uncompressed layers. For an
// image with such layers the kit runs validate with validate.Fast (manifest,
// config, digests of the metadata) and checks every layer itself through
// the same ggcr layer objects: Compressed() must hash to the manifest digest
// and size, Uncompressed() (ggcr sniffs gzip/zstd) must hash to the config's
// diff_id and be a tar without duplicate paths. No layer goes unchecked.
func GGCR(t testing.TB, tarPath string) GGCRImage {
	t.Helper()
	// The OCI view first: it has the real layer media types, which the
	// tarball reader does not keep (it rebuilds a Docker manifest).
	got := ggcrLayout(t, tarPath)
	ggcrTarball(t, tarPath, got)
	return got
}

// gzipOnly reports whether validate's gunzip-everything layer check can
// judge these layers.
func gzipOnly(layers []Descriptor) bool {
	for _, l := range layers {
		switch types.MediaType(l.MediaType) {
		case types.OCILayer, types.DockerLayer:
		default:
			return false
		}
	}
	return true
}

func ggcrLayout(t testing.TB, tarPath string) GGCRImage {
	t.Helper()
	dir := toolTempDir(t, "tarcheck-layout-")
	if err := extractTar(tarPath, dir); err != nil {
		t.Fatalf("tarcheck.GGCR: extracting %s for the layout reader: %v", tarPath, err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("tarcheck.GGCR: layout.ImageIndexFromPath on extracted %s: %v", tarPath, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("tarcheck.GGCR: layout index.json of %s: %v", tarPath, err)
	}
	if len(im.Manifests) == 0 {
		t.Fatalf("tarcheck.GGCR: layout index.json of %s lists no manifest", tarPath)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatalf("tarcheck.GGCR: layout image %s of %s: %v", im.Manifests[0].Digest, tarPath, err)
	}
	got, err := describeImage(img)
	if err != nil {
		t.Fatalf("tarcheck.GGCR: layout image of %s: %v", tarPath, err)
	}
	if gzipOnly(got.Layers) {
		if err := validate.Index(idx); err != nil {
			t.Fatalf("tarcheck.GGCR: validate.Index (layout view of %s):\n%v", tarPath, err)
		}
		return got
	}
	if err := validate.Index(idx, validate.Fast); err != nil {
		t.Fatalf("tarcheck.GGCR: validate.Index(Fast) (layout view of %s):\n%v", tarPath, err)
	}
	if err := checkLayers(img, got.Layers); err != nil {
		t.Fatalf("tarcheck.GGCR: layout view of %s: %v", tarPath, err)
	}
	return got
}

func ggcrTarball(t testing.TB, tarPath string, want GGCRImage) {
	t.Helper()
	// Limitation of ggcr v0.22.1: tarball.Image decides from the first
	// layer alone whether all layers are compressed (tarball/image.go
	// areLayersCompressed). With an uncompressed first layer it reads every
	// later gzip/zstd layer as uncompressed and computes wrong diff_ids, so
	// for exactly that shape the tarball view is skipped (loudly); the
	// layout view above has checked every layer.
	if len(want.Layers) > 1 && isUncompressed(want.Layers[0].MediaType) {
		for _, l := range want.Layers[1:] {
			if !isUncompressed(l.MediaType) {
				t.Logf("tarcheck.GGCR: skipping the ggcr tarball reader for %s: its first layer is uncompressed and layer %s is %s, a mix ggcr v0.22.1's tarball.Image cannot read (the layout reader checked every layer)", tarPath, l.Digest, l.MediaType)
				return
			}
		}
	}
	img, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatalf("tarcheck.GGCR: tarball.ImageFromPath(%s): %v", tarPath, err)
	}
	if gzipOnly(want.Layers) {
		if err := validate.Image(img); err != nil {
			t.Fatalf("tarcheck.GGCR: validate.Image (tarball view of %s):\n%v", tarPath, err)
		}
	} else {
		if err := validate.Image(img, validate.Fast); err != nil {
			t.Fatalf("tarcheck.GGCR: validate.Image(Fast) (tarball view of %s):\n%v", tarPath, err)
		}
		// The tarball reader rebuilds the manifest with Docker media types
		// and, for uncompressed images, gzips on the fly, so only the
		// config's diff_ids bind its layers to the tar here.
		if err := checkLayers(img, nil); err != nil {
			t.Fatalf("tarcheck.GGCR: tarball view of %s: %v", tarPath, err)
		}
	}
	got, err := describeImage(img)
	if err != nil {
		t.Fatalf("tarcheck.GGCR: tarball view of %s: %v", tarPath, err)
	}
	if got.ConfigDigest != want.ConfigDigest {
		t.Fatalf("tarcheck.GGCR: %s: the tarball view's config is %s, the layout view's %s", tarPath, got.ConfigDigest, want.ConfigDigest)
	}
	if strings.Join(got.DiffIDs, ",") != strings.Join(want.DiffIDs, ",") {
		t.Fatalf("tarcheck.GGCR: %s: diff_ids differ between the tarball view %v and the layout view %v", tarPath, got.DiffIDs, want.DiffIDs)
	}
}

func isUncompressed(mediaType string) bool {
	switch types.MediaType(mediaType) {
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		return true
	}
	return false
}

// describeImage reads the manifest and config facts of a ggcr image.
func describeImage(img v1.Image) (GGCRImage, error) {
	var g GGCRImage
	d, err := img.Digest()
	if err != nil {
		return g, fmt.Errorf("digest: %w", err)
	}
	m, err := img.Manifest()
	if err != nil {
		return g, fmt.Errorf("manifest: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return g, fmt.Errorf("config: %w", err)
	}
	g.ManifestDigest = d.String()
	g.ConfigDigest = m.Config.Digest.String()
	for _, l := range m.Layers {
		g.Layers = append(g.Layers, Descriptor{MediaType: string(l.MediaType), Digest: l.Digest.String(), Size: l.Size})
	}
	for _, id := range cfg.RootFS.DiffIDs {
		g.DiffIDs = append(g.DiffIDs, id.String())
	}
	return g, nil
}

// checkLayers does what validate.Image does per layer, for media types it
// cannot read: each layer's compressed bytes must match the manifest (when
// want is given), and its uncompressed bytes must be a tar without
// duplicate paths that hashes to the config's diff_id.
func checkLayers(img v1.Image, want []Descriptor) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("listing layers: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(layers) {
		return fmt.Errorf("config has %d diff_ids for %d layers", len(cfg.RootFS.DiffIDs), len(layers))
	}
	var errs []error
	for i, l := range layers {
		if want != nil {
			digest, size, err := hashStream(l.Compressed)
			if err != nil {
				return fmt.Errorf("reading layer[%d] (%s): %w", i, want[i].Digest, err)
			}
			if digest != want[i].Digest || size != want[i].Size {
				errs = append(errs, fmt.Errorf("layer[%d]: content is %s (%d bytes), manifest says %s (%d bytes)", i, digest, size, want[i].Digest, want[i].Size))
			}
		}
		diffID, err := hashTarStream(l.Uncompressed)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading layer[%d] uncompressed: %w", i, err))
		} else if diffID != cfg.RootFS.DiffIDs[i].String() {
			errs = append(errs, fmt.Errorf("layer[%d]: uncompressed content is %s, config diff_ids[%d] is %s", i, diffID, i, cfg.RootFS.DiffIDs[i]))
		}
	}
	return errors.Join(errs...)
}

func hashStream(open func() (io.ReadCloser, error)) (string, int64, error) {
	rc, err := open()
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return "", n, err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, rc.Close()
}

// hashTarStream hashes a layer's uncompressed stream while walking it as a
// tar, as validate.Layer does.
func hashTarStream(open func() (io.ReadCloser, error)) (string, error) {
	rc, err := open()
	if err != nil {
		return "", err
	}
	defer rc.Close()
	h := sha256.New()
	tr := tar.NewReader(io.TeeReader(rc, h))
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("walking the layer tar: %w", err)
		}
		if seen[hdr.Name] {
			return "", fmt.Errorf("duplicate path %q in the layer tar", hdr.Name)
		}
		seen[hdr.Name] = true
	}
	// The tar reader stops at the end-of-archive blocks; the diff_id covers
	// any padding after them too.
	if _, err := io.Copy(io.Discard, io.TeeReader(rc, h)); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), rc.Close()
}

// extractTar writes the tar's regular files under dir, refusing any name
// that would land outside it.
func extractTar(tarPath, dir string) error {
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeDir {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("%s: unsupported entry type %q", hdr.Name, hdr.Typeflag)
		}
		if !filepath.IsLocal(hdr.Name) {
			return fmt.Errorf("%s: name escapes the extraction dir", hdr.Name)
		}
		p := filepath.Join(dir, hdr.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		out, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}
