package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/errs"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/mediatype"
	"github.com/regclient/regclient/types/platform"
	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarport"
)

const (
	maxManifestBytes = 4 << 20
	maxConfigBytes   = 8 << 20
	maxIndexDepth    = 4
)

// Resolve finds the manifest of platform p for r, authorizing creds
// against the registry on every call (a HEAD at least), so a cached tar of
// a private image is only handed to someone the registry lets pull it.
// A failing registry (5xx, a dropped connection) is asked again a few
// times, within the caller's deadline; a host whose name does not resolve
// is not (it will not resolve in the next seconds either).
func (c *Client) Resolve(ctx context.Context, r ref.Ref, p tarport.Platform, creds tarport.Credentials) (tarport.Image, error) {
	var err error
	for attempt, wait := 0, 250*time.Millisecond; ; attempt, wait = attempt+1, wait*2 {
		var img tarport.Image
		img, err = c.resolve(ctx, r, p, creds)
		code := tarport.ErrorCode(err)
		var dnsErr *net.DNSError
		if err == nil || attempt == 3 || (code != tarport.CodeUpstream && code != tarport.CodeUpstreamTimeout) || errors.As(err, &dnsErr) {
			return img, err
		}
		select {
		case <-ctx.Done():
			return tarport.Image{}, err
		case <-time.After(wait):
		}
	}
}

func (c *Client) resolve(ctx context.Context, r ref.Ref, p tarport.Platform, creds tarport.Credentials) (tarport.Image, error) {
	want, err := c.authorize(ctx, r, creds)
	if err != nil {
		return tarport.Image{}, err
	}
	// Past the check, reads may use the service's own Docker Hub account
	// (a higher pull limit); the check itself never does.
	rc := c.session(r.Registry, c.pullCreds(r.Registry, creds))
	m, err := c.platformManifest(ctx, rc, r, want, p, creds)
	if err != nil {
		return tarport.Image{}, err
	}
	img := tarport.Image{Ref: r, Platform: p, IndexDigest: m.index}
	raw, mt, d := m.raw, m.mediaType, m.digest
	cfgDesc, layers, err := imageParts(r, raw, mt, d)
	if err != nil {
		return tarport.Image{}, err
	}
	cfg, err := c.fetchConfig(ctx, rc, r, cfgDesc, func() error {
		return c.CheckBlob(ctx, r, cfgDesc, tarport.RegistryOrigin(r.Registry), creds)
	})
	if err != nil {
		return tarport.Image{}, err
	}
	if img.IndexDigest == "" {
		// A single-platform image must still be the platform asked for:
		// answering linux/arm64 with an amd64 image is the bug we replace.
		got, err := configPlatform(cfg)
		if err != nil {
			return tarport.Image{}, tarport.Wrap(err, tarport.CodeUpstream, "reading the platform of %s", r.CommonName())
		}
		if !p.Matches(got) {
			return tarport.Image{}, tarport.Errorf(tarport.CodePlatformNotFound, "%s has no %s image; available: %s", r.CommonName(), p, got.String())
		}
	}
	img.Manifest, img.ManifestDigest, img.ManifestMediaType = raw, d, mt
	img.Config, img.ConfigDigest = cfg, cfgDesc.Digest
	img.Layers = layers
	if max := c.opts.MaxImageBytes; max > 0 && img.TotalLayerBytes() > max {
		return tarport.Image{}, tarport.Errorf(tarport.CodeTooLarge, "%s is %d bytes, over this server's limit of %d bytes", r.CommonName(), img.TotalLayerBytes(), max)
	}
	return img, nil
}

// imageManifest is the image manifest of one platform, and the digest of
// the index it was picked from (empty for a single-platform image).
type imageManifest struct {
	raw       []byte
	mediaType string
	digest    digest.Digest
	index     digest.Digest
}

// platformManifest fetches the authorized top manifest want and walks its
// indexes down to p's image manifest. The top manifest was just
// authorized; what the cache holds below it is checked against the
// requester's repository before use.
func (c *Client) platformManifest(ctx context.Context, rc *regclient.RegClient, r ref.Ref, want digest.Digest, p tarport.Platform, creds tarport.Credentials) (imageManifest, error) {
	raw, mt, d, err := c.fetchManifest(ctx, rc, r, want, nil)
	if err != nil {
		return imageManifest{}, err
	}
	var index digest.Digest
	for depth := 0; isIndex(mt); depth++ {
		if depth == maxIndexDepth {
			return imageManifest{}, tarport.Errorf(tarport.CodeUnsupported, "%s nests indexes more than %d deep", r.CommonName(), maxIndexDepth)
		}
		if index == "" {
			index = d
		}
		desc, err := pickPlatform(r, raw, mt, p)
		if err != nil {
			return imageManifest{}, err
		}
		raw, mt, d, err = c.fetchManifest(ctx, rc, r, desc.Digest, func() error {
			_, err := c.session(r.Registry, creds).ManifestHead(ctx, r.SetDigest(desc.Digest.String()))
			return classify(err, "looking up %s", r.SetDigest(desc.Digest.String()).CommonName())
		})
		if err != nil {
			return imageManifest{}, err
		}
	}
	return imageManifest{raw: raw, mediaType: mt, digest: d, index: index}, nil
}

// imageParts reads an image manifest's config descriptor and layers,
// refusing what is not a container image with sha256 layers.
func imageParts(r ref.Ref, raw []byte, mt string, d digest.Digest) (descriptor.Descriptor, []descriptor.Descriptor, error) {
	switch mt {
	case mediatype.Docker2Manifest, mediatype.OCI1Manifest:
	case mediatype.Docker1Manifest, mediatype.Docker1ManifestSigned:
		return descriptor.Descriptor{}, nil, errSchema1(r)
	default:
		return descriptor.Descriptor{}, nil, tarport.Errorf(tarport.CodeUnsupported, "%s has a manifest of media type %q, which is not a container image", r.CommonName(), mt)
	}
	m, err := manifest.New(manifest.WithRaw(raw), manifest.WithDesc(descriptor.Descriptor{MediaType: mt, Digest: d, Size: int64(len(raw))}))
	if err != nil {
		return descriptor.Descriptor{}, nil, tarport.Wrap(err, tarport.CodeUpstream, "the registry served a manifest for %s that does not parse", r.CommonName())
	}
	imager, ok := m.(manifest.Imager)
	if !ok {
		return descriptor.Descriptor{}, nil, tarport.Errorf(tarport.CodeUnsupported, "%s is not an image manifest", r.CommonName())
	}
	cfgDesc, err := imager.GetConfig()
	if err != nil {
		return descriptor.Descriptor{}, nil, tarport.Wrap(err, tarport.CodeUpstream, "reading the config descriptor of %s", r.CommonName())
	}
	switch cfgDesc.MediaType {
	case mediatype.Docker2ImageConfig, mediatype.OCI1ImageConfig:
	default:
		return descriptor.Descriptor{}, nil, tarport.Errorf(tarport.CodeUnsupported, "%s is an artifact with config type %q, not a container image", r.CommonName(), cfgDesc.MediaType)
	}
	layers, err := imager.GetLayers()
	if err != nil {
		return descriptor.Descriptor{}, nil, tarport.Wrap(err, tarport.CodeUpstream, "reading the layers of %s", r.CommonName())
	}
	for _, l := range layers {
		if l.Digest.Validate() != nil || l.Digest.Algorithm() != digest.SHA256 {
			return descriptor.Descriptor{}, nil, tarport.Errorf(tarport.CodeUnsupported, "%s has a layer digest %q; only sha256 is supported", r.CommonName(), l.Digest)
		}
	}
	return cfgDesc, layers, nil
}

// errManifestTooBig refuses a manifest over maxManifestBytes (size -1:
// found while reading): a final answer, not retried. Real manifests are a
// few KiB; reading megabytes for each of many requests is a way to make
// the server hold memory.
func errManifestTooBig(r ref.Ref, size int64) error {
	if size < 0 {
		return tarport.Errorf(tarport.CodeTooLarge, "the manifest of %s is over %d bytes; no image needs one that big", r.CommonName(), maxManifestBytes)
	}
	return tarport.Errorf(tarport.CodeTooLarge, "the manifest of %s is %d bytes, over %d; no image needs one that big", r.CommonName(), size, maxManifestBytes)
}

func isSchema1(mt string) bool {
	return mt == mediatype.Docker1Manifest || mt == mediatype.Docker1ManifestSigned
}

func errSchema1(r ref.Ref) error {
	return tarport.Errorf(tarport.CodeUnsupported, "%s uses the Docker v2 schema 1 manifest format, which Docker removed; no runtime loads it any more", r.CommonName())
}

func isIndex(mt string) bool {
	return mt == mediatype.OCI1ManifestList || mt == mediatype.Docker2ManifestList
}

// authorize asks the registry, with the requester's own credentials, for
// exactly what was requested (a HEAD: Docker Hub does not count it against
// the pull limit). It runs on every request, by tag or by digest, before
// anything is read from a cache: that is what keeps a cached private image
// from anyone the registry would refuse. It returns the manifest's digest,
// or "" when the registry does not say.
func (c *Client) authorize(ctx context.Context, r ref.Ref, creds tarport.Credentials) (digest.Digest, error) {
	head, err := c.session(r.Registry, creds).ManifestHead(ctx, r)
	if err != nil {
		return "", classify(err, "looking up %s", r.CommonName())
	}
	desc := head.GetDescriptor()
	if isSchema1(desc.MediaType) {
		return "", errSchema1(r)
	}
	if desc.Size > maxManifestBytes {
		return "", errManifestTooBig(r, desc.Size)
	}
	want := desc.Digest
	if r.Digest != "" {
		asked := digest.Digest(r.Digest)
		if want != "" && want != asked {
			return "", tarport.Errorf(tarport.CodeDigestMismatch, "the registry answered %s for %s", want, r.CommonName())
		}
		want = asked
	}
	return want, nil
}

// CheckManifest asks the registry, with creds, whether the requester may
// read r (a reference by digest): before a finished private tar's link is
// handed out again, the registry must authorize the requester again.
func (c *Client) CheckManifest(ctx context.Context, r ref.Ref, creds tarport.Credentials) error {
	if r.Digest == "" {
		return tarport.Errorf(tarport.CodeInternal, "checking %s: a reference by digest is needed", r.CommonName())
	}
	_, err := c.authorize(ctx, r, creds)
	return err
}

// fetchManifest returns a verified manifest: want's from the cache when
// it is there (after check, if any, allows it), else by GET (of want, or
// of r's tag when want is unknown).
func (c *Client) fetchManifest(ctx context.Context, rc *regclient.RegClient, r ref.Ref, want digest.Digest, check func() error) ([]byte, string, digest.Digest, error) {
	target := r
	if want != "" {
		target = r.SetDigest(want.String())
	}
	origin := tarport.RegistryOrigin(r.Registry)
	if want != "" && c.opts.Cache != nil {
		if raw, err := c.opts.Cache.GetMeta(ctx, origin, want); err == nil && want.Validate() == nil && want.Algorithm().FromBytes(raw) == want {
			if check != nil {
				if err := check(); err != nil {
					return nil, "", "", err
				}
			}
			return raw, sniffMediaType(raw), want, nil
		}
	}
	m, err := rc.ManifestGet(ctx, target)
	if errors.Is(err, errs.ErrSizeLimitExceeded) {
		return nil, "", "", errManifestTooBig(target, -1)
	}
	if err != nil {
		return nil, "", "", classify(err, "fetching the manifest of %s", target.CommonName())
	}
	raw, err := m.RawBody()
	if err != nil {
		return nil, "", "", tarport.Wrap(err, tarport.CodeUpstream, "reading the manifest of %s", target.CommonName())
	}
	if len(raw) > maxManifestBytes {
		return nil, "", "", errManifestTooBig(target, int64(len(raw)))
	}
	got := digest.FromBytes(raw)
	if want != "" {
		if err := want.Validate(); err != nil {
			return nil, "", "", tarport.Wrap(err, tarport.CodeInvalidReference, "%s is not a valid digest", want)
		}
		got = want.Algorithm().FromBytes(raw)
		if got != want {
			return nil, "", "", tarport.Errorf(tarport.CodeDigestMismatch, "the registry served a manifest for %s whose digest is %s, not %s", target.CommonName(), got, want)
		}
	}
	mt := m.GetDescriptor().MediaType
	if c.opts.Cache != nil {
		// Best effort: a failed cache write costs a GET next time, no more.
		_ = c.opts.Cache.PutMeta(ctx, origin, got, raw)
	}
	return raw, mt, got, nil
}

// sniffMediaType reads the mediaType field of a cached manifest; a Docker
// schema2 or OCI manifest always has one except OCI manifests and indexes
// written without it, which the field layout still tells apart.
func sniffMediaType(raw []byte) string {
	var probe struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     []json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(raw, &probe) != nil {
		return ""
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.SchemaVersion == 1:
		return mediatype.Docker1Manifest
	case probe.Manifests != nil:
		return mediatype.OCI1ManifestList
	}
	return mediatype.OCI1Manifest
}

// pickPlatform returns the index entry for exactly p (attestations
// skipped), or a platform_not_found error listing what the index has.
func pickPlatform(r ref.Ref, raw []byte, mt string, p tarport.Platform) (descriptor.Descriptor, error) {
	m, err := manifest.New(manifest.WithRaw(raw), manifest.WithDesc(descriptor.Descriptor{MediaType: mt}))
	if err != nil {
		return descriptor.Descriptor{}, tarport.Wrap(err, tarport.CodeUpstream, "the registry served an index for %s that does not parse", r.CommonName())
	}
	idx, ok := m.(manifest.Indexer)
	if !ok {
		return descriptor.Descriptor{}, tarport.Errorf(tarport.CodeUpstream, "%s: index without a manifest list", r.CommonName())
	}
	list, err := idx.GetManifestList()
	if err != nil {
		return descriptor.Descriptor{}, tarport.Wrap(err, tarport.CodeUpstream, "reading the index of %s", r.CommonName())
	}
	var available []string
	for _, d := range list {
		if d.Platform == nil || tarport.IsAttestation(d.Platform, d.Annotations) {
			continue
		}
		if p.Matches(*d.Platform) {
			return d, nil
		}
		available = append(available, d.Platform.String())
	}
	sort.Strings(available)
	return descriptor.Descriptor{}, tarport.Errorf(tarport.CodePlatformNotFound, "%s has no %s image; available: %s", r.CommonName(), p, strings.Join(dedupe(available), ", "))
}

func dedupe(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// fetchConfig returns the verified config blob, from the cache (after
// check allows it) if there.
func (c *Client) fetchConfig(ctx context.Context, rc *regclient.RegClient, r ref.Ref, d descriptor.Descriptor, check func() error) ([]byte, error) {
	if d.Size > maxConfigBytes {
		return nil, tarport.Errorf(tarport.CodeUnsupported, "the config of %s is %d bytes, over %d", r.CommonName(), d.Size, maxConfigBytes)
	}
	origin := tarport.RegistryOrigin(r.Registry)
	if c.opts.Cache != nil {
		if raw, err := c.opts.Cache.GetMeta(ctx, origin, d.Digest); err == nil && d.Digest.Algorithm().FromBytes(raw) == d.Digest {
			if err := check(); err != nil {
				return nil, err
			}
			return raw, nil
		}
	}
	br, err := rc.BlobGet(ctx, r, d)
	if err != nil {
		return nil, classify(err, "fetching the config of %s", r.CommonName())
	}
	defer br.Close()
	raw, err := io.ReadAll(io.LimitReader(br, maxConfigBytes+1))
	if err != nil {
		return nil, classify(err, "reading the config of %s", r.CommonName())
	}
	if int64(len(raw)) != d.Size || d.Digest.Algorithm().FromBytes(raw) != d.Digest {
		return nil, tarport.Errorf(tarport.CodeDigestMismatch, "the config of %s does not match its digest %s", r.CommonName(), d.Digest)
	}
	if c.opts.Cache != nil {
		_ = c.opts.Cache.PutMeta(ctx, origin, d.Digest, raw)
	}
	return raw, nil
}

func configPlatform(cfg []byte) (platform.Platform, error) {
	var c struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
		OSVersion    string `json:"os.version"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return platform.Platform{}, fmt.Errorf("decoding image config: %w", err)
	}
	return platform.Platform{OS: c.OS, Architecture: c.Architecture, Variant: c.Variant, OSVersion: c.OSVersion}, nil
}
