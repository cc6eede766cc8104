package registry

import (
	"cmp"
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/regclient/regclient"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarport"
)

// maxDetailManifests bounds the manifests one Details call reads.
const maxDetailManifests = 80

// Details lists a repository's tags straight from its registry, for images
// outside Docker Hub, anonymously. Registries keep no dates, so tags are
// ordered version-like, newest first (the asked tag first); the first
// withPlatforms of them get their platforms and sizes from their manifests,
// the others only their names. Hub-only facts (stars, pulls) stay nil.
func (c *Client) Details(ctx context.Context, r ref.Ref, withPlatforms int) (tarport.RepoDetails, error) {
	rc := c.session(r.Registry, tarport.Credentials{})
	tl, err := rc.TagList(ctx, r)
	if err != nil {
		return tarport.RepoDetails{}, classify(err, "listing the tags of %s", r.Registry+"/"+r.Repository)
	}
	names, err := tl.GetTags()
	if err != nil {
		return tarport.RepoDetails{}, tarport.Wrap(err, tarport.CodeUpstream, "reading the tags of %s", r.Registry+"/"+r.Repository)
	}
	slices.SortFunc(names, newestFirst)
	if i := slices.Index(names, r.Tag); i > 0 {
		names = append([]string{r.Tag}, slices.Delete(names, i, i+1)...)
	}
	ns, _, _ := strings.Cut(r.Repository, "/")
	d := tarport.RepoDetails{
		RepoSummary: tarport.RepoSummary{Name: r.Registry + "/" + r.Repository, Namespace: ns},
		Tags:        make([]tarport.TagInfo, 0, len(names)),
	}
	budget := maxDetailManifests
	for i, name := range names {
		t := tarport.TagInfo{Name: name, Platforms: []tarport.PlatformInfo{}}
		if i < withPlatforms && budget > 0 {
			if err := c.tagPlatforms(ctx, rc, r.SetTag(name), &t, &budget); err != nil {
				// A tag deleted since the listing, or not an image, is
				// listed without platforms; anything else fails the call.
				if code := tarport.ErrorCode(err); code != tarport.CodeNotFound && code != tarport.CodeUnsupported {
					return tarport.RepoDetails{}, err
				}
			}
		}
		d.Tags = append(d.Tags, t)
	}
	return d, nil
}

// tagPlatforms fills a tag's digest, platforms and sizes from its index or
// manifest, spending one unit of budget per manifest read.
func (c *Client) tagPlatforms(ctx context.Context, rc *regclient.RegClient, r ref.Ref, t *tarport.TagInfo, budget *int) error {
	want, err := c.authorize(ctx, r, tarport.Credentials{})
	if err != nil {
		return err
	}
	raw, mt, dg, err := c.fetchManifest(ctx, rc, r, want, nil)
	*budget--
	if err != nil {
		return err
	}
	t.Digest = dg.String()
	if !isIndex(mt) {
		m, err := manifest.New(manifest.WithRaw(raw), manifest.WithDesc(descriptor.Descriptor{MediaType: mt}))
		imager, ok := m.(manifest.Imager)
		if err != nil || !ok {
			return nil // not an image: listed without platforms
		}
		cfgDesc, err := imager.GetConfig()
		if err != nil {
			return nil
		}
		cfg, err := c.fetchConfig(ctx, rc, r, cfgDesc, func() error { return nil })
		if err != nil {
			return err
		}
		p, err := configPlatform(cfg)
		if err != nil {
			return nil
		}
		size := layerBytes(imager)
		t.Platforms = append(t.Platforms, tarport.PlatformInfo{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, Digest: t.Digest, Size: size})
		t.Size = size
		return nil
	}
	m, err := manifest.New(manifest.WithRaw(raw), manifest.WithDesc(descriptor.Descriptor{MediaType: mt}))
	if err != nil {
		return nil
	}
	idx, ok := m.(manifest.Indexer)
	if !ok {
		return nil
	}
	list, err := idx.GetManifestList()
	if err != nil {
		return nil
	}
	for _, e := range list {
		if e.Platform == nil || tarport.IsAttestation(e.Platform, e.Annotations) {
			continue
		}
		p := tarport.PlatformInfo{OS: e.Platform.OS, Architecture: e.Platform.Architecture, Variant: e.Platform.Variant, Digest: e.Digest.String()}
		if *budget > 0 {
			// The compressed size is the sum of the platform image's layers.
			praw, pmt, _, err := c.fetchManifest(ctx, rc, r, e.Digest, nil)
			*budget--
			if err == nil {
				if pm, err := manifest.New(manifest.WithRaw(praw), manifest.WithDesc(descriptor.Descriptor{MediaType: pmt})); err == nil {
					if imager, ok := pm.(manifest.Imager); ok {
						p.Size = layerBytes(imager)
					}
				}
			}
		}
		t.Size = max(t.Size, p.Size)
		t.Platforms = append(t.Platforms, p)
	}
	return nil
}

func layerBytes(m manifest.Imager) int64 {
	layers, err := m.GetLayers()
	if err != nil {
		return 0
	}
	var n int64
	for _, l := range layers {
		n += l.Size
	}
	return n
}

var numberRun = regexp.MustCompile(`\d+|\D+`)

// newestFirst orders tags version-like, descending: numbers compare as
// numbers, so 1.27.10 comes before 1.27.9, and "latest" comes first.
func newestFirst(a, b string) int {
	if a == b {
		return 0
	}
	if a == "latest" {
		return -1
	}
	if b == "latest" {
		return 1
	}
	pa, pb := numberRun.FindAllString(a, -1), numberRun.FindAllString(b, -1)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, ea := strconv.ParseUint(pa[i], 10, 64)
		nb, eb := strconv.ParseUint(pb[i], 10, 64)
		if ea == nil && eb == nil {
			if c := cmp.Compare(nb, na); c != 0 {
				return c
			}
			continue
		}
		if c := cmp.Compare(pb[i], pa[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(pb), len(pa))
}
