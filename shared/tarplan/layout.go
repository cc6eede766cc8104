package tarplan

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/opencontainers/go-digest"
)

// Blob is a content-addressed file fetched from a registry: a layer.
type Blob struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"mediaType,omitempty"`
}

// Image is everything the planner needs, all of it known after resolving
// the manifest and config: no layer byte is needed to plan the tar.
type Image struct {
	// Name is the fully qualified repository, e.g. docker.io/library/nginx.
	Name string
	// RepoTags are the docker-archive names, e.g. ["nginx:1.27"]; empty for
	// an image asked for by digest only.
	RepoTags []string
	// RefName is the tag for org.opencontainers.image.ref.name, may be empty.
	RefName string
	// Manifest is the platform manifest exactly as the registry served it.
	Manifest          []byte
	ManifestMediaType string
	// Config is the image config exactly as the registry served it.
	Config       []byte
	ConfigDigest digest.Digest
	// Layers in manifest order, duplicates included.
	Layers []Blob
}

// Entry is one file of the tar.
type Entry struct {
	Name   string
	Size   int64 // content bytes
	Offset int64 // offset of the header in the tar
	Header []byte
	// Digest is set for fetched blobs (layers): their content comes from
	// the entry store. Inline files (metadata, config, manifest) carry
	// their content instead.
	Digest digest.Digest
	Inline []byte
}

// Len is the whole entry: header, content and padding.
func (e Entry) Len() int64 { return EntryLen(len(e.Header), e.Size) }

// Fetched reports whether the entry's content is a blob to fetch.
func (e Entry) Fetched() bool { return e.Inline == nil }

// Layout is the complete plan of one tar.
type Layout struct {
	Entries []Entry
	// Stored counts the leading entries copied whole from the entry store;
	// everything from TailOffset on (small blobs, metadata, end of archive)
	// is the tail, written in one stream.
	Stored     int
	TailOffset int64
	Size       int64
	// ManifestDigest is the digest of Image.Manifest (of the first image);
	// ManifestDigests has every image's, in order.
	ManifestDigest  digest.Digest
	ManifestDigests []digest.Digest
}

// Tail returns the entries of the tail, in order.
func (l Layout) Tail() []Entry { return l.Entries[l.Stored:] }

// Blobs returns the distinct fetched blobs, biggest first.
func (l Layout) Blobs() []Blob {
	var out []Blob
	for _, e := range l.Entries {
		if e.Fetched() {
			out = append(out, Blob{Digest: e.Digest, Size: e.Size})
		}
	}
	slices.SortStableFunc(out, func(a, b Blob) int { return cmp.Compare(b.Size, a.Size) })
	return out
}

// MaxTarSize is the biggest tar planned: S3's object size limit (5 TiB).
// It also keeps every offset far from int64 overflow.
const MaxTarSize = 5 << 40

// BigEntryMin is the smallest entry stored and copied on its own; smaller
// ones ride in the tail. It is S3's minimum part size, so every stored
// entry can be an UploadPartCopy source by itself.
const BigEntryMin = 5 << 20

// Plan lays out img's tar: stored entries (layers of BigEntryMin and more,
// biggest first) then the tail (small layers, config, manifest, oci-layout,
// index.json, manifest.json, end of archive). A layer listed twice is
// stored once.
func Plan(img Image) (Layout, error) { return PlanImages([]Image{img}) }

// PlanImages lays out one tar holding several images (a bundle), as Plan
// does one: every blob once however many images list it (big layers
// first, then small layers in the order the images list them, then each
// image's config and manifest), manifest.json with one entry per image
// (images with the same manifest share one, with all their RepoTags) and
// index.json with one manifest per image, each named. Plan of one image is
// PlanImages of it alone, byte for byte.
func PlanImages(imgs []Image) (Layout, error) {
	if len(imgs) == 0 {
		return Layout{}, fmt.Errorf("planning: no image")
	}
	var big, small []Entry
	seen := map[digest.Digest]bool{}
	mDigests := make([]digest.Digest, len(imgs))
	for i, img := range imgs {
		if len(img.Manifest) == 0 || len(img.Config) == 0 {
			return Layout{}, fmt.Errorf("planning %s: manifest and config are required", img.Name)
		}
		if err := img.ConfigDigest.Validate(); err != nil {
			return Layout{}, fmt.Errorf("planning %s: config digest: %w", img.Name, err)
		}
		if got := img.ConfigDigest.Algorithm().FromBytes(img.Config); got != img.ConfigDigest {
			return Layout{}, fmt.Errorf("planning %s: config bytes hash to %s, not %s", img.Name, got, img.ConfigDigest)
		}
		mDigests[i] = digest.FromBytes(img.Manifest)
		for _, l := range img.Layers {
			if err := l.Digest.Validate(); err != nil {
				return Layout{}, fmt.Errorf("planning %s: layer digest %q: %w", img.Name, l.Digest, err)
			}
			if l.Size < 0 || l.Size > MaxTarSize {
				return Layout{}, fmt.Errorf("planning %s: layer %s has size %d, outside 0..%d", img.Name, l.Digest, l.Size, int64(MaxTarSize))
			}
			if seen[l.Digest] {
				continue
			}
			seen[l.Digest] = true
			hdr, err := Header(BlobName(l.Digest), l.Size)
			if err != nil {
				return Layout{}, err
			}
			e := Entry{Name: BlobName(l.Digest), Size: l.Size, Header: hdr, Digest: l.Digest}
			if e.Len() >= BigEntryMin {
				big = append(big, e)
			} else {
				small = append(small, e)
			}
		}
	}
	slices.SortStableFunc(big, func(a, b Entry) int { return cmp.Compare(b.Size, a.Size) })

	meta, err := metadataFiles(imgs, mDigests)
	if err != nil {
		return Layout{}, err
	}
	entries := append(big, small...)
	for _, f := range meta {
		if f.digest != "" {
			if seen[f.digest] {
				continue // a layer's blob (degenerate, but legal), or another image's
			}
			seen[f.digest] = true
		}
		hdr, err := Header(f.name, int64(len(f.content)))
		if err != nil {
			return Layout{}, err
		}
		entries = append(entries, Entry{Name: f.name, Size: int64(len(f.content)), Header: hdr, Inline: f.content})
	}

	var off int64
	tailOffset := int64(-1)
	for i := range entries {
		if i == len(big) {
			tailOffset = off
		}
		entries[i].Offset = off
		off += entries[i].Len()
		if off > MaxTarSize {
			return Layout{}, fmt.Errorf("planning %s: the tar would be over %d bytes", imgs[0].Name, int64(MaxTarSize))
		}
	}
	if tailOffset < 0 {
		tailOffset = off
	}
	return Layout{
		Entries:         entries,
		Stored:          len(big),
		TailOffset:      tailOffset,
		Size:            off + endOfArchive,
		ManifestDigest:  mDigests[0],
		ManifestDigests: mDigests,
	}, nil
}

type metaFile struct {
	name    string
	content []byte
	digest  digest.Digest // for blobs, stored once
}

// metadataFiles builds each image's config and manifest blobs and the
// three files that make the tar both a docker-archive (manifest.json) and
// an OCI image layout (oci-layout, index.json), as `docker save` does since
// Docker 25.
func metadataFiles(imgs []Image, mDigests []digest.Digest) ([]metaFile, error) {
	var files []metaFile
	var manifests []dockerManifest
	entryOf := map[digest.Digest]int{} // manifest digest -> its manifest.json entry
	var descs []ociDescriptor
	for i, img := range imgs {
		files = append(files,
			metaFile{name: BlobName(img.ConfigDigest), content: img.Config, digest: img.ConfigDigest},
			metaFile{name: BlobName(mDigests[i]), content: img.Manifest, digest: mDigests[i]})
		if j, ok := entryOf[mDigests[i]]; ok {
			for _, tag := range img.RepoTags {
				if !slices.Contains(manifests[j].RepoTags, tag) {
					manifests[j].RepoTags = append(manifests[j].RepoTags, tag)
				}
			}
		} else {
			layerPaths := make([]string, 0, len(img.Layers))
			for _, l := range img.Layers {
				layerPaths = append(layerPaths, BlobName(l.Digest))
			}
			entryOf[mDigests[i]] = len(manifests)
			manifests = append(manifests, dockerManifest{
				Config:   BlobName(img.ConfigDigest),
				RepoTags: append([]string{}, img.RepoTags...),
				Layers:   layerPaths,
			})
		}
		d := imageDescriptor(img, mDigests[i])
		if !slices.ContainsFunc(descs, func(o ociDescriptor) bool { return o.Digest == d.Digest && maps.Equal(o.Annotations, d.Annotations) }) {
			descs = append(descs, d)
		}
	}
	manifestJSON, err := json.Marshal(manifests)
	if err != nil {
		return nil, fmt.Errorf("encoding manifest.json: %w", err)
	}
	indexJSON, err := json.Marshal(ociIndex{
		SchemaVersion: 2,
		MediaType:     "application/vnd.oci.image.index.v1+json",
		Manifests:     descs,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding index.json: %w", err)
	}
	return append(files,
		metaFile{name: "oci-layout", content: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		metaFile{name: "index.json", content: indexJSON},
		metaFile{name: "manifest.json", content: manifestJSON},
	), nil
}

// imageDescriptor is index.json's entry of img: its manifest, named.
func imageDescriptor(img Image, mDigest digest.Digest) ociDescriptor {
	annotations := map[string]string{}
	if img.Name != "" {
		name := img.Name + "@" + mDigest.String()
		if img.RefName != "" {
			// Plain name:tag: podman drops the tag of name:tag@digest.
			name = img.Name + ":" + img.RefName
			annotations["org.opencontainers.image.ref.name"] = img.RefName
		}
		annotations["io.containerd.image.name"] = name
	}
	mediaType := img.ManifestMediaType
	if mediaType == "" {
		mediaType = "application/vnd.oci.image.manifest.v1+json"
	}
	return ociDescriptor{MediaType: mediaType, Digest: mDigest, Size: int64(len(img.Manifest)), Annotations: annotations}
}

type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

type ociIndex struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Manifests     []ociDescriptor `json:"manifests"`
}

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      digest.Digest     `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}
