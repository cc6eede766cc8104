package dirstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/download/objectstest"
	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// tarFixture is the object stores' shared tar fixture: a planned tar,
// its blobs and the bytes it must have.
type tarFixture = objectstest.Fixture

func randomBytes(seed uint64, n int) []byte { return objectstest.RandomBytes(seed, n) }

// fixture plans a small image: two stored layers (over
// tarplan.BigEntryMin), three tail layers (one empty), one layer listed
// twice, with real content.
func fixture(t *testing.T) tarFixture {
	t.Helper()
	f := objectstest.Tar(t, 1, 5<<20+1, 6<<20+123, 3000, 100, 0)
	if f.Layout.Stored != 2 {
		t.Fatalf("fixture plans %d stored entries, want 2", f.Layout.Stored)
	}
	return f
}

// storeEntries puts every fetched blob's entry under entryKey, as the
// workers do.
func storeEntries(t *testing.T, s *Store, f tarFixture) { objectstest.StoreEntries(t, s, f, entryKey) }

const tarKey = "tars/job-1.tar"

// stitched returns a store holding the fixture's entries and its tar
// stitched under tarKey with the given part limits.
func stitched(t *testing.T, lim tarplan.Limits) (*Store, string, tarFixture, []tarplan.Part) {
	t.Helper()
	f := fixture(t)
	s, dir := openStore(t)
	storeEntries(t, s, f)
	parts, err := tarplan.Parts(f.Layout, lim)
	if err != nil {
		t.Fatalf("Parts: %v", err)
	}
	var tail objectstest.TailCalls
	if err := s.Stitch(context.Background(), tarKey, parts, entryKey, tail.From(f.Tail())); err != nil {
		t.Fatalf("Stitch: %v", err)
	}
	if calls, want := tail.All(), (objectstest.TailCall{Offset: 0, Size: int64(len(f.Tail()))}); len(calls) != 1 || calls[0] != want {
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
			if n, err := s.Size(ctx, tarKey); err != nil || n != f.Layout.Size {
				t.Fatalf("Size = %d, %v; want %d", n, err, f.Layout.Size)
			}
			got := readAll(t, s, tarKey)
			if !bytes.Equal(got, f.Want) {
				t.Fatalf("stitched tar differs from the expected bytes at offset %d (got %d bytes, want %d)", firstDiff(got, f.Want), len(got), len(f.Want))
			}
			objectstest.CheckTar(t, got, f)
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
		wantN := min(n, f.Layout.Size-off)
		if int64(got) != wantN {
			t.Fatalf("ReadAt(%d bytes at %d) = %d bytes, %v; want %d", n, off, got, err, wantN)
		}
		if wantN < n && err != io.EOF {
			t.Fatalf("ReadAt past the end: err %v, want io.EOF", err)
		}
		if wantN == n && err != nil {
			t.Fatalf("ReadAt(%d bytes at %d): %v", n, off, err)
		}
		if !bytes.Equal(b[:got], f.Want[off:off+wantN]) {
			t.Fatalf("ReadAt(%d bytes at %d): wrong bytes from %d", n, off, off+int64(firstDiff(b[:got], f.Want[off:off+wantN])))
		}
	}
	for _, p := range parts[1:] {
		check(p.Offset-3, 7)
		check(p.Offset, 1)
		check(p.Offset-1, 1)
	}
	check(0, f.Layout.Size)
	check(1, f.Layout.Size-2)
	check(f.Layout.Size-5, 100) // runs off the end
	if n, err := obj.ReadAt(make([]byte, 1), f.Layout.Size); n != 0 || err != io.EOF {
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
				e := f.Layout.Entries[0]
				short := f.Want[e.Offset : e.Offset+e.Len()-1]
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
					return io.NopCloser(bytes.NewReader(f.Tail()[:10])), nil
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
			parts, err := tarplan.Parts(f.Layout, tarplan.S3Limits)
			if err != nil {
				t.Fatal(err)
			}
			var calls objectstest.TailCalls
			tail := calls.From(f.Tail())
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
	for _, e := range f.Layout.Entries {
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
	if err := s.Delete(ctx, entryKey(f.Layout.Entries[0].Digest)); err != nil {
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
