package tarplan_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarplan"
)

// bundleImages are two images sharing a big base layer and the config,
// each with a small layer of its own.
func bundleImages(t *testing.T) (a, b tarplan.Image, base tarplan.Blob) {
	t.Helper()
	base = tarplan.Blob{Digest: fakeDigest(100), Size: 6 << 20, MediaType: mediaTypeLayerGz}
	a = imageOf(t, base, tarplan.Blob{Digest: fakeDigest(101), Size: 1000, MediaType: mediaTypeLayerGz})
	b = imageOf(t, base, tarplan.Blob{Digest: fakeDigest(102), Size: 2000, MediaType: mediaTypeLayerGz})
	b.Name, b.RepoTags, b.RefName = "docker.io/library/other", []string{"other:2"}, "2"
	return a, b, base
}

// TestPlanImages: a bundle's tar holds every blob once, one manifest.json
// entry and one index.json manifest per image, each named.
func TestPlanImages(t *testing.T) {
	t.Parallel()
	a, b, base := bundleImages(t)
	l, err := tarplan.PlanImages([]tarplan.Image{a, b})
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, l)
	names := entryNames(l.Entries)
	if n := len(names); n != len(slices.Compact(slices.Sorted(slices.Values(names)))) {
		t.Fatalf("an entry twice: %v", names)
	}
	if l.Stored != 1 || l.Entries[0].Digest != base.Digest {
		t.Fatalf("stored %d entries, first %s; want the shared base once", l.Stored, l.Entries[0].Name)
	}
	da, db := digest.FromBytes(a.Manifest), digest.FromBytes(b.Manifest)
	if !slices.Equal(l.ManifestDigests, []digest.Digest{da, db}) || l.ManifestDigest != da {
		t.Fatalf("manifest digests %v (%s)", l.ManifestDigests, l.ManifestDigest)
	}
	wantNames := []string{
		short(base.Digest), short(fakeDigest(101)), short(fakeDigest(102)),
		short(a.ConfigDigest), short(da), short(db),
		"oci-layout", "index.json", "manifest.json",
	}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("entries\n got %v\nwant %v", names, wantNames)
	}
	m := readManifestJSON(t, l)
	if len(m) != 2 || !slices.Equal(m[0].RepoTags, []string{"app:1.0"}) || !slices.Equal(m[1].RepoTags, []string{"other:2"}) ||
		!slices.Equal(m[1].Layers, []string{tarplan.BlobName(base.Digest), tarplan.BlobName(fakeDigest(102))}) {
		t.Fatalf("manifest.json %+v", m)
	}
	idx := readIndexJSON(t, l)
	if len(idx.Manifests) != 2 || idx.Manifests[0].Digest != da || idx.Manifests[1].Digest != db ||
		idx.Manifests[1].Annotations["io.containerd.image.name"] != "docker.io/library/other:2" ||
		idx.Manifests[1].Annotations["org.opencontainers.image.ref.name"] != "2" {
		t.Fatalf("index.json %+v", idx)
	}
}

// TestPlanImagesSameManifestTwice: two tags of one image are one
// manifest.json entry with both tags (as docker save writes it) and two
// named index.json manifests; the same image and tag twice is one.
func TestPlanImagesSameManifestTwice(t *testing.T) {
	t.Parallel()
	a, _, _ := bundleImages(t)
	latest := a
	latest.RepoTags, latest.RefName = []string{"app:latest"}, "latest"
	l, err := tarplan.PlanImages([]tarplan.Image{a, latest, a})
	if err != nil {
		t.Fatal(err)
	}
	if m := readManifestJSON(t, l); len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{"app:1.0", "app:latest"}) {
		t.Fatalf("manifest.json %+v", m)
	}
	idx := readIndexJSON(t, l)
	if len(idx.Manifests) != 2 || idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "1.0" || idx.Manifests[1].Annotations["org.opencontainers.image.ref.name"] != "latest" {
		t.Fatalf("index.json %+v", idx)
	}
}

// TestPlanImagesOfOne: a bundle of one image is Plan's tar, exactly.
func TestPlanImagesOfOne(t *testing.T) {
	t.Parallel()
	a, _, _ := bundleImages(t)
	one, err := tarplan.Plan(a)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := tarplan.PlanImages([]tarplan.Image{a})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(one, bundle) {
		t.Fatal("PlanImages of one image differs from Plan")
	}
	if _, err := tarplan.PlanImages(nil); err == nil {
		t.Fatal("PlanImages of no image planned a tar")
	}
}
