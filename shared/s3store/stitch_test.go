package s3store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/download/objectstest"
	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/s3test"
)

// tarFixture is the object stores' shared tar fixture: a planned tar,
// its blobs, its parts under S3's limits and the bytes it must have.
type tarFixture = objectstest.Fixture

// fixture plans a small image: two stored layers (over
// tarplan.BigEntryMin), a tail of five layers (one empty) over
// testPartSize in all, one layer listed twice.
func fixture(t *testing.T) tarFixture {
	t.Helper()
	f := objectstest.Tar(t, 100, 5<<20+1, 6<<20+123, 3<<20+5, 3<<20-7, 3000, 100, 0)
	if f.Layout.Stored != 2 {
		t.Fatalf("fixture plans %d stored entries, want 2", f.Layout.Stored)
	}
	if tail := f.Layout.Size - f.Layout.TailOffset; tail <= testPartSize {
		t.Fatalf("fixture's tail is %d bytes, want more than %d to stream it", tail, testPartSize)
	}
	return f
}

// storeEntries puts every stored entry under entryKey, as the workers do.
func storeEntries(t *testing.T, s *Store, f tarFixture) { objectstest.StoreEntries(t, s, f, entryKey) }

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
	if len(f.Parts) != 3 || !f.Parts[0].Copy() || !f.Parts[1].Copy() || f.Parts[2].Copy() {
		t.Fatalf("parts %+v: want two copy parts and a tail part", f.Parts)
	}
	eachServer(t, func(t *testing.T, srv server) {
		for _, mode := range tailModes {
			t.Run(mode.name, func(t *testing.T) {
				ctx := context.Background()
				e := newEnv(t, srv, Options{PartSize: mode.partSize}, nil)
				storeEntries(t, e.store, f)
				var calls objectstest.TailCalls
				const key = "tars/job-1.tar"
				if err := e.store.Stitch(ctx, key, f.Parts, entryKey, calls.From(f.Tail())); err != nil {
					t.Fatalf("Stitch: %v\nversitygw output:\n%s", err, srv.Log())
				}
				if n, err := e.store.Size(ctx, key); err != nil || n != f.Layout.Size {
					t.Fatalf("Size = %d, %v; want %d", n, err, f.Layout.Size)
				}
				got := readAll(t, e.store, key)
				assertSame(t, "stitched tar", got, f.Want)
				objectstest.CheckTar(t, got, f)

				tailLen := int64(len(f.Tail()))
				if mode.partSize >= tailLen {
					if calls := calls.All(); len(calls) != 1 || calls[0] != (objectstest.TailCall{Offset: 0, Size: tailLen}) {
						t.Errorf("tail calls = %v, want the whole tail once", calls)
					}
				} else {
					// Streamed: read once or again after a rewind, always from the start.
					for _, c := range calls.All() {
						if c != (objectstest.TailCall{Offset: 0, Size: tailLen}) {
							t.Errorf("tail calls = %v, want only the whole tail", calls.All())
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
	var calls objectstest.TailCalls
	if err := e.store.Stitch(context.Background(), "tars/c.tar", f.Parts, entryKey, calls.From(f.Tail())); err != nil {
		t.Fatalf("Stitch: %v", err)
	}
	assertSame(t, "stitched tar", readAll(t, e.store, "tars/c.tar"), f.Want)
	if most, waited := w.most.Load(), w.waitedOut.Load(); waited || most != 2 {
		t.Errorf("at most %d parts at once (barrier timed out: %v), want 2 (CopyConcurrency)", most, waited)
	}
}

// TestStitchFailures: a stitch that cannot finish leaves no tar and no
// open upload. The cases share one bucket and its stored entries, each
// with its own tar key.
func TestStitchFailures(t *testing.T) {
	t.Parallel()
	f := fixture(t)
	first := f.Layout.Entries[0]
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
					return io.NopCloser(&endError{data: f.Tail()[:100], err: errBroken}), nil
				}
			},
			wantErr: errBroken,
		},
		{
			name: "tail fails at its end",
			tail: func(f tarFixture) download.TailFunc {
				return func(context.Context, int64, int64) (io.ReadCloser, error) {
					return io.NopCloser(&endError{data: f.Tail(), err: errBroken}), nil
				}
			},
			wantErr: errBroken,
		},
		{
			name: "tail too short",
			tail: func(f tarFixture) download.TailFunc {
				return func(context.Context, int64, int64) (io.ReadCloser, error) {
					return io.NopCloser(bytes.NewReader(f.Tail()[:10])), nil
				}
			},
			wantErr: io.ErrUnexpectedEOF,
		},
		{
			name: "tail too long",
			tail: func(f tarFixture) download.TailFunc {
				return func(context.Context, int64, int64) (io.ReadCloser, error) {
					return io.NopCloser(iotest.DataErrReader(io.MultiReader(bytes.NewReader(f.Tail()), bytes.NewReader([]byte{1})))), nil
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
		short := f.Want[first.Offset : first.Offset+first.Len()-1]
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
					var calls objectstest.TailCalls
					tail := calls.From(f.Tail())
					if tt.tail != nil {
						tail = tt.tail(f)
					}
					key := "tars/" + tt.name + ".tar"
					err := e.store.Stitch(context.Background(), key, f.Parts, keyOf, tail)
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
		return edit(append([]tarplan.Part(nil), f.Parts...))
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
	var calls objectstest.TailCalls
	body := &tailBody{ctx: context.Background(), tail: calls.From(tail), off: 1000, size: 5000}
	if err := iotest.TestReader(body, tail[1000:6000]); err != nil {
		t.Fatal(err)
	}
	for _, c := range calls.All() {
		if c.Offset < 1000 || c.Offset+c.Size != 6000 {
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
