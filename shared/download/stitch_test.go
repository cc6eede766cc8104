package download

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

const mib = 1 << 20

// Layer sizes around the stored/tail boundary (an entry of BigEntryMin and
// more is stored): header 512 + content + padding.
var boundarySizes = []int64{
	6 * mib,             // stored
	5*mib + 1000,        // stored
	5*mib - 512,         // entry exactly 5 MiB: stored
	5*mib - 1024,        // entry 5 MiB - 512: tail
	-1,                  // the first layer again
	0, 1, 511, 512, 700, // small: tail
}

// runAll creates the job of ti and runs every task.
func runAll(t *testing.T, h *harness, ti testImage) View {
	t.Helper()
	h.serve(ti)
	v, tasks := create(t, h, Request{Image: ti.img.Ref.CommonName()})
	for _, task := range tasks {
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatalf("RunTask(layer %d): %v", task.Layer, err)
		}
	}
	return v
}

// TestStitchMatchesADirectTar: the stitched tar (copy parts of stored
// entries, upload parts of the tail) is byte for byte the tar written
// straight from the layout, and an independent reader finds every file.
func TestStitchMatchesADirectTar(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/big:v1", 30, boundarySizes...)
	v := runAll(t, h, ti)
	job := h.jobs.job(t, v.ID)
	if job.Status != tarport.StatusReady {
		t.Fatalf("job %s %+v", job.Status, job.Error)
	}
	layout := planOf(t, ti.img)
	if layout.Stored != 3 {
		t.Fatalf("layout stores %d entries, want 3 (the test's sizes are off)", layout.Stored)
	}
	parts := h.objs.stitches[0].parts
	copies := 0
	for _, p := range parts {
		if p.Copy() {
			copies++
		}
	}
	if copies != 3 || len(parts) != 4 {
		t.Errorf("%d parts, %d copies; want one copy per stored entry and one tail part", len(parts), copies)
	}
	want := expectedTar(t, layout, ti.blobs)
	got, _ := h.objs.object(job.TarKey)
	if d := firstDiff(got, want); d != "" {
		t.Fatalf("tar: %s", d)
	}
	checkTarFiles(t, got, layout, ti.blobs)

	// The same entries stitched with small part limits: many copy parts per
	// entry and many tail parts, each read from the tail on its own.
	for _, lim := range []tarplan.Limits{
		{MinPart: 64 << 10, MaxPart: mib + 7, MaxParts: 10_000},
		{MinPart: 100_000, MaxPart: 333_333, MaxParts: 10_000},
	} {
		parts, err := tarplan.Parts(layout, lim)
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("tars/small-%d.tar", lim.MaxPart)
		if err := h.objs.Stitch(context.Background(), key, parts, testEntryKey, h.svc.tail(layout, testEntryKey)); err != nil {
			t.Fatalf("stitching with %+v: %v", lim, err)
		}
		got, _ := h.objs.object(key)
		if d := firstDiff(got, want); d != "" {
			t.Errorf("tar with %d parts (%+v): %s", len(parts), lim, d)
		}
	}
}

// checkTarFiles reads tarBytes with archive/tar: every entry of the
// layout, in order, with its content, then a clean end.
func checkTarFiles(t *testing.T, tarBytes []byte, layout tarplan.Layout, blobs map[digest.Digest][]byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(tarBytes))
	for _, e := range layout.Entries {
		hdr, err := tr.Next()
		if err != nil {
			t.Fatalf("reading the tar at %s: %v", e.Name, err)
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s: %v", hdr.Name, err)
		}
		want := e.Inline
		if e.Fetched() {
			want = blobs[e.Digest]
			if digest.FromBytes(content) != e.Digest {
				t.Errorf("%s does not hash to its digest", hdr.Name)
			}
		}
		if hdr.Name != e.Name || !bytes.Equal(content, want) || hdr.Mode != 0o644 || hdr.Uid != 0 || hdr.ModTime.Unix() != 0 {
			t.Errorf("entry %s: name %s, %d bytes (want %d), mode %o, uid %d, mtime %v", e.Name, hdr.Name, len(content), len(want), hdr.Mode, hdr.Uid, hdr.ModTime)
		}
	}
	if hdr, err := tr.Next(); err != io.EOF {
		t.Errorf("after the last entry: %v, %v; want the end of the archive", hdr, err)
	}
}

// tailFixture is a job whose entries are all stored, with its layout and
// expected tail bytes.
func tailFixture(t *testing.T, seed uint64, sizes ...int64) (*harness, tarplan.Layout, []byte) {
	t.Helper()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/tail:v1", seed, sizes...)
	for d, b := range ti.blobs {
		e := entryBytes(t, b)
		if err := h.objs.Put(context.Background(), EntryKey(testOrigin, d), bytes.NewReader(e), int64(len(e))); err != nil {
			t.Fatal(err)
		}
	}
	layout := planOf(t, ti.img)
	return h, layout, expectedTar(t, layout, ti.blobs)[layout.TailOffset:]
}

func readTail(tail TailFunc, off, size int64) ([]byte, error) {
	rc, err := tail(context.Background(), off, size)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// TestTailRanges reads ranges of a tail against the bytes written directly:
// every pair of interesting offsets (each segment's start and end, one
// byte either side) and random ones.
func TestTailRanges(t *testing.T) {
	t.Parallel()
	h, layout, want := tailFixture(t, 31, 5*mib-512, 0, 1, 511, 512, 513, 700)
	tail := h.svc.tail(layout, testEntryKey)
	n := int64(len(want))
	points := []int64{0, n}
	for _, e := range layout.Tail() {
		for _, p := range []int64{e.Offset - layout.TailOffset, e.Offset - layout.TailOffset + int64(len(e.Header))} {
			points = append(points, p-1, p, p+1)
		}
	}
	points = append(points, n-1024-1, n-1024, n-1024+1, n-1)
	rng := rand.New(rand.NewPCG(31, 31))
	for range 20 {
		points = append(points, rng.Int64N(n+1))
	}
	points = slices.DeleteFunc(points, func(p int64) bool { return p < 0 || p > n })
	slices.Sort(points)
	points = slices.Compact(points)
	for i, a := range points {
		for _, b := range points[i:] {
			got, err := readTail(tail, a, b-a)
			if err != nil {
				t.Fatalf("tail [%d,%d): %v", a, b, err)
			}
			if !bytes.Equal(got, want[a:b]) {
				t.Fatalf("tail [%d,%d): %s", a, b, firstDiff(got, want[a:b]))
			}
		}
	}
	// Small entries are opened only when their bytes are read: the
	// metadata files and the end of the archive need no entry object.
	h.objs.mu.Lock()
	clear(h.objs.gets)
	h.objs.mu.Unlock()
	meta := layout.Entries[len(layout.Entries)-5].Offset - layout.TailOffset
	if got, err := readTail(tail, meta, n-meta); err != nil || !bytes.Equal(got, want[meta:]) {
		t.Fatalf("metadata and end of archive: %v", err)
	}
	if len(h.objs.gets) != 0 {
		t.Errorf("reading the metadata opened entries %v", h.objs.gets)
	}
}

func TestTailOfOnlyMetadata(t *testing.T) {
	t.Parallel()
	h, layout, want := tailFixture(t, 32, 5*mib-512)
	if layout.Stored != 1 {
		t.Fatalf("stored %d", layout.Stored)
	}
	got, err := readTail(h.svc.tail(layout, testEntryKey), 0, int64(len(want)))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("whole tail: %v, %s", err, firstDiff(got, want))
	}
	if len(h.objs.gets) != 0 {
		t.Errorf("a tail of metadata opened entries %v", h.objs.gets)
	}
}

func TestTailRefusesRangesOutside(t *testing.T) {
	t.Parallel()
	h, layout, want := tailFixture(t, 33, 100)
	tail := h.svc.tail(layout, testEntryKey)
	n := int64(len(want))
	for _, r := range [][2]int64{{-1, 1}, {-1, 0}, {0, -1}, {0, n + 1}, {1, n}, {n, 1}, {n + 1, 0}, {n - 1, 2}} {
		if rc, err := tail(context.Background(), r[0], r[1]); err == nil {
			rc.Close()
			t.Errorf("tail(%d, %d) of a %d-byte tail: no error", r[0], r[1], n)
		}
	}
	for _, r := range [][2]int64{{0, 0}, {n, 0}, {0, n}} {
		got, err := readTail(tail, r[0], r[1])
		if err != nil || int64(len(got)) != r[1] {
			t.Errorf("tail(%d, %d): %d bytes, %v", r[0], r[1], len(got), err)
		}
	}
}

func TestTailRefusesOverflowingRanges(t *testing.T) {
	t.Parallel()
	h, layout, _ := tailFixture(t, 34, 100)
	tail := h.svc.tail(layout, testEntryKey)
	// offset+size would overflow int64: the check must not compute it.
	for _, r := range [][2]int64{{math.MaxInt64, 1}, {1, math.MaxInt64}} {
		if rc, err := tail(context.Background(), r[0], r[1]); err == nil {
			got, rerr := io.ReadAll(rc)
			rc.Close()
			t.Errorf("tail(%d, %d): no error (a reader giving %d bytes, %v); want an out-of-range error", r[0], r[1], len(got), rerr)
		}
	}
}

func TestTailErrors(t *testing.T) {
	t.Parallel()
	t.Run("missing entry", func(t *testing.T) {
		t.Parallel()
		h, layout, want := tailFixture(t, 35, 300)
		h.objs.mu.Lock()
		clear(h.objs.objs)
		h.objs.mu.Unlock()
		if _, err := readTail(h.svc.tail(layout, testEntryKey), 0, int64(len(want))); tarport.ErrorCode(err) != tarport.CodeNotFound {
			t.Errorf("tail with its entry gone: %v; want the store's not_found", err)
		}
	})
	t.Run("short entry", func(t *testing.T) {
		t.Parallel()
		h, layout, want := tailFixture(t, 36, 300)
		d := layout.Tail()[0].Digest
		h.objs.mu.Lock()
		h.objs.objs[EntryKey(testOrigin, d)] = h.objs.objs[EntryKey(testOrigin, d)][:600]
		h.objs.mu.Unlock()
		if _, err := readTail(h.svc.tail(layout, testEntryKey), 0, int64(len(want))); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("tail with a short entry: %v; want io.ErrUnexpectedEOF", err)
		}
	})
	t.Run("long entry", func(t *testing.T) {
		t.Parallel()
		h, layout, want := tailFixture(t, 37, 300)
		d := layout.Tail()[0].Digest
		h.objs.mu.Lock()
		h.objs.objs[EntryKey(testOrigin, d)] = append(slices.Clone(h.objs.objs[EntryKey(testOrigin, d)]), 0xff, 0xff)
		h.objs.mu.Unlock()
		got, err := readTail(h.svc.tail(layout, testEntryKey), 0, int64(len(want)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("tail with an over-long entry object: %v, %s", err, firstDiff(got, want))
		}
	})
}

// trackedSegments are tiny segments over one byte string, counting opens
// and closes, with readers shaped by wrap.
type trackedSegments struct {
	data   []byte
	segs   []segment
	opens  []int
	closes []int
}

type closeCounter struct {
	io.Reader
	n *int
}

func (c closeCounter) Close() error { *c.n++; return nil }

func newTrackedSegments(sizes []int64, wrap func(io.Reader) io.Reader) *trackedSegments {
	ts := &trackedSegments{opens: make([]int, len(sizes)), closes: make([]int, len(sizes))}
	var pos int64
	for i, size := range sizes {
		start := pos
		ts.segs = append(ts.segs, segment{start: start, size: size, open: func(context.Context) (io.ReadCloser, error) {
			ts.opens[i]++
			return closeCounter{Reader: wrap(bytes.NewReader(ts.data[start : start+size])), n: &ts.closes[i]}, nil
		}})
		pos += size
	}
	ts.data = make([]byte, pos)
	for i := range ts.data {
		ts.data[i] = byte(i*7 + 1)
	}
	return ts
}

// TestSegmentReaderEveryRange reads every range [a,b) of a concatenation of
// tiny segments through readers of every shape: the bytes are right, only
// the segments the range touches are opened, each once, and all are closed.
func TestSegmentReaderEveryRange(t *testing.T) {
	t.Parallel()
	sizes := []int64{1, 3, 5, 2, 7, 1}
	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"plain":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
		"data+EOF": iotest.DataErrReader,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for a := int64(0); a <= 19; a++ {
				for b := a; b <= 19; b++ {
					ts := newTrackedSegments(sizes, wrap)
					r := newSegmentReader(context.Background(), ts.segs, a, b-a)
					var got []byte
					var err error
					if (a+b)%2 == 0 {
						got, err = io.ReadAll(r)
					} else {
						// WriteTo, a segment at a time (after a first Read,
						// as a server does), gives the same bytes.
						var buf bytes.Buffer
						one := make([]byte, min(1, b-a))
						n, rerr := r.Read(one)
						buf.Write(one[:n])
						if _, err = r.WriteTo(&buf); err == nil && rerr != nil && rerr != io.EOF {
							err = rerr
						}
						got = buf.Bytes()
					}
					if err != nil || !bytes.Equal(got, ts.data[a:b]) {
						t.Fatalf("[%d,%d): %v, got %v want %v", a, b, err, got, ts.data[a:b])
					}
					if err := r.Close(); err != nil {
						t.Fatal(err)
					}
					for i, sg := range ts.segs {
						touched := 0
						if a < b && a < sg.start+sg.size && sg.start < b {
							touched = 1
						}
						if ts.opens[i] != touched || ts.closes[i] != ts.opens[i] {
							t.Fatalf("[%d,%d): segment %d [%d,%d) opened %d, closed %d; want opened %d and closed", a, b, i, sg.start, sg.start+sg.size, ts.opens[i], ts.closes[i], touched)
						}
					}
				}
			}
		})
	}
}

// spinGuard answers empty reads with (0, nil) as io.Reader allows, but only
// a few times: a caller looping on them would never end.
type spinGuard struct {
	io.Reader
	empty int
}

func (s *spinGuard) Read(b []byte) (int, error) {
	if len(b) == 0 {
		s.empty++
		if s.empty > 100 {
			return 0, errors.New("spinning on empty reads")
		}
		return 0, nil
	}
	return s.Reader.Read(b)
}

func (s *spinGuard) Close() error { return nil }

// TestSegmentReaderEmptyRead: io.Reader says a Read of an empty buffer
// returns 0, nil; it must not loop.
func TestSegmentReaderEmptyRead(t *testing.T) {
	t.Parallel()
	guard := &spinGuard{Reader: bytes.NewReader(make([]byte, 10))}
	segs := []segment{{start: 0, size: 10, open: func(context.Context) (io.ReadCloser, error) { return guard, nil }}}
	r := newSegmentReader(context.Background(), segs, 2, 5)
	// An empty read returns 0, nil at once (io.Reader's rule) instead of
	// spinning on inner empty reads (the guard errors after 100).
	n, err := r.Read(nil)
	if n != 0 || err != nil || guard.empty > 1 {
		t.Errorf("Read(nil) = %d, %v after %d inner empty reads; want 0, nil at once", n, err, guard.empty)
	}
	if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, make([]byte, 5)) {
		t.Errorf("then ReadAll: %v, %v", got, err)
	}
}

func TestSegmentReaderOpenError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	segs := []segment{
		{start: 0, size: 2, open: func(context.Context) (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader([]byte{1, 2})), nil }},
		{start: 2, size: 2, open: func(context.Context) (io.ReadCloser, error) { return nil, boom }},
	}
	got, err := io.ReadAll(newSegmentReader(context.Background(), segs, 0, 4))
	if !errors.Is(err, boom) || !bytes.Equal(got, []byte{1, 2}) {
		t.Errorf("ReadAll: %v, %v; want the first segment then the open error", got, err)
	}
	if _, err := io.ReadAll(newSegmentReader(context.Background(), segs, 0, 5)); err == nil {
		t.Errorf("a range past the last segment: no error")
	}
}

// TestReplanMatchesCreate: the tar planned again at stitch time, from the
// job's record and the cached manifest and config, is the tar planned at
// create.
func TestReplanMatchesCreate(t *testing.T) {
	t.Parallel()
	for _, ref := range []string{"registry.example/team/app:v1", "registry.example/team/app@sha256:" + strings.Repeat("ab", 32)} {
		h := newHarness(t, Config{})
		ti := newTestImage(t, "registry.example/team/app:v1", 7, 3000, -1, 12)
		if strings.Contains(ref, "@") {
			ti.img.Ref.Tag, ti.img.Ref.Digest = "", ti.img.ManifestDigest.String()
			ref = "registry.example/team/app@" + ti.img.ManifestDigest.String()
		}
		h.serve(ti)
		v, _ := create(t, h, Request{Image: ref})
		job := h.jobs.job(t, v.ID)
		got, layers, err := h.svc.replan(context.Background(), job)
		if err != nil {
			t.Fatal(err)
		}
		if want := planOf(t, ti.img); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: replanned layout\n %+v\nwant the create's\n %+v", ref, got, want)
		}
		if len(layers) != len(job.Layers) || layers[0].desc.Digest != job.Layers[0].Digest || layers[0].ref.CommonName() != job.Ref {
			t.Errorf("%s: replanned layers %+v", ref, layers)
		}
	}
}
