// Package objectstest holds the behaviour every object store
// (download.Objects) must have, as one suite each implementation's tests
// run against a real store (dirstore on a directory; s3store on versitygw
// and moto), and the tar fixture their own stitch tests share: a planned
// tar with its blobs and the bytes it must have, built independently of
// any store, and an independent check of the result with archive/tar.
package objectstest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// Open returns a fresh, empty store.
type Open func(t *testing.T) download.Objects

// Run runs the suite as parallel subtests of t.
func Run(t *testing.T, open Open) {
	for _, c := range []struct {
		name string
		run  func(*testing.T, download.Objects)
	}{
		{"PutGetSize", putGetSize},
		{"PutReplaces", putReplaces},
		{"PutWrongLength", putWrongLength},
		{"PutFailedReader", putFailedReader},
		{"PutCanceled", putCanceled},
		{"Missing", missing},
		{"Stitch", stitch},
		{"StitchMissingEntry", stitchMissingEntry},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, open(t))
		})
	}
}

// RandomBytes is n bytes of content from seed.
func RandomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// ReadAll is the whole of object key, or the test's end.
func ReadAll(t testing.TB, s download.Objects, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return b
}

// absent checks key is not there, to Size and to Get.
func absent(t *testing.T, s download.Objects, key, why string) {
	t.Helper()
	if n, err := s.Size(context.Background(), key); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Errorf("%s: Size(%s) = %d, %v; want not_found", why, key, n, err)
	}
	if rc, err := s.Get(context.Background(), key); tarport.ErrorCode(err) != tarport.CodeNotFound {
		if err == nil {
			rc.Close()
		}
		t.Errorf("%s: Get(%s): %v; want not_found", why, key, err)
	}
}

func putGetSize(t *testing.T, s download.Objects) {
	ctx := context.Background()
	for _, n := range []int{0, 1, 4096, 6<<20 + 7} {
		key := fmt.Sprintf("entries/registry.example/sha256/%064d", n)
		want := RandomBytes(uint64(n), n)
		if err := s.Put(ctx, key, bytes.NewReader(want), int64(n)); err != nil {
			t.Fatalf("Put(%d bytes): %v", n, err)
		}
		if got, err := s.Size(ctx, key); err != nil || got != int64(n) {
			t.Fatalf("Size = %d, %v; want %d", got, err, n)
		}
		if got := ReadAll(t, s, key); !bytes.Equal(got, want) {
			t.Fatalf("Get returned %d bytes, not the %d put", len(got), n)
		}
		checkWriteTo(t, s, key, want)
		checkRanges(t, s, key, want)
	}
}

// checkRanges: a store that reads ranges (download.RangedObjects) gives
// exactly the bytes asked for, refuses a range past the end or from it,
// and says not_found for a missing key.
func checkRanges(t *testing.T, s download.Objects, key string, want []byte) {
	t.Helper()
	ro, ok := s.(download.RangedObjects)
	if !ok || len(want) == 0 {
		return
	}
	n := int64(len(want))
	for _, r := range [][2]int64{{0, n}, {0, 1}, {n - 1, 1}, {n / 3, n / 2}} {
		if r[1] <= 0 {
			continue
		}
		rc, err := ro.GetRange(context.Background(), key, r[0], r[1])
		if err != nil {
			t.Fatalf("GetRange(%d, %d) of %d bytes: %v", r[0], r[1], n, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want[r[0]:r[0]+r[1]]) {
			t.Fatalf("GetRange(%d, %d): %d bytes, %v", r[0], r[1], len(got), err)
		}
	}
	if rc, err := ro.GetRange(context.Background(), key, n-1, 2); err == nil {
		got, _ := io.ReadAll(rc)
		rc.Close()
		if len(got) == 2 {
			t.Fatalf("GetRange past the end gave %d bytes", len(got))
		}
		t.Fatalf("GetRange(%d, 2) of %d bytes: no error (%d bytes)", n-1, n, len(got))
	}
	if rc, err := ro.GetRange(context.Background(), key, n, 1); err == nil {
		rc.Close()
		t.Fatalf("GetRange(%d, 1) of %d bytes (from the end): no error", n, n)
	}
	if _, err := ro.GetRange(context.Background(), key+"-missing", 0, 1); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Fatalf("GetRange of a missing key: %v, want not_found", err)
	}
}

// checkWriteTo: a reader that writes itself (io.WriterTo, a store's fast
// path to a connection) writes the rest of the object after a first Read.
func checkWriteTo(t *testing.T, s download.Objects, key string, want []byte) {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	wt, ok := rc.(io.WriterTo)
	if !ok {
		return
	}
	head := make([]byte, min(len(want), 1000))
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatalf("reading the first %d bytes: %v", len(head), err)
	}
	var rest bytes.Buffer
	if n, err := wt.WriteTo(&rest); err != nil || n != int64(rest.Len()) {
		t.Fatalf("WriteTo: %d, %v (wrote %d)", n, err, rest.Len())
	}
	if got := append(head, rest.Bytes()...); !bytes.Equal(got, want) {
		t.Fatalf("Read then WriteTo gave %d bytes, not the %d put", len(got), len(want))
	}
}

func putReplaces(t *testing.T, s download.Objects) {
	ctx := context.Background()
	const key = "meta/registry.example/sha256/x"
	for i, body := range [][]byte{[]byte("first"), []byte("second, longer")} {
		if err := s.Put(ctx, key, bytes.NewReader(body), int64(len(body))); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	if got := ReadAll(t, s, key); string(got) != "second, longer" {
		t.Fatalf("after two Puts: %q", got)
	}
}

// putWrongLength: a body shorter or longer than its size is refused and
// leaves no object (an entry's length is its tar layout).
func putWrongLength(t *testing.T, s download.Objects) {
	ctx := context.Background()
	body := RandomBytes(7, 1000)
	for _, size := range []int64{999, 1001} {
		key := fmt.Sprintf("entries/x/sha256/%d", size)
		if err := s.Put(ctx, key, bytes.NewReader(body), size); err == nil {
			t.Errorf("Put of 1000 bytes as %d succeeded", size)
		}
		absent(t, s, key, fmt.Sprintf("1000 bytes put as %d", size))
	}
}

// putFailedReader: a body that fails (a registry stream whose digest did
// not match ends in an error) leaves no object, and an object already
// there untouched.
func putFailedReader(t *testing.T, s download.Objects) {
	ctx := context.Background()
	broken := errors.New("digest mismatch")
	body := RandomBytes(8, 6<<20)
	failing := func() io.Reader { return io.MultiReader(bytes.NewReader(body[:5<<20]), iotest.ErrReader(broken)) }
	if err := s.Put(ctx, "entries/x/sha256/new", failing(), int64(len(body))); err == nil {
		t.Fatal("Put of a failing body succeeded")
	}
	absent(t, s, "entries/x/sha256/new", "a failed Put")
	old := []byte("the verified entry")
	if err := s.Put(ctx, "entries/x/sha256/old", bytes.NewReader(old), int64(len(old))); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "entries/x/sha256/old", failing(), int64(len(body))); err == nil {
		t.Fatal("Put of a failing body over an object succeeded")
	}
	if got := ReadAll(t, s, "entries/x/sha256/old"); !bytes.Equal(got, old) {
		t.Fatalf("a failed Put changed the object to %d bytes", len(got))
	}
}

// putCanceled: a Put whose context ends leaves no object.
func putCanceled(t *testing.T, s download.Objects) {
	ctx, cancel := context.WithCancel(context.Background())
	body := RandomBytes(9, 6<<20)
	r := io.MultiReader(bytes.NewReader(body[:1<<20]), readerFunc(func(b []byte) (int, error) {
		cancel()
		return 0, context.Canceled
	}), bytes.NewReader(body[1<<20:]))
	if err := s.Put(ctx, "entries/x/sha256/canceled", r, int64(len(body))); err == nil {
		t.Fatal("a canceled Put succeeded")
	}
	absent(t, s, "entries/x/sha256/canceled", "a canceled Put")
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

func missing(t *testing.T, s download.Objects) {
	absent(t, s, "entries/x/sha256/never", "never put")
}

func stitch(t *testing.T, s download.Objects) {
	ctx := context.Background()
	f := Tar(t, 1, 5<<20+1, 6<<20+123, 3000, 100, 0)
	StoreEntries(t, s, f, EntryKey)
	const key = "tars/suite.tar"
	var calls TailCalls
	if err := s.Stitch(ctx, key, f.Parts, EntryKey, calls.From(f.Tail())); err != nil {
		t.Fatalf("Stitch: %v", err)
	}
	if n, err := s.Size(ctx, key); err != nil || n != f.Layout.Size {
		t.Fatalf("Size = %d, %v; want %d", n, err, f.Layout.Size)
	}
	got := ReadAll(t, s, key)
	if !bytes.Equal(got, f.Want) {
		t.Fatalf("stitched tar differs from the planned one (%d bytes, want %d)", len(got), len(f.Want))
	}
	CheckTar(t, got, f)
	// The entries stay for the next tar.
	for _, e := range f.Layout.Entries[:f.Layout.Stored] {
		if n, err := s.Size(ctx, EntryKey(e.Digest)); err != nil || n != e.Len() {
			t.Errorf("entry %s after the stitch: %d, %v", e.Digest, n, err)
		}
	}
}

// stitchMissingEntry: a stitch whose entry is gone fails and leaves no tar.
func stitchMissingEntry(t *testing.T, s download.Objects) {
	f := Tar(t, 2, 5<<20+1, 6<<20+123, 3000, 100, 0)
	StoreEntries(t, s, f, EntryKey)
	missing := func(d digest.Digest) string {
		if d == f.Layout.Entries[1].Digest {
			return "entries/x/sha256/gone"
		}
		return EntryKey(d)
	}
	var calls TailCalls
	if err := s.Stitch(context.Background(), "tars/broken.tar", f.Parts, missing, calls.From(f.Tail())); err == nil {
		t.Fatal("Stitch with an entry missing succeeded")
	}
	absent(t, s, "tars/broken.tar", "a failed stitch")
}

// Origin is the origin of the fixture's entries.
var Origin = tarport.RegistryOrigin("registry.example")

// EntryKey is where the workers store an entry of Origin.
func EntryKey(d digest.Digest) string { return download.EntryKey(Origin, d) }

// Fixture is a planned tar, its blobs, and the bytes it must have.
type Fixture struct {
	Layout tarplan.Layout
	Parts  []tarplan.Part // under S3's limits
	Blobs  map[digest.Digest][]byte
	Want   []byte // the whole tar, built independently of any store
}

// Tail is the tar's tail: small entries, metadata, end of archive.
func (f Fixture) Tail() []byte { return f.Want[f.Layout.TailOffset:] }

// Tar plans an image whose layers have the given sizes (content from
// seed), the fourth listed twice (stored once), and builds its bytes. The
// same arguments return the same fixture, built once: callers must not
// change it.
func Tar(t testing.TB, seed uint64, sizes ...int) Fixture {
	t.Helper()
	built, _ := tars.LoadOrStore(fmt.Sprint(seed, sizes), sync.OnceValues(func() (Fixture, error) { return newTar(seed, sizes) }))
	f, err := built.(func() (Fixture, error))()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// tars holds the fixtures built so far, by their arguments.
var tars sync.Map

func newTar(seed uint64, sizes []int) (Fixture, error) {
	f := Fixture{Blobs: map[digest.Digest][]byte{}}
	var layers []tarplan.Blob
	for i, n := range sizes {
		b := RandomBytes(seed*1000+uint64(i+1), n)
		d := digest.FromBytes(b)
		f.Blobs[d] = b
		layers = append(layers, tarplan.Blob{Digest: d, Size: int64(n), MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"})
	}
	if len(layers) > 3 {
		layers = append(layers, layers[3]) // a layer listed twice is stored once
	}
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}`)
	l, err := tarplan.Plan(tarplan.Image{
		Name:              "docker.io/library/fixture",
		RepoTags:          []string{"fixture:1"},
		RefName:           "1",
		Manifest:          []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`),
		ManifestMediaType: "application/vnd.oci.image.manifest.v1+json",
		Config:            config,
		ConfigDigest:      digest.FromBytes(config),
		Layers:            layers,
	})
	if err != nil {
		return Fixture{}, err
	}
	f.Layout = l
	for _, e := range l.Entries {
		if int64(len(f.Want)) != e.Offset {
			return Fixture{}, fmt.Errorf("entry %s at %d, want %d", e.Name, e.Offset, len(f.Want))
		}
		content := e.Inline
		if e.Fetched() {
			content = f.Blobs[e.Digest]
		}
		f.Want = append(f.Want, e.Header...)
		f.Want = append(f.Want, content...)
		f.Want = append(f.Want, tarplan.Padding(e.Size)...)
	}
	f.Want = append(f.Want, make([]byte, 1024)...)
	if int64(len(f.Want)) != l.Size {
		return Fixture{}, fmt.Errorf("fixture is %d bytes, layout says %d", len(f.Want), l.Size)
	}
	f.Parts, err = tarplan.Parts(l, tarplan.S3Limits)
	return f, err
}

// StoreEntries puts every fetched blob's entry (header, blob, padding)
// under entryKey, as the workers do.
func StoreEntries(t testing.TB, s download.Objects, f Fixture, entryKey func(digest.Digest) string) {
	t.Helper()
	for _, e := range f.Layout.Entries {
		if !e.Fetched() {
			continue
		}
		entry := f.Want[e.Offset : e.Offset+e.Len()]
		if err := s.Put(context.Background(), entryKey(e.Digest), bytes.NewReader(entry), e.Len()); err != nil {
			t.Fatalf("storing entry %s: %v", e.Digest, err)
		}
	}
}

// TailCall is one call of a TailFunc.
type TailCall struct{ Offset, Size int64 }

// TailCalls records the calls of the TailFuncs it makes.
type TailCalls struct {
	mu    sync.Mutex
	calls []TailCall
}

// From serves tail bytes from memory, recording each call.
func (c *TailCalls) From(tail []byte) download.TailFunc {
	return func(_ context.Context, offset, size int64) (io.ReadCloser, error) {
		c.mu.Lock()
		c.calls = append(c.calls, TailCall{offset, size})
		c.mu.Unlock()
		if offset < 0 || size < 0 || offset+size > int64(len(tail)) {
			return nil, fmt.Errorf("tail range %d+%d outside %d bytes", offset, size, len(tail))
		}
		return io.NopCloser(bytes.NewReader(tail[offset : offset+size])), nil
	}
}

// All returns the calls so far.
func (c *TailCalls) All() []TailCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]TailCall(nil), c.calls...)
}

// CheckTar reads the tar with archive/tar, an independent reader: every
// blob is there once with its content, and the OCI and Docker metadata.
func CheckTar(t testing.TB, b []byte, f Fixture) {
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
		for d, blob := range f.Blobs {
			if h.Name == tarplan.BlobName(d) && !bytes.Equal(content, blob) {
				t.Errorf("%s: content differs from its blob", h.Name)
			}
		}
	}
	for d := range f.Blobs {
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
