package tarcheck

import (
	"archive/tar"
	"reflect"
	"strings"
	"testing"
	"time"
)

func digests(ds []Descriptor) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Digest)
	}
	return out
}

func assertEqual(t testing.TB, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %v\n want %v", what, got, want)
	}
}

func TestStructure(t *testing.T) {
	t.Parallel()
	img := buildImageTar(t, t.TempDir(), imageSpec{layers: mixedLayers()})
	c := Structure(t, img.path)
	assertEqual(t, "RepoTags", c.RepoTags, []string{testRepoTag})
	assertEqual(t, "ImageName", c.ImageName, testImageName)
	assertEqual(t, "RefName", c.RefName, testRefName)
	assertEqual(t, "ManifestDigest", c.ManifestDigest, img.manifestDigest)
	assertEqual(t, "ManifestMediaType", c.ManifestMediaType, mediaTypeOCIManifest)
	assertEqual(t, "ConfigDigest", c.ConfigDigest, img.configDigest)
	assertEqual(t, "Layers", c.Layers, img.layers)
	assertEqual(t, "DiffIDs", c.DiffIDs, img.diffIDs)
	assertEqual(t, "Platform", c.Platform.String(), testPlatform)
	if len(c.Entries) != len(img.layers)+5 {
		t.Errorf("Entries: %d, want %d layers + config, manifest, oci-layout, index.json, manifest.json", len(c.Entries), len(img.layers))
	}
	for _, e := range c.Entries {
		if e.Offset != img.contentOffset[e.Name] {
			t.Errorf("entry %s: offset %d, want %d", e.Name, e.Offset, img.contentOffset[e.Name])
		}
	}
}

func TestStructureDuplicateLayerStoredOnce(t *testing.T) {
	t.Parallel()
	l := mixedLayers()[0]
	img := buildImageTar(t, t.TempDir(), imageSpec{layers: []testLayer{l, mixedLayers()[1], l}})
	c := Structure(t, img.path)
	if len(c.Layers) != 3 || c.Layers[0].Digest != c.Layers[2].Digest {
		t.Fatalf("Layers %v: want 3 with the first repeated last", c.Layers)
	}
}

// TestStructureBigConfig covers a config too big to keep on the first pass
// over the tar, which Structure reads again.
func TestStructureBigConfig(t *testing.T) {
	t.Parallel()
	img := buildImageTar(t, t.TempDir(), imageSpec{layers: mixedLayers(), editConfig: func(c map[string]any) {
		c["comment"] = strings.Repeat("x", keepLimit+1)
	}})
	c := Structure(t, img.path)
	assertEqual(t, "Platform", c.Platform.String(), testPlatform)
	assertEqual(t, "DiffIDs", c.DiffIDs, img.diffIDs)
}

// TestStructureRejects breaks one rule at a time; Structure must fail and
// say what is wrong.
func TestStructureRejects(t *testing.T) {
	t.Parallel()
	entry := func(es []tarEntry, name string) *tarEntry {
		for i := range es {
			if es[i].hdr.Name == name || (name == "layer0" && strings.HasPrefix(es[i].hdr.Name, "blobs/")) {
				return &es[i]
			}
		}
		t.Fatalf("no entry %s", name)
		return nil
	}
	annotations := func(index map[string]any) map[string]any {
		return index["manifests"].([]any)[0].(map[string]any)["annotations"].(map[string]any)
	}
	tests := []struct {
		name string
		spec imageSpec
		// corrupt flips a bit in the first layer after building.
		corrupt bool
		want    string
	}{
		{name: "flipped layer bit", corrupt: true, want: "content hashes to"},
		{name: "mode", want: "mode 0755, want 0644", spec: imageSpec{editEntries: func(es []tarEntry) []tarEntry {
			entry(es, "index.json").hdr.Mode = 0o755
			return es
		}}},
		{name: "uid", want: "uid/gid 1000/0", spec: imageSpec{editEntries: func(es []tarEntry) []tarEntry {
			entry(es, "layer0").hdr.Uid = 1000
			return es
		}}},
		{name: "mtime", want: "mtime", spec: imageSpec{editEntries: func(es []tarEntry) []tarEntry {
			entry(es, "manifest.json").hdr.ModTime = time.Unix(1700000000, 0)
			return es
		}}},
		{name: "directory entry", want: "want a regular file", spec: imageSpec{editEntries: func(es []tarEntry) []tarEntry {
			return append([]tarEntry{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "blobs/", Mode: 0o644, ModTime: time.Unix(0, 0)}}}, es...)
		}}},
		{name: "duplicate entry", want: `duplicate entry "oci-layout"`, spec: imageSpec{editEntries: func(es []tarEntry) []tarEntry {
			return append(es, *entry(es, "oci-layout"))
		}}},
		{name: "unexpected file", want: `unexpected entry "repositories"`, spec: imageSpec{editEntries: func(es []tarEntry) []tarEntry {
			e := *entry(es, "oci-layout")
			e.hdr.Name, e.data = "repositories", []byte("{}")
			return append(es, e)
		}}},
		{name: "missing layer blob", want: "is not in the tar", spec: imageSpec{editEntries: func(es []tarEntry) []tarEntry {
			return es[1:]
		}}},
		{name: "unreferenced blob", want: "is not referenced by the manifest", spec: imageSpec{editEntries: func(es []tarEntry) []tarEntry {
			extra := []byte("stray")
			e := *entry(es, "oci-layout")
			e.hdr.Name, e.data = blobName(sha(extra)), extra
			return append(es, e)
		}}},
		{name: "missing manifest.json", want: "missing manifest.json", spec: imageSpec{editEntries: func(es []tarEntry) []tarEntry {
			return es[:len(es)-1]
		}}},
		{name: "oci-layout version", want: "oci-layout is", spec: imageSpec{editEntries: func(es []tarEntry) []tarEntry {
			entry(es, "oci-layout").data = []byte(`{"imageLayoutVersion":"2.0.0"}`)
			return es
		}}},
		{name: "manifest.json layer order", want: "manifest.json Layers[0]", spec: imageSpec{editDockerManifest: func(m map[string]any) {
			ls := m["Layers"].([]any)
			ls[0], ls[1] = ls[1], ls[0]
		}}},
		{name: "manifest.json config", want: "manifest.json Config", spec: imageSpec{editDockerManifest: func(m map[string]any) {
			m["Config"] = m["Layers"].([]any)[0]
		}}},
		{name: "manifest.json layer count", want: "manifest lists 3 layers, manifest.json 2", spec: imageSpec{editDockerManifest: func(m map[string]any) {
			m["Layers"] = m["Layers"].([]any)[:2]
		}}},
		{name: "layer size", want: "descriptor size", spec: imageSpec{editManifest: func(m map[string]any) {
			l := m["layers"].([]any)[1].(map[string]any)
			l["size"] = l["size"].(int) + 1
		}}},
		{name: "layer media type", want: "unknown layer mediaType", spec: imageSpec{editManifest: func(m map[string]any) {
			m["layers"].([]any)[1].(map[string]any)["mediaType"] = "application/octet-stream"
		}}},
		{name: "manifest media type", want: "index.json says", spec: imageSpec{editManifest: func(m map[string]any) {
			m["mediaType"] = mediaTypeDockerManifest
		}}},
		{name: "diff_ids", want: "2 rootfs.diff_ids for 3 layers", spec: imageSpec{editConfig: func(c map[string]any) {
			r := c["rootfs"].(map[string]any)
			r["diff_ids"] = r["diff_ids"].([]string)[:2]
		}}},
		{name: "no os", want: "want both set", spec: imageSpec{editConfig: func(c map[string]any) {
			delete(c, "os")
		}}},
		{name: "image name with digest", want: "podman then drops the tag", spec: imageSpec{editIndex: func(i map[string]any) {
			annotations(i)[annotationImageName] = testImageName + "@sha256:" + strings.Repeat("a", 64)
		}}},
		{name: "no image name", want: "want both set", spec: imageSpec{editIndex: func(i map[string]any) {
			delete(annotations(i), annotationImageName)
		}}},
		{name: "ref name", want: "want the tag of", spec: imageSpec{editIndex: func(i map[string]any) {
			annotations(i)[annotationRefName] = "latest"
		}}},
		{name: "names disagree", want: "manifest.json RepoTags names", spec: imageSpec{editDockerManifest: func(m map[string]any) {
			m["RepoTags"] = []any{"other:test"}
		}}},
		{name: "index points elsewhere", want: "is not in the tar", spec: imageSpec{editIndex: func(i map[string]any) {
			i["manifests"].([]any)[0].(map[string]any)["digest"] = "sha256:" + strings.Repeat("b", 64)
		}}},
		{name: "no end of archive", want: "missing end-of-archive", spec: imageSpec{noEnd: true}},
		{name: "trailing bytes", want: "bytes after the end-of-archive", spec: imageSpec{trailing: make([]byte, 512)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tt.spec.layers = mixedLayers()
			img := buildImageTar(t, dir, tt.spec)
			path := img.path
			if tt.corrupt {
				path = corruptLayer(t, img, dir, img.layers[0].Digest)
			}
			msg := mustFail(t, "Structure", func(tb testing.TB) { Structure(tb, path) })
			if !strings.Contains(msg, tt.want) {
				t.Fatalf("Structure's failure does not mention %q:\n%s", tt.want, msg)
			}
		})
	}
}

func TestGGCR(t *testing.T) {
	t.Parallel()
	gz := mixedLayers()[0]
	zs := mixedLayers()[1]
	plain := mixedLayers()[2]
	tests := []struct {
		name   string
		layers []testLayer
	}{
		// gzip only: validate.Index and validate.Image check every layer.
		{"gzip", []testLayer{gz}},
		// zstd and uncompressed: validate(Fast) plus the kit's layer checks.
		{"mixed", []testLayer{gz, zs, plain}},
		// The shape ggcr's tarball reader cannot read: logged, layout only.
		{"uncompressed first", []testLayer{plain, gz, zs}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			img := buildImageTar(t, dir, imageSpec{layers: tt.layers})
			got := GGCR(t, img.path)
			assertEqual(t, "ManifestDigest", got.ManifestDigest, img.manifestDigest)
			assertEqual(t, "ConfigDigest", got.ConfigDigest, img.configDigest)
			assertEqual(t, "Layers", got.Layers, img.layers)
			assertEqual(t, "DiffIDs", got.DiffIDs, img.diffIDs)
			for i, l := range img.layers {
				bad := corruptLayer(t, img, dir, l.Digest)
				msg := mustFail(t, "GGCR on a corrupt "+l.MediaType+" layer", func(tb testing.TB) { GGCR(tb, bad) })
				t.Logf("layer %d (%s) corrupt: %s", i, l.MediaType, firstLine(msg))
			}
		})
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// TestReaders loads an image with every reader and checks they all see the
// same image: one with OCI media types and gzip, zstd and uncompressed
// layers, one with Docker's media types as many registries serve them, and
// one listing a layer twice.
func TestReaders(t *testing.T) {
	t.Parallel()
	l := mixedLayers()
	for _, variant := range []struct {
		name string
		spec imageSpec
	}{
		{"oci", imageSpec{layers: l}},
		{"docker", imageSpec{layers: []testLayer{l[0], l[2]}, docker: true}},
		// A layer listed twice is stored once.
		{"repeated layer", imageSpec{layers: []testLayer{l[0], l[1], l[0]}}},
	} {
		t.Run(variant.name, func(t *testing.T) {
			t.Parallel()
			testReaders(t, buildImageTar(t, t.TempDir(), variant.spec))
		})
	}
}

func testReaders(t *testing.T, img *builtImage) {
	c := Structure(t, img.path)
	assertEqual(t, "Structure manifest", c.ManifestDigest, img.manifestDigest)
	assertEqual(t, "Structure layers", c.Layers, img.layers)

	t.Run("ggcr", func(t *testing.T) {
		t.Parallel()
		g := GGCR(t, img.path)
		assertEqual(t, "ggcr manifest", g.ManifestDigest, c.ManifestDigest)
		assertEqual(t, "ggcr layers", g.Layers, c.Layers)
		assertEqual(t, "ggcr diff_ids", g.DiffIDs, c.DiffIDs)
	})
	t.Run("skopeo", func(t *testing.T) {
		t.Parallel()
		s := SkopeoCopy(t, img.path)
		assertEqual(t, "skopeo manifest (oci-archive)", s.ManifestDigest, c.ManifestDigest)
		assertEqual(t, "skopeo layers (oci-archive)", s.Layers, digests(c.Layers))
		assertEqual(t, "skopeo layers (docker-archive)", s.DiffIDs, c.DiffIDs)
		assertEqual(t, "Skopeo()", Skopeo(t, img.path), digests(c.Layers))
	})
	t.Run("containerd", func(t *testing.T) {
		t.Parallel()
		ctrd := StartContainerd(t)
		names := ctrd.Import(t, img.path, c.Platform.String())
		assertEqual(t, "containerd images", names, []string{testImageName})
		ctrd.AssertImage(t, testImageName)
		assertEqual(t, "containerd digest", ctrd.Images(t)[testImageName].Digest, c.ManifestDigest)

		// ctr itself imports an image of another platform without a word;
		// Import must not.
		msg := mustFail(t, "Import for linux/arm64", func(tb testing.TB) {
			ctrd.WithNamespace("wrong-platform").Import(tb, img.path, "linux/arm64")
		})
		if !strings.Contains(msg, "platforms are [linux/amd64]") {
			t.Errorf("Import's platform failure does not name the platforms: %s", msg)
		}
	})
	t.Run("podman", func(t *testing.T) {
		t.Parallel()
		p := PodmanLoad(t, img.path)
		// podman names the image from index.json's io.containerd.image.name,
		// fully qualified: docker.io/library/tarcheck:test, not localhost/.
		assertEqual(t, "podman names", p.Names, []string{testImageName})
		assertEqual(t, "Podman()", Podman(t, img.path), []string{testImageName})
		assertEqual(t, "podman manifest", p.ManifestDigest, c.ManifestDigest)
		assertEqual(t, "podman ID", "sha256:"+p.ID, c.ConfigDigest)
		assertEqual(t, "podman diff_ids", p.DiffIDs, c.DiffIDs)
		assertEqual(t, "podman platform", p.Platform, c.Platform)
	})
}

// TestReadersRejectCorruptLayer flips one bit in one layer, for each layer
// media type, and requires every check to fail.
func TestReadersRejectCorruptLayer(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"skopeo", "containerd", "ctr", "podman"} {
		requireBinary(t, tool)
	}
	img := buildImageTar(t, t.TempDir(), imageSpec{layers: mixedLayers()})
	ctrd := StartContainerd(t)
	for i, l := range img.layers {
		t.Run(l.MediaType[strings.LastIndex(l.MediaType, ".")+1:], func(t *testing.T) {
			t.Parallel()
			bad := corruptLayer(t, img, t.TempDir(), l.Digest)
			checks := []struct {
				name  string
				check func(tb testing.TB)
			}{
				{"Structure", func(tb testing.TB) { Structure(tb, bad) }},
				{"GGCR", func(tb testing.TB) { GGCR(tb, bad) }},
				{"Skopeo", func(tb testing.TB) { Skopeo(tb, bad) }},
				{"Containerd.Import", func(tb testing.TB) {
					ctrd.WithNamespace("corrupt-"+string(rune('a'+i))).Import(tb, bad, testPlatform)
				}},
				{"Podman", func(tb testing.TB) { Podman(tb, bad) }},
			}
			for _, c := range checks {
				msg := mustFail(t, c.name, c.check)
				t.Logf("%s rejects a corrupt %s layer: %s", c.name, l.MediaType, firstLine(msg))
				if c.name == "Skopeo" && !strings.Contains(msg, "2 of 2 copies failed") {
					t.Errorf("skopeo accepted the corrupt layer through one of its two views:\n%s", msg)
				}
			}
		})
	}
}

func TestRequireBinary(t *testing.T) {
	const missing = "tarcheck-no-such-binary"
	t.Setenv(requireToolsEnv, "1")
	failed, skipped, msg := outcome(t, func(tb testing.TB) { requireBinary(tb, missing) })
	if !failed || skipped || !strings.Contains(msg, "apt-get install -y") {
		t.Errorf("with %s=1: failed=%v skipped=%v msg=%q; want a failure with an install hint", requireToolsEnv, failed, skipped, msg)
	}
	t.Setenv(requireToolsEnv, "")
	failed, skipped, msg = outcome(t, func(tb testing.TB) { requireBinary(tb, missing) })
	if failed || !skipped {
		t.Errorf("without %s: failed=%v skipped=%v msg=%q; want a skip", requireToolsEnv, failed, skipped, msg)
	}
	if p := requireBinary(t, "sh"); p == "" {
		t.Errorf("requireBinary(sh) returned no path")
	}
}
