package download

import (
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// tarNames are the names a tar carries: the image's full name, its tag,
// and manifest.json's RepoTags. A job records them, so its tar is planned
// again (to stitch it) exactly as it was planned at create.
type tarNames struct {
	Name     string
	RefName  string
	RepoTags []string
}

// namesOf names a tar after the reference asked for (RepoTags name:tag,
// none for a digest-only reference).
func namesOf(img tarport.Image) tarNames {
	n := tarNames{Name: tarport.FullName(img.Ref), RefName: img.Ref.Tag}
	if img.Ref.Tag != "" {
		n.RepoTags = []string{tarport.ShortName(img.Ref) + ":" + img.Ref.Tag}
	}
	return n
}

// jobNames are the names a job recorded.
func jobNames(job tarport.Job) tarNames {
	return tarNames{Name: job.Name, RefName: job.RefName, RepoTags: job.RepoTags}
}

// planInput is the one place a tarplan.Image is built: at create from the
// resolved image, at stitch from the job and its cached manifest and
// config, so the two cannot drift apart.
func planInput(names tarNames, manifest []byte, manifestMediaType string, config []byte, configDigest digest.Digest, layers []descriptor.Descriptor) tarplan.Image {
	in := tarplan.Image{
		Name:              names.Name,
		RepoTags:          names.RepoTags,
		RefName:           names.RefName,
		Manifest:          manifest,
		ManifestMediaType: manifestMediaType, // tarplan defaults an empty one to OCI
		Config:            config,
		ConfigDigest:      configDigest,
	}
	for _, l := range layers {
		in.Layers = append(in.Layers, tarplan.Blob{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType})
	}
	return in
}

// imagePlanInput is planInput for a resolved image.
func imagePlanInput(img tarport.Image) tarplan.Image {
	return planInput(namesOf(img), img.Manifest, img.ManifestMediaType, img.Config, img.ConfigDigest, img.Layers)
}

// replanInput is the planner input of a job, from its record and the
// manifest and config it was planned from, and the manifest's layers.
func replanInput(job tarport.Job, manifest, config []byte) (tarplan.Image, []descriptor.Descriptor, error) {
	m, err := decodeManifest(job, manifest)
	if err != nil {
		return tarplan.Image{}, nil, err
	}
	return planInput(jobNames(job), manifest, m.MediaType, config, job.ConfigDigest, m.Layers), m.Layers, nil
}

// cachedManifest is what a job needs of its image manifest.
type cachedManifest struct {
	MediaType string                  `json:"mediaType"`
	Layers    []descriptor.Descriptor `json:"layers"`
}

// decodeManifest reads a job's cached image manifest (Docker schema2 and
// OCI manifests share these fields).
func decodeManifest(job tarport.Job, raw []byte) (cachedManifest, error) {
	var m cachedManifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return cachedManifest{}, fmt.Errorf("decoding manifest %s: %w", job.Digest, err)
	}
	return m, nil
}
