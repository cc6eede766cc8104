package tarplan_test

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarplan"
)

// checkLayout checks what every Layout must be: entries back to back from
// offset 0, stored entries (each at least BigEntryMin) biggest first, the
// tail from TailOffset, the end-of-archive blocks last, headers that are
// Header(name, size), fetched entries named after their digest, each blob
// once.
func checkLayout(t testing.TB, l tarplan.Layout) {
	t.Helper()
	if l.Stored < 0 || l.Stored > len(l.Entries) {
		t.Fatalf("Stored = %d with %d entries", l.Stored, len(l.Entries))
	}
	var off int64
	names := map[string]bool{}
	for i, e := range l.Entries {
		if e.Offset != off {
			t.Fatalf("entry %d (%s) at offset %d, want %d (contiguous)", i, e.Name, e.Offset, off)
		}
		if i == l.Stored && l.TailOffset != off {
			t.Fatalf("TailOffset = %d, want %d (the first tail entry)", l.TailOffset, off)
		}
		if names[e.Name] {
			t.Fatalf("entry %s appears twice", e.Name)
		}
		names[e.Name] = true
		if len(e.Header)%512 != 0 {
			t.Fatalf("entry %s: header of %d bytes", e.Name, len(e.Header))
		}
		if want, err := tarplan.Header(e.Name, e.Size); err != nil || !bytes.Equal(e.Header, want) {
			t.Fatalf("entry %s: header is not Header(name, %d) (err %v)", e.Name, e.Size, err)
		}
		if got, want := e.Len(), tarplan.EntryLen(len(e.Header), e.Size); got != want || got%512 != 0 {
			t.Fatalf("entry %s: Len() = %d, want %d", e.Name, got, want)
		}
		if e.Fetched() {
			if e.Name != tarplan.BlobName(e.Digest) {
				t.Fatalf("fetched entry %s has digest %s", e.Name, e.Digest)
			}
		} else if int64(len(e.Inline)) != e.Size {
			t.Fatalf("inline entry %s: %d bytes, Size %d", e.Name, len(e.Inline), e.Size)
		}
		if i < l.Stored {
			if !e.Fetched() || e.Len() < tarplan.BigEntryMin {
				t.Fatalf("stored entry %s: fetched %v, Len %d", e.Name, e.Fetched(), e.Len())
			}
			if i > 0 && l.Entries[i-1].Size < e.Size {
				t.Fatalf("stored entry %d (%d bytes) after a smaller one (%d)", i, e.Size, l.Entries[i-1].Size)
			}
		} else if e.Fetched() && e.Len() >= tarplan.BigEntryMin {
			t.Fatalf("tail entry %s is %d bytes, big enough to be stored", e.Name, e.Len())
		}
		off += e.Len()
	}
	if l.Stored == len(l.Entries) && l.TailOffset != off {
		t.Fatalf("TailOffset = %d with an empty tail ending at %d", l.TailOffset, off)
	}
	if l.Size != off+1024 {
		t.Fatalf("Size = %d, want entries (%d) + 1024", l.Size, off)
	}
}

// entryNames returns the names of entries, shortening blob paths to the
// first 8 hex digits of their digest.
func entryNames(entries []tarplan.Entry) []string {
	var out []string
	for _, e := range entries {
		n := e.Name
		if rest, ok := strings.CutPrefix(n, "blobs/sha256/"); ok {
			n = "blob:" + rest[:8]
		}
		out = append(out, n)
	}
	return out
}

func short(d digest.Digest) string { return "blob:" + d.Encoded()[:8] }

func entryByName(t testing.TB, l tarplan.Layout, name string) tarplan.Entry {
	t.Helper()
	for _, e := range l.Entries {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no entry %s in %v", name, entryNames(l.Entries))
	return tarplan.Entry{}
}

func readManifestJSON(t testing.TB, l tarplan.Layout) []dockerManifest {
	t.Helper()
	var m []dockerManifest
	if err := json.Unmarshal(entryByName(t, l, "manifest.json").Inline, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	return m
}

func readIndexJSON(t testing.TB, l tarplan.Layout) ociIndex {
	t.Helper()
	var idx ociIndex
	if err := json.Unmarshal(entryByName(t, l, "index.json").Inline, &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	return idx
}

func TestPlanOrder(t *testing.T) {
	t.Parallel()
	// Manifest order: small, big, tiny, biggest, mid, empty.
	sizes := []int64{1000, 200 * mib, 3, 2 * gib, 6 * mib, 0}
	layers := sizedLayers(sizes...)
	img := imageOf(t, layers...)
	l, err := tarplan.Plan(img)
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, l)
	cfg, man := digest.FromBytes(img.Config), digest.FromBytes(img.Manifest)
	want := []string{
		// stored, biggest first
		short(layers[3].Digest), short(layers[1].Digest), short(layers[4].Digest),
		// tail: small layers in manifest order, then the metadata
		short(layers[0].Digest), short(layers[2].Digest), short(layers[5].Digest),
		short(cfg), short(man), "oci-layout", "index.json", "manifest.json",
	}
	if got := entryNames(l.Entries); !slices.Equal(got, want) {
		t.Fatalf("entries\n got %v\nwant %v", got, want)
	}
	if l.Stored != 3 {
		t.Errorf("Stored = %d, want 3", l.Stored)
	}
	if got := entryNames(l.Tail()); !slices.Equal(got, want[3:]) {
		t.Errorf("Tail() = %v", got)
	}
	var sum int64
	for _, e := range l.Entries {
		sum += e.Len()
	}
	if l.Size != sum+1024 {
		t.Errorf("Size = %d, want %d", l.Size, sum+1024)
	}
	if l.ManifestDigest != man {
		t.Errorf("ManifestDigest = %s, want %s", l.ManifestDigest, man)
	}
	// Blobs: every fetched blob, biggest first.
	var gotSizes []int64
	for _, b := range l.Blobs() {
		gotSizes = append(gotSizes, b.Size)
	}
	if want := []int64{2 * gib, 200 * mib, 6 * mib, 1000, 3, 0}; !slices.Equal(gotSizes, want) {
		t.Errorf("Blobs() sizes = %v, want %v", gotSizes, want)
	}
}

func TestPlanStoredThreshold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size   int64
		stored bool
	}{
		{tarplan.BigEntryMin - 1024, false}, // entry 5 MiB - 512
		{tarplan.BigEntryMin - 1023, true},  // padded to an entry of exactly 5 MiB
		{tarplan.BigEntryMin - 512, true},   // entry of exactly 5 MiB
		{tarplan.BigEntryMin, true},
	}
	for _, tt := range tests {
		l := planSizes(t, tt.size)
		checkLayout(t, l)
		if got := l.Stored == 1; got != tt.stored {
			t.Errorf("layer of %d bytes (entry %d): stored %v, want %v", tt.size, l.Entries[0].Len(), got, tt.stored)
		}
	}
}

func TestPlanDuplicateLayer(t *testing.T) {
	t.Parallel()
	layers := sizedLayers(10*mib, 100, 20*mib)
	// The same layers again (a base layer listed twice, as `docker build`
	// can produce), and the big one a third time.
	all := append(slices.Clone(layers), layers[1], layers[0], layers[0])
	l, err := tarplan.Plan(imageOf(t, all...))
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, l)
	fetched := 0
	for _, e := range l.Entries {
		if e.Fetched() {
			fetched++
		}
	}
	if fetched != 3 || l.Stored != 2 {
		t.Errorf("fetched entries = %d, stored = %d; want 3 and 2", fetched, l.Stored)
	}
	m := readManifestJSON(t, l)
	var want []string
	for _, b := range all {
		want = append(want, tarplan.BlobName(b.Digest))
	}
	if len(m) != 1 || !slices.Equal(m[0].Layers, want) {
		t.Errorf("manifest.json Layers = %v, want every manifest layer in order: %v", m, want)
	}
}

func TestPlanEmptyLayer(t *testing.T) {
	t.Parallel()
	l := planSizes(t, 0)
	checkLayout(t, l)
	e := l.Entries[0]
	if l.Stored != 0 || !e.Fetched() || e.Size != 0 || e.Len() != 512 {
		t.Fatalf("empty layer: stored %d, entry %+v", l.Stored, e)
	}
	if l.TailOffset != 0 {
		t.Errorf("TailOffset = %d, want 0 (no stored entries)", l.TailOffset)
	}
}

func TestPlanNoLayers(t *testing.T) {
	t.Parallel()
	l := planSizes(t)
	checkLayout(t, l)
	if len(l.Entries) != 5 || l.Stored != 0 || len(l.Blobs()) != 0 {
		t.Fatalf("entries %v, stored %d", entryNames(l.Entries), l.Stored)
	}
	if m := readManifestJSON(t, l); m[0].Layers == nil {
		t.Error("manifest.json Layers is null, want []")
	}
}

// A layer's entry (header and so its bytes) depends on its digest and size
// only, so one cached entry serves every image that contains the layer.
func TestPlanEntryIsFunctionOfDigestAndSize(t *testing.T) {
	t.Parallel()
	shared := []tarplan.Blob{
		{Digest: fakeDigest(100), Size: 64 * mib},
		{Digest: fakeDigest(101), Size: 9 * gib}, // a PAX header
		{Digest: fakeDigest(102), Size: 777},
	}
	a := imageOf(t, sizedLayers(30*mib, 5)...)
	a.Layers = append(a.Layers, shared...)
	a.Manifest = manifestFor(t, a.Config, a.Layers)

	otherConfig := []byte(`{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	b := tarplan.Image{
		Name:         "ghcr.io/other/thing",
		Config:       otherConfig,
		ConfigDigest: digest.FromBytes(otherConfig),
		Layers:       []tarplan.Blob{shared[2], {Digest: fakeDigest(7), Size: 100 * gib}, shared[0], shared[1]},
	}
	b.Manifest = manifestFor(t, b.Config, b.Layers)

	la, err := tarplan.Plan(a)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := tarplan.Plan(b)
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, la)
	checkLayout(t, lb)
	for _, s := range shared {
		name := tarplan.BlobName(s.Digest)
		ea, eb := entryByName(t, la, name), entryByName(t, lb, name)
		if !bytes.Equal(ea.Header, eb.Header) || ea.Size != eb.Size || ea.Len() != eb.Len() {
			t.Errorf("layer %s: entries differ between images", s.Digest)
		}
		want, _ := tarplan.Header(name, s.Size)
		if !bytes.Equal(ea.Header, want) {
			t.Errorf("layer %s: header is not Header(BlobName, size)", s.Digest)
		}
	}
}

func TestPlanErrors(t *testing.T) {
	t.Parallel()
	good := imageOf(t, sizedLayers(10)...)
	tests := []struct {
		name   string
		change func(*tarplan.Image)
	}{
		{"config digest mismatch", func(img *tarplan.Image) { img.ConfigDigest = digest.FromString("another config") }},
		{"config bytes changed", func(img *tarplan.Image) { img.Config = append(slices.Clone(img.Config), ' ') }},
		{"config digest empty", func(img *tarplan.Image) { img.ConfigDigest = "" }},
		{"config digest malformed", func(img *tarplan.Image) { img.ConfigDigest = "sha256:xyz" }},
		{"no config", func(img *tarplan.Image) { img.Config = nil }},
		{"no manifest", func(img *tarplan.Image) { img.Manifest = nil }},
		{"layer digest malformed", func(img *tarplan.Image) { img.Layers = []tarplan.Blob{{Digest: "sha256:ABC", Size: 1}} }},
		{"layer digest empty", func(img *tarplan.Image) { img.Layers = []tarplan.Blob{{Size: 1}} }},
		{"layer size negative", func(img *tarplan.Image) { img.Layers = []tarplan.Blob{{Digest: fakeDigest(1), Size: -1}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			img := good
			img.Layers = slices.Clone(good.Layers)
			tt.change(&img)
			if l, err := tarplan.Plan(img); err == nil {
				t.Fatalf("Plan gave %d entries, want an error", len(l.Entries))
			}
		})
	}
}

func TestPlanMetadata(t *testing.T) {
	t.Parallel()
	layers := sizedLayers(8*mib, 4096)
	tests := []struct {
		name          string
		image         func(tarplan.Image) tarplan.Image
		repoTags      []string
		containerName string // io.containerd.image.name; "" for none
		refName       string // org.opencontainers.image.ref.name; "" for none
	}{
		{
			name:          "tagged",
			image:         func(img tarplan.Image) tarplan.Image { return img },
			repoTags:      []string{"app:1.0"},
			containerName: "docker.io/library/app:1.0",
			refName:       "1.0",
		},
		{
			name: "several tags",
			image: func(img tarplan.Image) tarplan.Image {
				img.Name, img.RepoTags, img.RefName = "ghcr.io/o/r", []string{"ghcr.io/o/r:v2", "ghcr.io/o/r:latest"}, "v2"
				return img
			},
			repoTags:      []string{"ghcr.io/o/r:v2", "ghcr.io/o/r:latest"},
			containerName: "ghcr.io/o/r:v2",
			refName:       "v2",
		},
		{
			name: "digest only",
			image: func(img tarplan.Image) tarplan.Image {
				img.RepoTags, img.RefName = nil, ""
				return img
			},
			repoTags:      []string{},
			containerName: "docker.io/library/app@MANIFEST",
		},
		{
			name: "no name",
			image: func(img tarplan.Image) tarplan.Image {
				img.Name, img.RepoTags, img.RefName = "", []string{}, ""
				return img
			},
			repoTags: []string{},
		},
		{
			name: "docker media type",
			image: func(img tarplan.Image) tarplan.Image {
				img.ManifestMediaType = "application/vnd.docker.distribution.manifest.v2+json"
				return img
			},
			repoTags:      []string{"app:1.0"},
			containerName: "docker.io/library/app:1.0",
			refName:       "1.0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			img := tt.image(imageOf(t, layers...))
			l, err := tarplan.Plan(img)
			if err != nil {
				t.Fatal(err)
			}
			checkLayout(t, l)
			mDigest := digest.FromBytes(img.Manifest)

			// manifest.json: the docker-archive view.
			raw := entryByName(t, l, "manifest.json").Inline
			if len(tt.repoTags) == 0 && !bytes.Contains(raw, []byte(`"RepoTags":[]`)) {
				t.Errorf("manifest.json = %s, want RepoTags [] (not null)", raw)
			}
			m := readManifestJSON(t, l)
			if len(m) != 1 {
				t.Fatalf("manifest.json has %d images", len(m))
			}
			if m[0].Config != tarplan.BlobName(img.ConfigDigest) {
				t.Errorf("Config = %s", m[0].Config)
			}
			if !slices.Equal(m[0].RepoTags, tt.repoTags) {
				t.Errorf("RepoTags = %q, want %q", m[0].RepoTags, tt.repoTags)
			}
			if want := []string{tarplan.BlobName(layers[0].Digest), tarplan.BlobName(layers[1].Digest)}; !slices.Equal(m[0].Layers, want) {
				t.Errorf("Layers = %v, want %v", m[0].Layers, want)
			}

			// index.json: the OCI layout view, pointing at the manifest blob.
			idx := readIndexJSON(t, l)
			if idx.SchemaVersion != 2 || idx.MediaType != "application/vnd.oci.image.index.v1+json" || len(idx.Manifests) != 1 {
				t.Fatalf("index.json = %+v", idx)
			}
			d := idx.Manifests[0]
			wantMT := img.ManifestMediaType
			if d.MediaType != wantMT || d.Digest != mDigest || d.Size != int64(len(img.Manifest)) {
				t.Errorf("index.json manifest = %+v, want %s %s %d", d, wantMT, mDigest, len(img.Manifest))
			}
			if want := strings.ReplaceAll(tt.containerName, "MANIFEST", mDigest.String()); d.Annotations["io.containerd.image.name"] != want {
				t.Errorf("io.containerd.image.name = %q, want %q", d.Annotations["io.containerd.image.name"], want)
			}
			if d.Annotations["org.opencontainers.image.ref.name"] != tt.refName {
				t.Errorf("org.opencontainers.image.ref.name = %q, want %q", d.Annotations["org.opencontainers.image.ref.name"], tt.refName)
			}
			if blob := entryByName(t, l, tarplan.BlobName(mDigest)); !bytes.Equal(blob.Inline, img.Manifest) {
				t.Error("manifest blob is not the manifest as served")
			}
			if blob := entryByName(t, l, tarplan.BlobName(img.ConfigDigest)); !bytes.Equal(blob.Inline, img.Config) {
				t.Error("config blob is not the config as served")
			}
			if got := string(entryByName(t, l, "oci-layout").Inline); got != `{"imageLayoutVersion":"1.0.0"}` {
				t.Errorf("oci-layout = %s", got)
			}
		})
	}
}

// An index.json without a manifest media type says it is an OCI manifest.
func TestPlanDefaultManifestMediaType(t *testing.T) {
	t.Parallel()
	img := imageOf(t)
	img.ManifestMediaType = ""
	l, err := tarplan.Plan(img)
	if err != nil {
		t.Fatal(err)
	}
	if mt := readIndexJSON(t, l).Manifests[0].MediaType; mt != mediaTypeManifest {
		t.Errorf("media type = %q, want %q", mt, mediaTypeManifest)
	}
}

// A config that is also listed as a layer (legal, if odd) is one file.
func TestPlanConfigAlsoALayer(t *testing.T) {
	t.Parallel()
	img := imageOf(t)
	img.Layers = []tarplan.Blob{{Digest: img.ConfigDigest, Size: int64(len(img.Config))}}
	img.Manifest = manifestFor(t, img.Config, img.Layers)
	l, err := tarplan.Plan(img)
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, l)
	if e := entryByName(t, l, tarplan.BlobName(img.ConfigDigest)); !e.Fetched() {
		t.Error("the config-layer entry is inline, want it fetched as a layer")
	}
}

// Plan is deterministic: the same image gives the same layout.
func TestPlanDeterministic(t *testing.T) {
	t.Parallel()
	sizes := []int64{7 * mib, 7 * mib, 7 * mib, 1, 20 * gib, 0, 5 * mib}
	a, b := planSizes(t, sizes...), planSizes(t, sizes...)
	if len(a.Entries) != len(b.Entries) || a.Size != b.Size {
		t.Fatal("two plans of one image differ")
	}
	for i := range a.Entries {
		ea, eb := a.Entries[i], b.Entries[i]
		if ea.Name != eb.Name || ea.Offset != eb.Offset || !bytes.Equal(ea.Header, eb.Header) || !bytes.Equal(ea.Inline, eb.Inline) {
			t.Fatalf("entry %d differs: %s vs %s", i, ea.Name, eb.Name)
		}
	}
	// Equal sizes keep manifest order (a stable sort).
	want := []string{short(fakeDigest(4)), short(fakeDigest(0)), short(fakeDigest(1)), short(fakeDigest(2)), short(fakeDigest(6))}
	if got := entryNames(a.Entries[:a.Stored]); !slices.Equal(got, want) {
		t.Errorf("stored = %v, want %v", got, want)
	}
}

// Layer sizes come from a registry's manifest; a tar beyond MaxTarSize
// (and so any sum near int64's range) must be refused, not wrap around to
// negative offsets.
func TestPlanSizeOverflow(t *testing.T) {
	t.Parallel()
	for _, sizes := range [][]int64{
		{1 << 62, 1 << 62},
		{math.MaxInt64},
		{math.MaxInt64 - 1000, 5},
	} {
		if l, err := tarplan.Plan(imageOf(t, sizedLayers(sizes...)...)); err == nil {
			t.Errorf("Plan(layers %v) = Size %d, TailOffset %d; want an error", sizes, l.Size, l.TailOffset)
		}
	}
}
