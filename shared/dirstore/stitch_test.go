package dirstore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// tarFixture is a planned tar, its blobs, and the bytes it must have.
type tarFixture struct {
	layout tarplan.Layout
	blobs  map[digest.Digest][]byte
	want   []byte // the whole tar, built independently of the store
}

// tail is the tar's tail: small entries, metadata, end of archive.
func (f tarFixture) tail() []byte { return f.want[f.layout.TailOffset:] }

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// newTarFixture plans a small image: two stored layers (over
// tarplan.BigEntryMin), three tail layers (one empty), one layer listed
// twice, with real content.
var newTarFixture = sync.OnceValues(func() (tarFixture, error) {
	sizes := []int{5<<20 + 1, 6<<20 + 123, 3000, 100, 0}
	f := tarFixture{blobs: map[digest.Digest][]byte{}}
	var layers []tarplan.Blob
	for i, n := range sizes {
		b := randomBytes(uint64(i+1), n)
		d := digest.FromBytes(b)
		f.blobs[d] = b
		layers = append(layers, tarplan.Blob{Digest: d, Size: int64(n), MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"})
	}
	layers = append(layers, layers[3]) // a layer listed twice is stored once
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}`)
	img := tarplan.Image{
		Name:              "docker.io/library/fixture",
		RepoTags:          []string{"fixture:1"},
		RefName:           "1",
		Manifest:          []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`),
		ManifestMediaType: "application/vnd.oci.image.manifest.v1+json",
		Config:            config,
		ConfigDigest:      digest.FromBytes(config),
		Layers:            layers,
	}
	l, err := tarplan.Plan(img)
	if err != nil {
		return tarFixture{}, err
	}
	if l.Stored != 2 {
		return tarFixture{}, fmt.Errorf("fixture plans %d stored entries, want 2", l.Stored)
	}
	f.layout = l
	for _, e := range l.Entries {
		if int64(len(f.want)) != e.Offset {
			return tarFixture{}, fmt.Errorf("entry %s at %d, want %d", e.Name, e.Offset, len(f.want))
		}
		content := e.Inline
		if e.Fetched() {
			content = f.blobs[e.Digest]
		}
		f.want = append(f.want, e.Header...)
		f.want = append(f.want, content...)
		f.want = append(f.want, tarplan.Padding(e.Size)...)
	}
	f.want = append(f.want, make([]byte, 1024)...)
	if int64(len(f.want)) != l.Size {
		return tarFixture{}, fmt.Errorf("fixture is %d bytes, layout says %d", len(f.want), l.Size)
	}
	return f, nil
})

func fixture(t *testing.T) tarFixture {
	t.Helper()
	f, err := newTarFixture()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// storeEntries puts every fetched blob's entry (header, blob, padding)
// under entryKey, as the assemble workers do.
func storeEntries(t *testing.T, s *Store, f tarFixture) {
	t.Helper()
	for _, e := range f.layout.Entries {
		if !e.Fetched() {
			continue
		}
		entry := f.want[e.Offset : e.Offset+e.Len()]
		if err := s.Put(context.Background(), entryKey(e.Digest), bytes.NewReader(entry), e.Len()); err != nil {
			t.Fatalf("storing entry %s: %v", e.Digest, err)
		}
	}
}

// tailCall records one call of a TailFunc.
type tailCall struct{ offset, size int64 }

// tailFrom serves tail bytes from memory and records the calls.
func tailFrom(tail []byte, calls *[]tailCall) download.TailFunc {
	var mu sync.Mutex
	return func(_ context.Context, offset, size int64) (io.ReadCloser, error) {
		mu.Lock()
		*calls = append(*calls, tailCall{offset, size})
		mu.Unlock()
		if offset < 0 || size < 0 || offset+size > int64(len(tail)) {
			return nil, fmt.Errorf("tail range %d+%d outside %d bytes", offset, size, len(tail))
		}
		return io.NopCloser(bytes.NewReader(tail[offset : offset+size])), nil
	}
}

const tarKey = "tars/job-1.tar"

// stitched returns a store holding the fixture's entries and its tar
// stitched under tarKey with the given part limits.
func stitched(t *testing.T, lim tarplan.Limits) (*Store, string, tarFixture, []tarplan.Part) {
	t.Helper()
	f := fixture(t)
	s, dir := openStore(t)
	storeEntries(t, s, f)
	parts, err := tarplan.Parts(f.layout, lim)
	if err != nil {
		t.Fatalf("Parts: %v", err)
	}
	var calls []tailCall
	if err := s.Stitch(context.Background(), tarKey, parts, entryKey, tailFrom(f.tail(), &calls)); err != nil {
		t.Fatalf("Stitch: %v", err)
	}
	if want := []tailCall{{0, int64(len(f.tail()))}}; len(calls) != 1 || calls[0] != want[0] {
		t.Fatalf("tail calls = %v, want %v (the whole tail once)", calls, want)
	}
	return s, dir, f, parts
}

var stitchLimits = []struct {
	name string
	lim  tarplan.Limits
}{
	{"s3", tarplan.S3Limits},
	{"2MiB parts", tarplan.Limits{MinPart: 1 << 20, MaxPart: 2 << 20, MaxParts: 10_000}},
	{"2KiB parts", tarplan.Limits{MinPart: 1 << 10, MaxPart: 2 << 10, MaxParts: 10_000}},
}

func TestStitchGet(t *testing.T) {
	t.Parallel()
	for _, tt := range stitchLimits {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, _, f, parts := stitched(t, tt.lim)
			if len(parts) < 2 {
				t.Fatalf("only %d parts: the fixture does not exercise copy parts", len(parts))
			}
			if n, err := s.Size(ctx, tarKey); err != nil || n != f.layout.Size {
				t.Fatalf("Size = %d, %v; want %d", n, err, f.layout.Size)
			}
			got := readAll(t, s, tarKey)
			if !bytes.Equal(got, f.want) {
				t.Fatalf("stitched tar differs from the expected bytes at offset %d (got %d bytes, want %d)", firstDiff(got, f.want), len(got), len(f.want))
			}
			checkTar(t, got, f)
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// checkTar reads the tar with archive/tar, an independent reader: every
// blob is there once with its content.
func checkTar(t *testing.T, b []byte, f tarFixture) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(b))
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("archive/tar: %v", err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("archive/tar reading %s: %v", h.Name, err)
		}
		if seen[h.Name] {
			t.Errorf("%s twice in the tar", h.Name)
		}
		seen[h.Name] = true
		for d, blob := range f.blobs {
			if h.Name == tarplan.BlobName(d) && !bytes.Equal(content, blob) {
				t.Errorf("%s: content differs from its blob", h.Name)
			}
		}
	}
	for d := range f.blobs {
		if !seen[tarplan.BlobName(d)] {
			t.Errorf("blob %s missing from the tar", d)
		}
	}
	for _, name := range []string{"oci-layout", "index.json", "manifest.json"} {
		if !seen[name] {
			t.Errorf("%s missing from the tar", name)
		}
	}
}

// TestStitchReadAt reads the stitched object at awkward offsets: across
// every part boundary, and in one read spanning many segments.
func TestStitchReadAt(t *testing.T) {
	t.Parallel()
	s, _, f, parts := stitched(t, stitchLimits[1].lim)
	obj, err := s.open(tarKey)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	check := func(off, n int64) {
		t.Helper()
		b := make([]byte, n)
		got, err := obj.ReadAt(b, off)
		wantN := min(n, f.layout.Size-off)
		if int64(got) != wantN {
			t.Fatalf("ReadAt(%d bytes at %d) = %d bytes, %v; want %d", n, off, got, err, wantN)
		}
		if wantN < n && err != io.EOF {
			t.Fatalf("ReadAt past the end: err %v, want io.EOF", err)
		}
		if wantN == n && err != nil {
			t.Fatalf("ReadAt(%d bytes at %d): %v", n, off, err)
		}
		if !bytes.Equal(b[:got], f.want[off:off+wantN]) {
			t.Fatalf("ReadAt(%d bytes at %d): wrong bytes from %d", n, off, off+int64(firstDiff(b[:got], f.want[off:off+wantN])))
		}
	}
	for _, p := range parts[1:] {
		check(p.Offset-3, 7)
		check(p.Offset, 1)
		check(p.Offset-1, 1)
	}
	check(0, f.layout.Size)
	check(1, f.layout.Size-2)
	check(f.layout.Size-5, 100) // runs off the end
	if n, err := obj.ReadAt(make([]byte, 1), f.layout.Size); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt at the end = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestStitchFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, s *Store, f tarFixture)
		tail    func(f tarFixture) download.TailFunc
	}{
		{
			name:    "entry missing",
			prepare: func(*testing.T, *Store, tarFixture) {},
		},
		{
			name: "entry shorter than its part",
			prepare: func(t *testing.T, s *Store, f tarFixture) {
				storeEntries(t, s, f)
				e := f.layout.Entries[0]
				short := f.want[e.Offset : e.Offset+e.Len()-1]
				if err := s.Put(context.Background(), entryKey(e.Digest), bytes.NewReader(short), int64(len(short))); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:    "tail fails",
			prepare: storeEntries,
			tail: func(tarFixture) download.TailFunc {
				return func(context.Context, int64, int64) (io.ReadCloser, error) { return nil, errBroken }
			},
		},
		{
			name:    "tail breaks mid-way",
			prepare: storeEntries,
			tail: func(tarFixture) download.TailFunc {
				return func(context.Context, int64, int64) (io.ReadCloser, error) {
					return io.NopCloser(&failingReader{n: 100, err: errBroken}), nil
				}
			},
		},
		{
			name:    "tail too short",
			prepare: storeEntries,
			tail: func(f tarFixture) download.TailFunc {
				return func(context.Context, int64, int64) (io.ReadCloser, error) {
					return io.NopCloser(bytes.NewReader(f.tail()[:10])), nil
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := fixture(t)
			s, dir := openStore(t)
			tt.prepare(t, s, f)
			parts, err := tarplan.Parts(f.layout, tarplan.S3Limits)
			if err != nil {
				t.Fatal(err)
			}
			var calls []tailCall
			tail := tailFrom(f.tail(), &calls)
			if tt.tail != nil {
				tail = tt.tail(f)
			}
			if err := s.Stitch(context.Background(), tarKey, parts, entryKey, tail); err == nil {
				t.Fatal("Stitch succeeded, want an error")
			}
			// Nothing unverified is published.
			assertAbsent(t, s, tarKey)
			if _, err := os.Stat(filepath.Join(dir, "objects", "tars", "job-1.tar.recipe")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("recipe written by a failed Stitch (stat err %v)", err)
			}
			if left := tmpFiles(t, dir); len(left) != 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
		})
	}
}

func TestDeleteStitched(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, dir, f, _ := stitched(t, tarplan.S3Limits)
	base := filepath.Join(dir, "objects", "tars", "job-1.tar")
	for _, suffix := range []string{".recipe", ".tail"} {
		if _, err := os.Stat(base + suffix); err != nil {
			t.Fatalf("after Stitch: %v", err)
		}
	}
	if err := s.Delete(ctx, tarKey); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for _, suffix := range []string{"", ".recipe", ".tail"} {
		if _, err := os.Stat(base + suffix); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after Delete (stat err %v)", filepath.Base(base+suffix), err)
		}
	}
	assertAbsent(t, s, tarKey)
	// Entries are shared with other tars: only the collector deletes them.
	for _, e := range f.layout.Entries {
		if e.Fetched() {
			if n, err := s.Size(ctx, entryKey(e.Digest)); err != nil || n != e.Len() {
				t.Errorf("entry %s after Delete: size %d, %v; want %d", e.Digest, n, err, e.Len())
			}
		}
	}
}

// TestStitchedObjectLosesEntry: once the collector removed an entry, the
// tar is gone, not silently short.
func TestStitchedObjectLosesEntry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _, f, _ := stitched(t, tarplan.S3Limits)
	if err := s.Delete(ctx, entryKey(f.layout.Entries[0].Digest)); err != nil {
		t.Fatal(err)
	}
	if rc, err := s.Get(ctx, tarKey); err == nil {
		rc.Close()
		t.Fatal("Get of a tar whose entry is gone succeeded")
	}
}

// testOrigin is the origin the tests' entries and metadata came from.
var testOrigin = tarport.RegistryOrigin("registry.test:5000")

// entryKey is where the workers store an entry of testOrigin.
func entryKey(d digest.Digest) string { return download.EntryKey(testOrigin, d) }
