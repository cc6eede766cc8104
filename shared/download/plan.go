package download

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// jobImageOf is the record of a resolved image in its job: its names (the
// tar names it after the reference asked for: RepoTags name:tag, none for
// a digest-only reference) and digests; its Layers are the job's to set.
func jobImageOf(img tarport.Image) tarport.JobImage {
	ji := tarport.JobImage{
		Image:        displayName(img),
		Ref:          img.Ref.CommonName(),
		Digest:       digest.FromBytes(img.Manifest),
		IndexDigest:  img.IndexDigest,
		ConfigDigest: img.ConfigDigest,
		RefName:      img.Ref.Tag,
		Name:         tarport.FullName(img.Ref),
	}
	if img.Ref.Tag != "" {
		ji.RepoTags = []string{tarport.ShortName(img.Ref) + ":" + img.Ref.Tag}
	}
	return ji
}

// planInput is the one place a tarplan.Image is built: at create from the
// resolved image, at stitch from the job and its cached manifest and
// config, so the two cannot drift apart.
func planInput(ji tarport.JobImage, manifest []byte, manifestMediaType string, config []byte, layers []descriptor.Descriptor) tarplan.Image {
	in := tarplan.Image{
		Name:              ji.Name,
		RepoTags:          ji.RepoTags,
		RefName:           ji.RefName,
		Manifest:          manifest,
		ManifestMediaType: manifestMediaType, // tarplan defaults an empty one to OCI
		Config:            config,
		ConfigDigest:      ji.ConfigDigest,
	}
	for _, l := range layers {
		in.Layers = append(in.Layers, tarplan.Blob{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType})
	}
	return in
}

// jobLayer is one of a job's layers and the reference it is fetched for:
// the first of the job's images that lists it.
type jobLayer struct {
	desc descriptor.Descriptor
	ref  ref.Ref
}

// replan rebuilds the job's layout from its record and the cached
// manifests and configs; planning is pure, so it is the layout the job was
// created with. It also returns each of job.Layers' descriptor (as its
// first image lists it) and reference, by index.
func (s *Service) replan(ctx context.Context, job tarport.Job) (tarplan.Layout, []jobLayer, error) {
	images := job.Images()
	ins := make([]tarplan.Image, len(images))
	first := map[digest.Digest]jobLayer{}
	for i, ji := range images {
		r, err := tarport.ParseReference(ji.Ref)
		if err != nil {
			return tarplan.Layout{}, nil, fmt.Errorf("job %s: %w", job.ID, err)
		}
		origin := tarport.RegistryOrigin(r.Registry)
		manifest, err := s.meta.GetMeta(ctx, origin, ji.Digest)
		if err != nil {
			return tarplan.Layout{}, nil, fmt.Errorf("loading manifest %s: %w", ji.Digest, err)
		}
		config, err := s.meta.GetMeta(ctx, origin, ji.ConfigDigest)
		if err != nil {
			return tarplan.Layout{}, nil, fmt.Errorf("loading config %s: %w", ji.ConfigDigest, err)
		}
		m, err := decodeManifest(ji.Digest, manifest)
		if err != nil {
			return tarplan.Layout{}, nil, err
		}
		ins[i] = planInput(ji, manifest, m.MediaType, config, m.Layers)
		for _, l := range m.Layers {
			if _, ok := first[l.Digest]; !ok {
				first[l.Digest] = jobLayer{desc: l, ref: r}
			}
		}
	}
	layout, err := tarplan.PlanImages(ins)
	if err != nil {
		return tarplan.Layout{}, nil, err
	}
	if layout.Size != job.TotalBytes {
		return tarplan.Layout{}, nil, fmt.Errorf("re-planning job %s: got %d bytes, planned %d", job.ID, layout.Size, job.TotalBytes)
	}
	for i, ji := range images {
		if layout.ManifestDigests[i] != ji.Digest {
			return tarplan.Layout{}, nil, fmt.Errorf("re-planning job %s: image %d has manifest %s, planned %s", job.ID, i, layout.ManifestDigests[i], ji.Digest)
		}
	}
	layers := make([]jobLayer, len(job.Layers))
	for i, l := range job.Layers {
		jl, ok := first[l.Digest]
		if !ok {
			return tarplan.Layout{}, nil, fmt.Errorf("re-planning job %s: layer %s is in none of its manifests", job.ID, l.Digest)
		}
		layers[i] = jl
	}
	return layout, layers, nil
}

// cachedManifest is what a job needs of its image manifest.
type cachedManifest struct {
	MediaType string                  `json:"mediaType"`
	Layers    []descriptor.Descriptor `json:"layers"`
}

// decodeManifest reads a job's cached image manifest d (Docker schema2
// and OCI manifests share these fields).
func decodeManifest(d digest.Digest, raw []byte) (cachedManifest, error) {
	var m cachedManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return cachedManifest{}, fmt.Errorf("decoding manifest %s: %w", d, err)
	}
	return m, nil
}
