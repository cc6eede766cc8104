package tarplan_test

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// ggcrCheck reads a tar with go-containerregistry as a docker-archive
// (tarball) and, extracted to dir, as an OCI image layout, and runs
// validate on both: every digest, diff_id and size is recomputed.
func ggcrCheck(tarPath, dir, tag string) (ggcrReport, error) {
	var r ggcrReport
	var t *name.Tag
	if tag != "" {
		nt, err := name.NewTag(tag)
		if err != nil {
			return r, fmt.Errorf("parsing tag %q: %w", tag, err)
		}
		t = &nt
	}
	img, err := tarball.ImageFromPath(tarPath, t)
	if err != nil {
		return r, fmt.Errorf("reading docker-archive: %w", err)
	}
	if err := validate.Image(img); err != nil {
		return r, fmt.Errorf("validating docker-archive image: %w", err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return r, err
	}
	r.TarballConfig = cfg.String()
	if r.TarballLayers, err = layerDigests(img); err != nil {
		return r, err
	}

	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return r, fmt.Errorf("reading OCI layout: %w", err)
	}
	if err := validate.Index(idx); err != nil {
		return r, fmt.Errorf("validating OCI layout index: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return r, err
	}
	if len(im.Manifests) != 1 {
		return r, fmt.Errorf("index.json has %d manifests, want 1", len(im.Manifests))
	}
	desc := im.Manifests[0]
	r.LayoutManifest = desc.Digest.String()
	r.LayoutAnnotations = desc.Annotations
	limg, err := idx.Image(desc.Digest)
	if err != nil {
		return r, fmt.Errorf("reading OCI layout image: %w", err)
	}
	if err := validate.Image(limg); err != nil {
		return r, fmt.Errorf("validating OCI layout image: %w", err)
	}
	if cfg, err = limg.ConfigName(); err != nil {
		return r, err
	}
	r.LayoutConfig = cfg.String()
	if r.LayoutLayers, err = layerDigests(limg); err != nil {
		return r, err
	}
	return r, nil
}

func layerDigests(img v1.Image) ([]string, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(layers))
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		out = append(out, d.String())
	}
	return out, nil
}
