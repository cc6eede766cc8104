package regtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types the fixtures write, named here so tests can compare against them.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIConfig      = "application/vnd.oci.image.config.v1+json"
	MediaTypeOCILayerGzip   = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeOCILayerZstd   = "application/vnd.oci.image.layer.v1.tar+zstd"
	MediaTypeOCILayer       = "application/vnd.oci.image.layer.v1.tar"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerTar = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerForeign  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	MediaTypeInToto         = "application/vnd.in-toto+json"
)

// created is the creation time of every fixture, so digests are the same in every run.
var created = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Dest says where to push: a tag reference and, for a registry with auth, the
// credentials. Registry.Dest fills it in for a test registry.
type Dest struct {
	Ref                string // "host:port/repo:tag"
	Username, Password string // HTTP basic auth; empty for anonymous
}

// Blob describes one thing the registry serves: a manifest, a config or a layer.
type Blob struct {
	Digest    string // "sha256:<hex>"
	Size      int64
	MediaType string
	URLs      []string // where a foreign layer is downloaded from; such a blob is not in the registry
}

// Image is one pushed image manifest: for one platform, or an attestation.
type Image struct {
	Platform string // "os/arch[/variant]", e.g. "linux/arm/v7"
	Manifest Blob
	Config   Blob
	Layers   []Blob   // in manifest order; a duplicated layer appears twice
	DiffIDs  []string // the config's rootfs.diff_ids, one per layer
	// Attestation is the BuildKit attestation manifest (platform "unknown/unknown",
	// one in-toto layer) that refers to this image, if the index has one.
	Attestation *Image
}

// Pushed is what a fixture put in the registry.
type Pushed struct {
	Ref    string // the tag reference pushed to, "host:port/repo:tag"
	Index  *Blob  // the OCI index or Docker manifest list the tag points at; nil for a single image
	Images []Image
}

// Digest is what Ref resolves to: the index if there is one, else the image manifest.
func (p Pushed) Digest() string {
	if p.Index != nil {
		return p.Index.Digest
	}
	return p.Images[0].Manifest.Digest
}

// Platform returns the image for platform ("linux/arm64/v8"). A platform without a
// variant also matches an image that has one ("linux/arm64").
func (p Pushed) Platform(platform string) (Image, bool) {
	for _, img := range p.Images {
		if img.Platform == platform {
			return img, true
		}
	}
	for _, img := range p.Images {
		if strings.Count(platform, "/") == 1 && strings.HasPrefix(img.Platform, platform+"/") {
			return img, true
		}
	}
	return Image{}, false
}

// builtImage is an image ready to push: its manifest and every blob the registry must hold.
type builtImage struct {
	Image
	manifest []byte
	blobs    []v1.Layer // the config and each distributable layer, once
}

// layerBlob is a finished layer; data is nil for a foreign layer, which stays out of the registry.
type layerBlob struct {
	desc        Blob
	diffID      string
	data        []byte
	history     string
	annotations map[string]string // on the manifest's descriptor
}

// assemble writes the config and manifest for layers: a config with rootfs, diff_ids
// and history as a builder would leave it, so runtimes accept the image.
func assemble(p v1.Platform, docker bool, layers []layerBlob) (builtImage, error) {
	cfg := v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		OSVersion:    p.OSVersion,
		Variant:      p.Variant,
		Created:      v1.Time{Time: created},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{}},
		Config: v1.Config{
			Env:    []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd:    []string{"/bin/sh"},
			Labels: map[string]string{"org.opencontainers.image.title": "tarport regtest fixture"},
		},
	}
	img := builtImage{Image: Image{Platform: platformString(p)}}
	for _, l := range layers {
		h, err := v1.NewHash(l.diffID)
		if err != nil {
			return builtImage{}, err
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, h)
		cfg.History = append(cfg.History, v1.History{Created: v1.Time{Time: created}, CreatedBy: l.history})
		img.Layers = append(img.Layers, l.desc)
		img.DiffIDs = append(img.DiffIDs, l.diffID)
	}
	rawCfg, err := json.Marshal(cfg)
	if err != nil {
		return builtImage{}, err
	}
	mt, cfgMT := MediaTypeOCIManifest, MediaTypeOCIConfig
	if docker {
		mt, cfgMT = MediaTypeDockerManifest, MediaTypeDockerConfig
	}
	return finish(img, mt, rawCfg, cfgMT, layers)
}

// finish writes the manifest of img and collects the blobs to upload.
func finish(img builtImage, mediaType string, rawCfg []byte, cfgMediaType string, layers []layerBlob) (builtImage, error) {
	img.Config = blobOf(rawCfg, cfgMediaType)
	img.blobs = append(img.blobs, static.NewLayer(rawCfg, types.MediaType(cfgMediaType)))
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.MediaType(mediaType),
		Config:        descriptor(img.Config),
		Layers:        []v1.Descriptor{},
	}
	seen := map[string]bool{}
	for _, l := range layers {
		d := descriptor(l.desc)
		d.Annotations = l.annotations
		m.Layers = append(m.Layers, d)
		if l.data != nil && !seen[l.desc.Digest] {
			seen[l.desc.Digest] = true
			img.blobs = append(img.blobs, static.NewLayer(l.data, types.MediaType(l.desc.MediaType)))
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return builtImage{}, err
	}
	img.manifest = raw
	img.Manifest = blobOf(raw, mediaType)
	return img, nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobOf(b []byte, mediaType string) Blob {
	return Blob{Digest: digestOf(b), Size: int64(len(b)), MediaType: mediaType}
}

func descriptor(b Blob) v1.Descriptor {
	h, err := v1.NewHash(b.Digest)
	if err != nil {
		panic(err) // digests here are computed by digestOf
	}
	return v1.Descriptor{MediaType: types.MediaType(b.MediaType), Size: b.Size, Digest: h, URLs: b.URLs}
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// session pushes to one repository with one authenticated client.
type session struct {
	tag    name.Tag
	pusher *remote.Pusher
	// seed names generated content: repo:tag, without the host, whose port changes
	// from run to run, so digests do not.
	seed string
}

func newSession(dst Dest) (*session, error) {
	// Insecure: test registries serve plain HTTP.
	tag, err := name.NewTag(dst.Ref, name.Insecure)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", dst.Ref, err)
	}
	auth := authn.Anonymous
	if dst.Username != "" {
		auth = &authn.Basic{Username: dst.Username, Password: dst.Password}
	}
	p, err := remote.NewPusher(remote.WithAuth(auth))
	if err != nil {
		return nil, err
	}
	return &session{tag: tag, pusher: p, seed: tag.Context().RepositoryStr() + ":" + tag.TagStr()}, nil
}

// pushImage uploads img's blobs, then its manifest as ref.
func (s *session) pushImage(ctx context.Context, img builtImage, ref name.Reference) error {
	if err := s.upload(ctx, img.blobs); err != nil {
		return err
	}
	return s.put(ctx, ref, img.manifest, img.Manifest.MediaType)
}

// upload writes blobs a few at a time: each blob costs four requests, which one by one
// add up for a 120-layer image.
func (s *session) upload(ctx context.Context, blobs []v1.Layer) error {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	errs := make([]error, len(blobs))
	for i, b := range blobs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s.pusher.Upload(ctx, s.tag.Context(), b); err != nil {
				d, _ := b.Digest()
				errs[i] = fmt.Errorf("uploading blob %s to %s: %w", d, s.tag.Context(), err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *session) put(ctx context.Context, ref name.Reference, raw []byte, mediaType string) error {
	if err := s.pusher.Put(ctx, ref, rawManifest{raw, types.MediaType(mediaType)}); err != nil {
		return fmt.Errorf("putting manifest %s: %w", ref, err)
	}
	return nil
}

// rawManifest lets the pusher PUT exact bytes with their media type.
type rawManifest struct {
	raw       []byte
	mediaType types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mediaType, nil }

var _ remote.Taggable = rawManifest{}
