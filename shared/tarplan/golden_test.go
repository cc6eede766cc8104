package tarplan_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarplan"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.tar from the current planner")

const goldenPath = "testdata/golden.tar"

// goldenImage is a small, fixed image: two tiny layers, a fixed config and
// a fixed manifest. Its tar must never change by accident: a changed byte
// changes every cached entry's identity and every published tar's digest.
func goldenImage() (tarplan.Image, map[digest.Digest][]byte) {
	one := []byte("layer one: hello\n")
	two := []byte("layer two: a little longer, still far under a block\n")
	d1, d2 := digest.FromBytes(one), digest.FromBytes(two)
	config := []byte(`{"architecture":"arm64","os":"linux","config":{"Cmd":["/hello"]},` +
		`"rootfs":{"type":"layers","diff_ids":["` + d1.String() + `","` + d2.String() + `"]}}`)
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d},`+
		`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}`,
		digest.FromBytes(config), len(config), d1, len(one), d2, len(two)))
	img := tarplan.Image{
		Name:              "docker.io/library/golden",
		RepoTags:          []string{"golden:1.0"},
		RefName:           "1.0",
		Manifest:          manifest,
		ManifestMediaType: "application/vnd.oci.image.manifest.v1+json",
		Config:            config,
		ConfigDigest:      digest.FromBytes(config),
		Layers: []tarplan.Blob{
			{Digest: d1, Size: int64(len(one)), MediaType: "application/vnd.oci.image.layer.v1.tar"},
			{Digest: d2, Size: int64(len(two)), MediaType: "application/vnd.oci.image.layer.v1.tar"},
		},
	}
	return img, map[digest.Digest][]byte{d1: one, d2: two}
}

// TestGolden compares the complete tar of goldenImage with
// testdata/golden.tar. After an intended change, regenerate it with
//
//	go test ./shared/tarplan -run Golden -update
func TestGolden(t *testing.T) {
	t.Parallel()
	img, blobs := goldenImage()
	l, err := tarplan.Plan(img)
	if err != nil {
		t.Fatal(err)
	}
	checkLayout(t, l)
	var buf bytes.Buffer
	if _, err := writeTar(&buf, l, blobs); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	if int64(len(got)) != l.Size {
		t.Fatalf("wrote %d bytes, planned %d", len(got), l.Size)
	}
	if len(got) >= 64<<10 {
		t.Fatalf("golden tar is %d bytes; keep it under 64 KiB", len(got))
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", goldenPath, len(got))
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (generate it with -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("tar differs from %s: %s\n(if the change is intended, run: go test ./shared/tarplan -run Golden -update)",
			goldenPath, firstDifference(l, got, want))
	}
	// The golden file is itself a well-formed tar of the image.
	files := readTar(t, want, l)
	checkBlobs(t, files)
	checkMetadata(t, files, img, l)
}

// firstDifference says where got and want first differ, by entry.
func firstDifference(l tarplan.Layout, got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	where := "the end-of-archive blocks"
	for _, e := range l.Entries {
		if int64(i) >= e.Offset && int64(i) < e.Offset+e.Len() {
			part := "content or padding"
			if int64(i) < e.Offset+int64(len(e.Header)) {
				part = "header"
			}
			where = fmt.Sprintf("the %s of %s (entry offset %d)", part, e.Name, e.Offset)
		}
	}
	return fmt.Sprintf("%d bytes, golden %d; first difference at byte %d, in %s", len(got), len(want), i, where)
}
