package tarcheck

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// Media types and annotations the layout uses.
const (
	mediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	mediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeOCIConfig      = "application/vnd.oci.image.config.v1+json"
	mediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"

	annotationImageName = "io.containerd.image.name"
	annotationRefName   = "org.opencontainers.image.ref.name"
)

// layerMediaTypes are the layer types a registry serves that runtimes load.
var layerMediaTypes = map[string]bool{
	"application/vnd.oci.image.layer.v1.tar":                    true,
	"application/vnd.oci.image.layer.v1.tar+gzip":               true,
	"application/vnd.oci.image.layer.v1.tar+zstd":               true,
	"application/vnd.docker.image.rootfs.diff.tar":              true,
	"application/vnd.docker.image.rootfs.diff.tar.gzip":         true,
	"application/vnd.docker.image.rootfs.diff.tar.zstd":         true,
	"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip": true,
}

// Contents is what Structure found in a tar.
type Contents struct {
	// RepoTags is manifest.json's RepoTags, e.g. ["nginx:1.27"].
	RepoTags []string
	// ImageName and RefName are index.json's io.containerd.image.name and
	// org.opencontainers.image.ref.name annotations (of the first entry).
	ImageName string
	RefName   string
	// ManifestDigest is the image manifest index.json points at.
	ManifestDigest    string
	ManifestMediaType string
	ConfigDigest      string
	// Layers are the manifest's layers in order, duplicates included.
	Layers []Descriptor
	// DiffIDs are the config's rootfs.diff_ids, one per layer.
	DiffIDs  []string
	Platform Platform
	// Entries are the tar's files in tar order; Size is the tar's length.
	Entries []Entry
	Size    int64
}

// Entry is one file of the tar: its name, where its content starts and its
// content length.
type Entry struct {
	Name   string
	Offset int64
	Size   int64
}

// keepLimit bounds the blobs Structure holds in memory while it reads:
// manifests and configs are small, layers are streamed and only hashed.
const keepLimit = 1 << 20

// metadataLimit caps the JSON files and blobs Structure parses.
const metadataLimit = 64 << 20

var blobNameRE = regexp.MustCompile(`^blobs/sha256/[0-9a-f]{64}$`)
var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Structure reads the tar at tarPath with archive/tar alone and checks it
// against the layout in shared/DESIGN.md: only regular files with mode 0644,
// uid/gid 0 and one fixed mtime; no duplicate or unexpected names; an exact
// end of archive; every blob's sha256 matches its name and its size the
// descriptors that reference it; oci-layout, index.json and manifest.json
// complete and in agreement; no unreferenced blobs. It reports every
// problem found at once and returns what it read.
func Structure(t testing.TB, tarPath string) Contents {
	t.Helper()
	c, problems, err := readStructure(tarPath)
	if err != nil {
		t.Fatalf("tarcheck.Structure(%s): %v", tarPath, err)
	}
	if len(problems) > 0 {
		t.Fatalf("tarcheck.Structure(%s): %d problem(s):\n  - %s", tarPath, len(problems), strings.Join(problems, "\n  - "))
	}
	return c
}

// blobInfo is what one pass over the tar learned about a file.
type blobInfo struct {
	size    int64
	digest  string // sha256 of the content
	content []byte // kept when small
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// problems collects findings; the checks go on after one so a test reports
// everything wrong with a tar in one run.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// readStructure returns an error only when the tar can't be checked at all
// (unreadable, not a tar); everything else is a problem.
func readStructure(tarPath string) (Contents, []string, error) {
	var c Contents
	var probs problems
	f, err := os.Open(tarPath)
	if err != nil {
		return c, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return c, nil, err
	}
	c.Size = st.Size()

	files := map[string]*blobInfo{}
	cr := &countingReader{r: f}
	tr := tar.NewReader(cr)
	var mtime *time.Time
	var entriesEnd int64
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A broken header ends the walk: nothing after it can be trusted.
			probs.add("reading tar header after %d entries (offset %d): %v", len(c.Entries), cr.n, err)
			return c, probs, nil
		}
		e := Entry{Name: hdr.Name, Offset: cr.n, Size: hdr.Size}
		c.Entries = append(c.Entries, e)
		checkHeader(&probs, hdr, &mtime)
		if _, dup := files[hdr.Name]; dup {
			probs.add("duplicate entry %q", hdr.Name)
		}
		if hdr.Typeflag != tar.TypeReg {
			files[hdr.Name] = &blobInfo{}
			continue
		}
		info, err := hashEntry(tr, hdr)
		if err != nil {
			probs.add("reading %s (content at offset %d, size %d): %v", hdr.Name, e.Offset, hdr.Size, err)
			return c, probs, nil
		}
		files[hdr.Name] = info
		entriesEnd = e.Offset + hdr.Size + (512-hdr.Size%512)%512
	}
	// archive/tar reports a clean io.EOF both after the two zero blocks and
	// at a bare end of file, so check the end-of-archive blocks by offset.
	if len(c.Entries) == 0 {
		probs.add("the tar has no entries")
		return c, probs, nil
	}
	if want := entriesEnd + 1024; cr.n < want {
		probs.add("missing end-of-archive: the tar ends at %d, want two zero blocks up to %d", cr.n, want)
	} else if c.Size != cr.n {
		probs.add("%d bytes after the end-of-archive blocks (tar ends at %d, file is %d bytes)", c.Size-cr.n, cr.n, c.Size)
	}

	checkNames(&probs, files)
	checkLayout(&probs, tarPath, files, &c)
	return c, probs, nil
}

func checkHeader(probs *problems, hdr *tar.Header, mtime **time.Time) {
	if hdr.Typeflag != tar.TypeReg {
		probs.add("%s: type %q, want a regular file (%q)", hdr.Name, hdr.Typeflag, tar.TypeReg)
	}
	if hdr.Mode != 0o644 {
		probs.add("%s: mode %#o, want 0644", hdr.Name, hdr.Mode)
	}
	if hdr.Uid != 0 || hdr.Gid != 0 {
		probs.add("%s: uid/gid %d/%d, want 0/0", hdr.Name, hdr.Uid, hdr.Gid)
	}
	// The design makes every header a pure function of digest and size, so
	// all entries share one mtime.
	if *mtime == nil {
		m := hdr.ModTime
		*mtime = &m
	} else if !hdr.ModTime.Equal(**mtime) {
		probs.add("%s: mtime %s differs from the first entry's %s", hdr.Name, hdr.ModTime.UTC().Format(time.RFC3339), (*mtime).UTC().Format(time.RFC3339))
	}
}

// hashEntry streams one file's content through sha256, keeping it in
// memory only when it is small enough to be a manifest, config or JSON file.
func hashEntry(tr *tar.Reader, hdr *tar.Header) (*blobInfo, error) {
	h := sha256.New()
	var kept bytes.Buffer
	keep := hdr.Size <= metadataLimit && (hdr.Size <= keepLimit || !strings.HasPrefix(hdr.Name, "blobs/"))
	w := io.Writer(h)
	if keep {
		w = io.MultiWriter(h, &kept)
	}
	n, err := io.Copy(w, tr)
	if err != nil {
		return nil, err
	}
	if n != hdr.Size {
		return nil, fmt.Errorf("read %d bytes, header says %d", n, hdr.Size)
	}
	info := &blobInfo{size: n, digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}
	if keep {
		info.content = append([]byte{}, kept.Bytes()...)
	}
	return info, nil
}

func checkNames(probs *problems, files map[string]*blobInfo) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		switch {
		case n == "oci-layout", n == "index.json", n == "manifest.json":
		case blobNameRE.MatchString(n):
			if got := files[n].digest; got != "" && got != "sha256:"+strings.TrimPrefix(n, "blobs/sha256/") {
				probs.add("%s: content hashes to %s", n, got)
			}
		default:
			probs.add("unexpected entry %q (only oci-layout, index.json, manifest.json and blobs/sha256/<64 hex> belong in the tar)", n)
		}
	}
	for _, n := range []string{"oci-layout", "index.json", "manifest.json"} {
		if _, ok := files[n]; !ok {
			probs.add("missing %s", n)
		}
	}
}

// JSON shapes, reduced to the fields checked.
type (
	jsonDescriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
		Platform    *struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant,omitempty"`
		} `json:"platform,omitempty"`
	}
	jsonIndex struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Manifests     []jsonDescriptor `json:"manifests"`
	}
	jsonManifest struct {
		SchemaVersion int              `json:"schemaVersion"`
		MediaType     string           `json:"mediaType"`
		Config        jsonDescriptor   `json:"config"`
		Layers        []jsonDescriptor `json:"layers"`
	}
	jsonDockerManifest struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	jsonConfig struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
		RootFS       struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
)

func blobName(digest string) string { return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:") }

// checkLayout checks the three metadata files and the blobs they reference.
func checkLayout(probs *problems, tarPath string, files map[string]*blobInfo, c *Contents) {
	// content returns a file's bytes, re-reading the tar for a blob that
	// was too big to keep on the first pass.
	content := func(name string) ([]byte, bool) {
		info := files[name]
		if info == nil {
			return nil, false
		}
		if info.content != nil {
			return info.content, true
		}
		if info.size > metadataLimit {
			probs.add("%s: %d bytes, too big for a manifest or config (limit %d)", name, info.size, metadataLimit)
			return nil, false
		}
		b, err := readEntry(tarPath, name)
		if err != nil {
			probs.add("re-reading %s: %v", name, err)
			return nil, false
		}
		return b, true
	}
	referenced := map[string]bool{}
	// blob checks that a descriptor's blob is in the tar with its size.
	blob := func(what string, d jsonDescriptor) bool {
		if !digestRE.MatchString(d.Digest) {
			probs.add("%s: digest %q is not sha256:<64 lowercase hex>", what, d.Digest)
			return false
		}
		n := blobName(d.Digest)
		referenced[n] = true
		info := files[n]
		if info == nil {
			probs.add("%s: blob %s is not in the tar", what, n)
			return false
		}
		if info.size != d.Size {
			probs.add("%s: descriptor size %d, blob %s has %d bytes", what, d.Size, n, info.size)
		}
		return true
	}

	if b, ok := content("oci-layout"); ok {
		var layout map[string]any
		if err := json.Unmarshal(b, &layout); err != nil || len(layout) != 1 || layout["imageLayoutVersion"] != "1.0.0" {
			probs.add(`oci-layout is %q, want {"imageLayoutVersion":"1.0.0"}`, b)
		}
	}

	var dm jsonDockerManifest
	if b, ok := content("manifest.json"); ok {
		var all []jsonDockerManifest
		if err := json.Unmarshal(b, &all); err != nil {
			probs.add("manifest.json: %v", err)
		} else if len(all) != 1 {
			probs.add("manifest.json has %d entries, want 1", len(all))
		} else {
			dm = all[0]
			c.RepoTags = dm.RepoTags
			for _, tag := range dm.RepoTags {
				if _, err := name.NewTag(tag); err != nil || !hasExplicitTag(tag) {
					probs.add("manifest.json: RepoTags entry %q is not name:tag (%v)", tag, err)
				}
			}
		}
	}

	var index jsonIndex
	b, ok := content("index.json")
	if !ok {
		return
	}
	if err := json.Unmarshal(b, &index); err != nil {
		probs.add("index.json: %v", err)
		return
	}
	if index.SchemaVersion != 2 {
		probs.add("index.json: schemaVersion %d, want 2", index.SchemaVersion)
	}
	if index.MediaType != "" && index.MediaType != mediaTypeOCIIndex {
		probs.add("index.json: mediaType %q, want %q", index.MediaType, mediaTypeOCIIndex)
	}
	if len(index.Manifests) == 0 {
		probs.add("index.json lists no manifest")
		return
	}
	desc := index.Manifests[0]
	checkIndexNames(probs, index.Manifests, dm.RepoTags)
	c.ImageName = desc.Annotations[annotationImageName]
	c.RefName = desc.Annotations[annotationRefName]
	c.ManifestDigest = desc.Digest
	c.ManifestMediaType = desc.MediaType
	if desc.MediaType != mediaTypeOCIManifest && desc.MediaType != mediaTypeDockerManifest {
		probs.add("index.json: manifest descriptor mediaType %q, want an image manifest (%s or %s)", desc.MediaType, mediaTypeOCIManifest, mediaTypeDockerManifest)
	}
	if !blob("index.json manifests[0]", desc) {
		return
	}
	mb, ok := content(blobName(desc.Digest))
	if !ok {
		return
	}
	var m jsonManifest
	if err := json.Unmarshal(mb, &m); err != nil {
		probs.add("manifest %s: %v", desc.Digest, err)
		return
	}
	if m.SchemaVersion != 2 {
		probs.add("manifest %s: schemaVersion %d, want 2", desc.Digest, m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != desc.MediaType {
		probs.add("manifest %s: mediaType %q, index.json says %q", desc.Digest, m.MediaType, desc.MediaType)
	}

	// Config.
	c.ConfigDigest = m.Config.Digest
	if m.Config.MediaType != mediaTypeOCIConfig && m.Config.MediaType != mediaTypeDockerConfig {
		probs.add("manifest config mediaType %q, want %s or %s", m.Config.MediaType, mediaTypeOCIConfig, mediaTypeDockerConfig)
	}
	if dm.Config != blobName(m.Config.Digest) {
		probs.add("manifest.json Config is %q, the manifest's config is %s", dm.Config, blobName(m.Config.Digest))
	}
	var cfg jsonConfig
	if blob("manifest config", m.Config) {
		if cb, ok := content(blobName(m.Config.Digest)); ok {
			if err := json.Unmarshal(cb, &cfg); err != nil {
				probs.add("config %s: %v", m.Config.Digest, err)
			}
		}
	}
	c.Platform = Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	c.DiffIDs = cfg.RootFS.DiffIDs
	if cfg.OS == "" || cfg.Architecture == "" {
		probs.add("config %s: os %q / architecture %q, want both set", m.Config.Digest, cfg.OS, cfg.Architecture)
	}
	if p := desc.Platform; p != nil && (p.OS != cfg.OS || p.Architecture != cfg.Architecture || p.Variant != cfg.Variant) {
		probs.add("index.json platform %s/%s/%s differs from the config's %s", p.OS, p.Architecture, p.Variant, c.Platform)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		probs.add("config has %d rootfs.diff_ids for %d layers", len(cfg.RootFS.DiffIDs), len(m.Layers))
	}

	// Layers, in manifest order, against manifest.json.
	if len(m.Layers) != len(dm.Layers) {
		probs.add("manifest lists %d layers, manifest.json %d", len(m.Layers), len(dm.Layers))
	}
	for i, l := range m.Layers {
		c.Layers = append(c.Layers, Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
		what := fmt.Sprintf("manifest layers[%d]", i)
		if !layerMediaTypes[l.MediaType] {
			probs.add("%s: unknown layer mediaType %q", what, l.MediaType)
		}
		blob(what, l)
		if i < len(dm.Layers) && dm.Layers[i] != blobName(l.Digest) {
			probs.add("manifest.json Layers[%d] is %q, the manifest's layer is %s", i, dm.Layers[i], blobName(l.Digest))
		}
	}

	for n := range files {
		if blobNameRE.MatchString(n) && !referenced[n] {
			probs.add("%s is not referenced by the manifest", n)
		}
	}
}

// checkIndexNames checks the naming annotations against manifest.json: each
// index entry names one RepoTag. podman names the loaded image from
// io.containerd.image.name (and drops the tag if it carries @sha256:),
// containerd from the same annotation, Docker's classic store from RepoTags.
func checkIndexNames(probs *problems, descs []jsonDescriptor, repoTags []string) {
	want := map[string]bool{}
	for _, rt := range repoTags {
		if tag, err := name.NewTag(rt); err == nil {
			want[tag.Name()] = true
		}
	}
	got := map[string]bool{}
	for i, d := range descs {
		if d.Digest != descs[0].Digest {
			probs.add("index.json manifests[%d] points at %s, manifests[0] at %s: the tar holds one image", i, d.Digest, descs[0].Digest)
		}
		img, ref := d.Annotations[annotationImageName], d.Annotations[annotationRefName]
		if img == "" && ref == "" && len(repoTags) == 0 {
			continue // an untagged image: nothing to name
		}
		if img == "" || ref == "" {
			probs.add("index.json manifests[%d]: annotations %s=%q and %s=%q, want both set", i, annotationImageName, img, annotationRefName, ref)
			continue
		}
		if strings.Contains(img, "@") {
			probs.add("index.json manifests[%d]: %s=%q has a digest; podman then drops the tag: write plain name:tag", i, annotationImageName, img)
			continue
		}
		tag, err := name.NewTag(img, name.StrictValidation)
		if err != nil {
			probs.add("index.json manifests[%d]: %s=%q is not a full name:tag: %v", i, annotationImageName, img, err)
			continue
		}
		if ref != tag.TagStr() {
			probs.add("index.json manifests[%d]: %s=%q, want the tag of %s (%q)", i, annotationRefName, ref, img, tag.TagStr())
		}
		got[tag.Name()] = true
	}
	for n := range want {
		if !got[n] {
			probs.add("manifest.json RepoTags names %s, index.json does not", n)
		}
	}
	for n := range got {
		if !want[n] {
			probs.add("index.json names %s, manifest.json RepoTags does not", n)
		}
	}
}

// hasExplicitTag reports whether a reference spells out its tag.
func hasExplicitTag(ref string) bool {
	return strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":")
}

// readEntry returns the content of one named file of the tar.
func readEntry(tarPath, name string) ([]byte, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return nil, err
		}
		if hdr.Name == name {
			return io.ReadAll(io.LimitReader(tr, metadataLimit))
		}
	}
}
