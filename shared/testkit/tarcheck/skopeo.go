package tarcheck

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// SkopeoImage is what skopeo read from the tar through its two transports.
type SkopeoImage struct {
	// ManifestDigest is the manifest skopeo copied from oci-archive: with
	// --preserve-digests it is the tar's own manifest, byte for byte.
	ManifestDigest string
	// Layers are the layer digests skopeo copied from oci-archive, as
	// stored in the tar (compressed as the registry served them).
	Layers []string
	// DiffIDs are the layer digests skopeo copied from docker-archive.
	// skopeo's docker-archive reader treats every layer file as a diff:
	// it decompresses it and verifies it against the config's diff_ids,
	// and the copy keeps it uncompressed, so these are the diff_ids.
	DiffIDs []string
}

// Skopeo copies the tar with skopeo from both views it offers, which verify
// every digest on the way: `skopeo copy docker-archive:TAR oci:DIR:x`
// (manifest.json; layers decompressed and checked against the config's
// diff_ids) and `skopeo copy oci-archive:TAR oci:DIR:x` (index.json; blobs
// checked against their descriptors). It also runs `skopeo inspect --raw`
// on both. It returns the layer digests skopeo copied from oci-archive.
func Skopeo(t testing.TB, tarPath string) []string {
	t.Helper()
	return SkopeoCopy(t, tarPath).Layers
}

// SkopeoCopy is Skopeo returning everything skopeo saw.
//
// Both copies use --preserve-digests: without it skopeo re-encodes what it
// copies into an oci: dir (it gzips uncompressed layers and rewrites the
// manifest), and the result no longer shows what was in the tar. TMPDIR is
// a private temp dir: skopeo unpacks a whole oci-archive there first.
func SkopeoCopy(t testing.TB, tarPath string) SkopeoImage {
	t.Helper()
	bin, tmp, env := skopeoSetup(t)
	var got SkopeoImage

	// Both copies run before judging, so a broken tar shows what each
	// view thinks of it.
	fromDocker := filepath.Join(tmp, "from-docker-archive")
	fromOCI := filepath.Join(tmp, "from-oci-archive")
	var failures []string
	for _, c := range [][2]string{{"docker-archive:" + tarPath, "oci:" + fromDocker + ":x"}, {"oci-archive:" + tarPath, "oci:" + fromOCI + ":x"}} {
		args := []string{"--insecure-policy", "copy", "--quiet", "--preserve-digests", c[0], c[1]}
		if r := runCmd(env, bin, args...); r.err != nil {
			failures = append(failures, r.describe(bin, args))
		}
	}
	if len(failures) > 0 {
		t.Fatalf("tarcheck.Skopeo: %d of 2 copies failed:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	_, m := readOCIDir(t, fromDocker)
	for _, l := range m.Layers {
		got.DiffIDs = append(got.DiffIDs, l.Digest)
	}
	got.ManifestDigest, m = readOCIDir(t, fromOCI)
	for _, l := range m.Layers {
		got.Layers = append(got.Layers, l.Digest)
	}

	// inspect --raw prints the manifest each transport presents: for
	// oci-archive the tar's manifest bytes, so it must hash to the digest
	// index.json names; for docker-archive one skopeo generates from
	// manifest.json, whose layers are the diff_ids.
	raw := mustRun(t, env, bin, "--insecure-policy", "inspect", "--raw", "oci-archive:"+tarPath)
	if d := sha256Hex([]byte(raw)); d != got.ManifestDigest {
		t.Fatalf("tarcheck.Skopeo: `skopeo inspect --raw oci-archive:%s` printed a manifest hashing to %s, but the copy holds %s", tarPath, d, got.ManifestDigest)
	}
	raw = mustRun(t, env, bin, "--insecure-policy", "inspect", "--raw", "docker-archive:"+tarPath)
	var dm jsonManifest
	if err := json.Unmarshal([]byte(raw), &dm); err != nil {
		t.Fatalf("tarcheck.Skopeo: `skopeo inspect --raw docker-archive:%s`: %v\n%s", tarPath, err, raw)
	}
	if len(dm.Layers) != len(got.DiffIDs) {
		t.Fatalf("tarcheck.Skopeo: `skopeo inspect --raw docker-archive:%s` lists %d layers, the copy %d", tarPath, len(dm.Layers), len(got.DiffIDs))
	}
	for i, l := range dm.Layers {
		if l.Digest != got.DiffIDs[i] {
			t.Fatalf("tarcheck.Skopeo: docker-archive layer[%d]: inspect says %s, the copy holds %s", i, l.Digest, got.DiffIDs[i])
		}
	}
	return got
}

// SkopeoNamed copies one image of a tar of several (a bundle) by its
// name, as manifest.json's RepoTags and index.json give it:
// `skopeo copy docker-archive:TAR:NAME oci:DIR:x`, which checks every
// layer against the config's diff_ids. It returns the diff_ids copied and
// the config digest of that image.
func SkopeoNamed(t testing.TB, tarPath, name string) (diffIDs []string, config string) {
	t.Helper()
	bin, tmp, env := skopeoSetup(t)
	dir := filepath.Join(tmp, "copy")
	mustRun(t, env, bin, "--insecure-policy", "copy", "--quiet", "--preserve-digests", "docker-archive:"+tarPath+":"+name, "oci:"+dir+":x")
	_, m := readOCIDir(t, dir)
	for _, l := range m.Layers {
		diffIDs = append(diffIDs, l.Digest)
	}
	return diffIDs, m.Config.Digest
}

// skopeoSetup finds skopeo and makes its temp dir: skopeo's TMPDIR is a
// private dir in it (skopeo unpacks a whole oci-archive there first).
func skopeoSetup(t testing.TB) (bin, tmp string, env []string) {
	t.Helper()
	bin = requireBinary(t, "skopeo")
	tmp = toolTempDir(t, "tarcheck-skopeo-")
	if err := os.Mkdir(filepath.Join(tmp, "tmp"), 0o700); err != nil {
		t.Fatalf("creating skopeo TMPDIR: %v", err)
	}
	return bin, tmp, []string{"TMPDIR=" + filepath.Join(tmp, "tmp")}
}

// readOCIDir returns the manifest digest and manifest of the one image in
// an OCI layout directory skopeo wrote.
func readOCIDir(t testing.TB, dir string) (string, jsonManifest) {
	t.Helper()
	var index jsonIndex
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err == nil {
		err = json.Unmarshal(b, &index)
	}
	if err != nil || len(index.Manifests) != 1 {
		t.Fatalf("tarcheck.Skopeo: reading the index.json skopeo wrote to %s: %v (%s)", dir, err, b)
	}
	d := index.Manifests[0].Digest
	var m jsonManifest
	b, err = os.ReadFile(filepath.Join(dir, blobName(d)))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		t.Fatalf("tarcheck.Skopeo: reading the manifest %s skopeo wrote to %s: %v", d, dir, err)
	}
	return d, m
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}
