package s3store

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/s3test"
)

// tarFixture is a planned tar, its blobs, and the bytes it must have.
type tarFixture struct {
	layout tarplan.Layout
	parts  []tarplan.Part
	blobs  map[digest.Digest][]byte
	want   []byte // the whole tar, built independently of the store
}

// tail is the tar's tail: small entries, metadata, end of archive.
func (f tarFixture) tail() []byte { return f.want[f.layout.TailOffset:] }

// newTarFixture plans a small image, as dirstore's tests do: two stored
// layers (over tarplan.BigEntryMin), a tail of five layers (one empty)
// over testPartSize in all, one layer listed twice.
var newTarFixture = sync.OnceValues(func() (tarFixture, error) {
	sizes := []int{5<<20 + 1, 6<<20 + 123, 3<<20 + 5, 3<<20 - 7, 3000, 100, 0}
	f := tarFixture{blobs: map[digest.Digest][]byte{}}
	var layers []tarplan.Blob
	for i, n := range sizes {
		b := randomBytes(uint64(i+100), n)
		d := digest.FromBytes(b)
		f.blobs[d] = b
		layers = append(layers, tarplan.Blob{Digest: d, Size: int64(n), MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"})
	}
	layers = append(layers, layers[5]) // a layer listed twice is stored once
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
	if tail := l.Size - l.TailOffset; tail <= testPartSize {
		return tarFixture{}, fmt.Errorf("fixture's tail is %d bytes, want more than %d to stream it", tail, testPartSize)
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
	if f.parts, err = tarplan.Parts(l, tarplan.S3Limits); err != nil {
		return tarFixture{}, err
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

// storeEntries puts every stored entry (header, blob, padding) under
// entryKey, as the assemble workers do.
func storeEntries(t *testing.T, s *Store, f tarFixture) {
	t.Helper()
	for _, e := range f.layout.Entries[:f.layout.Stored] {
		entry := f.want[e.Offset : e.Offset+e.Len()]
		if err := s.Put(context.Background(), entryKey(e.Digest), bytes.NewReader(entry), e.Len()); err != nil {
			t.Fatalf("storing entry %s: %v", e.Digest, err)
		}
	}
}

// tailCall records one call of a TailFunc.
type tailCall struct{ offset, size int64 }

// tailFrom serves tail bytes from memory and records the calls.
func tailFrom(tail []byte, calls *[]tailCall, mu *sync.Mutex) download.TailFunc {
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

// tailModes are the two ways a tail part is sent: read whole into a part
// buffer, or streamed (a tail bigger than PartSize).
var tailModes = []struct {
	name     string
	partSize int64
}{
	{"buffered tail", DefaultPartSize},
	{"streamed tail", testPartSize},
}

func TestStitch(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	if len(f.parts) != 3 || !f.parts[0].Copy() || !f.parts[1].Copy() || f.parts[2].Copy() {
		t.Fatalf("parts %+v: want two copy parts and a tail part", f.parts)
	}
	eachServer(t, func(t *testing.T, srv server) {
		for _, mode := range tailModes {
			t.Run(mode.name, func(t *testing.T) {
				ctx := context.Background()
				e := newEnv(t, srv, Options{PartSize: mode.partSize}, nil)
				storeEntries(t, e.store, f)
				var (
					calls []tailCall
					mu    sync.Mutex
				)
				const key = "tars/job-1.tar"
				if err := e.store.Stitch(ctx, key, f.parts, entryKey, tailFrom(f.tail(), &calls, &mu)); err != nil {
					t.Fatalf("Stitch: %v\nversitygw output:\n%s", err, srv.Log())
				}
				if n, err := e.store.Size(ctx, key); err != nil || n != f.layout.Size {
					t.Fatalf("Size = %d, %v; want %d", n, err, f.layout.Size)
				}
				got := readAll(t, e.store, key)
				assertSame(t, "stitched tar", got, f.want)
				checkTar(t, got, f)

				tailLen := int64(len(f.tail()))
				if mode.partSize >= tailLen {
					if len(calls) != 1 || calls[0] != (tailCall{0, tailLen}) {
						t.Errorf("tail calls = %v, want the whole tail once", calls)
					}
				} else {
					// Streamed: read once or again after a rewind, always from the start.
					for _, c := range calls {
						if c != (tailCall{0, tailLen}) {
							t.Errorf("tail calls = %v, want only the whole tail", calls)
						}
					}
				}
				head, err := srv.Client().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
				if err != nil {
					t.Fatal(err)
				}
				if ct := aws.ToString(head.ContentType); ct != "application/x-tar" {
					t.Errorf("Content-Type = %q, want application/x-tar", ct)
				}
				if ups := srv.Uploads(t, e.bucket); len(ups) != 0 {
					t.Errorf("multipart uploads left open: %q", ups)
				}
			})
		}
	})
}

// TestStitchConcurrent: the parts of a stitch run at once.
func TestStitchConcurrent(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	srv := s3test.Start(t)
	var w *concurrency
	e := newEnv(t, srv, Options{CopyConcurrency: 2}, func(c Client) Client {
		w = &concurrency{Client: c, barrier: 2, both: make(chan struct{})}
		return w
	})
	storeEntries(t, e.store, f)
	w.most.Store(0) // storing the entries used UploadPart too
	var (
		calls []tailCall
		mu    sync.Mutex
	)
	if err := e.store.Stitch(context.Background(), "tars/c.tar", f.parts, entryKey, tailFrom(f.tail(), &calls, &mu)); err != nil {
		t.Fatalf("Stitch: %v", err)
	}
	assertSame(t, "stitched tar", readAll(t, e.store, "tars/c.tar"), f.want)
	if most, waited := w.most.Load(), w.waitedOut.Load(); waited || most != 2 {
		t.Errorf("at most %d parts at once (barrier timed out: %v), want 2 (CopyConcurrency)", most, waited)
	}
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

// TestStitchFailures: a stitch that cannot finish leaves no tar and no
// open upload. The cases share one bucket and its stored entries, each
// with its own tar key.
func TestStitchFailures(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	first := f.layout.Entries[0]
	tests := []struct {
		name     string
		entryKey func(digest.Digest) string
		tail     func(f tarFixture) download.TailFunc
		copyPart func(n int32) error
		wantErr  error
		wantCode tarport.Code
	}{
		{
			name:     "entry missing",
			entryKey: func(d digest.Digest) string { return "missing/" + d.Encoded() },
			wantCode: tarport.CodeNotFound,
		},
		{
			name: "entry shorter than its part",
			entryKey: func(d digest.Digest) string {
				if d == first.Digest {
					return "short/" + d.Encoded()
				}
				return entryKey(d)
			},
		},
		{
			name: "a copy part fails",
			copyPart: func(n int32) error {
				if n == 2 {
					return errBroken
				}
				return nil
			},
			wantErr: errBroken,
		},
		{
			name: "tail fails to open",
			tail: func(tarFixture) download.TailFunc {
				return func(context.Context, int64, int64) (io.ReadCloser, error) { return nil, errBroken }
			},
			wantErr: errBroken,
		},
		{
			name: "tail breaks mid-way",
			tail: func(f tarFixture) download.TailFunc {
				return func(context.Context, int64, int64) (io.ReadCloser, error) {
					return io.NopCloser(&endError{data: f.tail()[:100], err: errBroken}), nil
				}
			},
			wantErr: errBroken,
		},
		{
			name: "tail fails at its end",
			tail: func(f tarFixture) download.TailFunc {
				return func(context.Context, int64, int64) (io.ReadCloser, error) {
					return io.NopCloser(&endError{data: f.tail(), err: errBroken}), nil
				}
			},
			wantErr: errBroken,
		},
		{
			name: "tail too short",
			tail: func(f tarFixture) download.TailFunc {
				return func(context.Context, int64, int64) (io.ReadCloser, error) {
					return io.NopCloser(bytes.NewReader(f.tail()[:10])), nil
				}
			},
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name: "tail too long",
			tail: func(f tarFixture) download.TailFunc {
				return func(context.Context, int64, int64) (io.ReadCloser, error) {
					return io.NopCloser(iotest.DataErrReader(io.MultiReader(bytes.NewReader(f.tail()), bytes.NewReader([]byte{1})))), nil
				}
			},
			wantErr: errTooLong,
		},
	}
	eachServer(t, func(t *testing.T, srv server) {
		bucket := srv.CreateBucket(t)
		c := srv.Client()
		seed := New(c, s3.NewPresignClient(c), bucket, Options{})
		storeEntries(t, seed, f)
		short := f.want[first.Offset : first.Offset+first.Len()-1]
		if err := seed.Put(context.Background(), "short/"+first.Digest.Encoded(), bytes.NewReader(short), int64(len(short))); err != nil {
			t.Fatal(err)
		}
		for _, mode := range tailModes {
			for _, tt := range tests {
				t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
					var client Client = c
					if tt.copyPart != nil {
						client = &faults{Client: c, copyPart: tt.copyPart}
					}
					e := env{srv: srv, bucket: bucket, store: New(client, s3.NewPresignClient(c), bucket, Options{PartSize: mode.partSize})}
					keyOf := entryKey
					if tt.entryKey != nil {
						keyOf = tt.entryKey
					}
					var (
						calls []tailCall
						mu    sync.Mutex
					)
					tail := tailFrom(f.tail(), &calls, &mu)
					if tt.tail != nil {
						tail = tt.tail(f)
					}
					key := "tars/" + tt.name + ".tar"
					err := e.store.Stitch(context.Background(), key, f.parts, keyOf, tail)
					switch {
					case err == nil:
						t.Fatal("Stitch succeeded, want an error")
					case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
						t.Fatalf("Stitch = %v, want %v", err, tt.wantErr)
					case tt.wantCode != "" && tarport.ErrorCode(err) != tt.wantCode:
						t.Fatalf("Stitch = %v (code %s), want code %s", err, tarport.ErrorCode(err), tt.wantCode)
					}
					assertAbsent(t, e, key)
				})
			}
		}
	})
}

func TestStitchMalformedParts(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	s := New(nil, nil, "b", Options{}) // refused before any request
	bad := func(edit func(p []tarplan.Part) []tarplan.Part) []tarplan.Part {
		return edit(append([]tarplan.Part(nil), f.parts...))
	}
	for name, parts := range map[string][]tarplan.Part{
		"none":            nil,
		"numbered from 0": bad(func(p []tarplan.Part) []tarplan.Part { p[0].Number = 0; return p }),
		"out of order":    bad(func(p []tarplan.Part) []tarplan.Part { p[0], p[1] = p[1], p[0]; return p }),
		"empty part":      bad(func(p []tarplan.Part) []tarplan.Part { p[1].Size = 0; return p }),
	} {
		if err := s.Stitch(context.Background(), "tars/x.tar", parts, entryKey, nil); err == nil {
			t.Errorf("%s: Stitch succeeded, want an error", name)
		}
	}
}

// TestTailBody checks the streamed tail body as an io.ReadSeeker against
// its content, and its refusals of a tail of the wrong length.
func TestTailBody(t *testing.T) {
	t.Parallel()
	tail := randomBytes(9, 10_000)
	var (
		calls []tailCall
		mu    sync.Mutex
	)
	body := &tailBody{ctx: context.Background(), tail: tailFrom(tail, &calls, &mu), off: 1000, size: 5000}
	if err := iotest.TestReader(body, tail[1000:6000]); err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		if c.offset < 1000 || c.offset+c.size != 6000 {
			t.Errorf("tail opened at %+v, want ranges ending at 6000", c)
		}
	}
	body.Close()

	for name, tt := range map[string]struct {
		data    []byte
		wantErr error
	}{
		"short": {tail[:4999], io.ErrUnexpectedEOF},
		"long":  {tail[:5001], errTooLong},
	} {
		b := &tailBody{ctx: context.Background(), size: 5000, tail: func(context.Context, int64, int64) (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(tt.data)), nil
		}}
		if _, err := io.ReadAll(b); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: reading = %v, want %v", name, err, tt.wantErr)
		}
	}
}

// testOrigin is the origin the tests' entries and metadata came from.
var testOrigin = tarport.RegistryOrigin("registry.test:5000")

// entryKey is where the workers store an entry of testOrigin.
func entryKey(d digest.Digest) string { return download.EntryKey(testOrigin, d) }
