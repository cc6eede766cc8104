package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/s3test"
)

// partedBytes cuts data at sizes: the parts of one object.
func partedBytes(data []byte, sizes ...int) [][]byte {
	var parts [][]byte
	for _, n := range sizes {
		parts = append(parts, data[:n])
		data = data[n:]
	}
	return parts
}

// putParts puts parts concurrently, in the order given (1-based numbers).
func putParts(t *testing.T, s *Store, key, id string, parts [][]byte, order ...int) {
	t.Helper()
	var g errgroup.Group
	for _, n := range order {
		g.Go(func() error {
			p := parts[n-1]
			return s.PutPart(context.Background(), key, id, n, bytes.NewReader(p), int64(len(p)))
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("PutPart: %v", err)
	}
}

func contentType(t *testing.T, e env, key string) string {
	t.Helper()
	out, err := e.srv.Client().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(e.bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("HeadObject(%s): %v", key, err)
	}
	return aws.ToString(out.ContentType)
}

// pagedLists lists parts two at a time, so FinishParts must page.
type pagedLists struct {
	Client
	calls atomic.Int32
}

func (c *pagedLists) ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	c.calls.Add(1)
	in.MaxParts = aws.Int32(2)
	return c.Client.ListParts(ctx, in, opts...)
}

// TestPartsRoundTrip: parts put out of order, concurrently, one of them
// twice, make the object of their bytes in part order; finishing again
// changes nothing.
func TestPartsRoundTrip(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		var lists *pagedLists
		e := newEnv(t, srv, Options{}, func(c Client) Client { lists = &pagedLists{Client: c}; return lists })
		ctx := context.Background()
		const key = "entries/sha256/split"
		sizes := []int{testPartSize, testPartSize + 17, testPartSize, 999}
		want := randomBytes(11, testPartSize*3+17+999)
		parts := partedBytes(want, sizes...)
		var allocated atomic.Int64
		e.store.allocated = func(n int64) { allocated.Add(n) }

		id, err := e.store.BeginParts(ctx, key)
		if err != nil {
			t.Fatalf("BeginParts: %v", err)
		}
		// A redelivered part: the first bytes are replaced by the last.
		stale := randomBytes(12, len(parts[1]))
		if err := e.store.PutPart(ctx, key, id, 2, bytes.NewReader(stale), int64(len(stale))); err != nil {
			t.Fatalf("PutPart(2): %v", err)
		}
		putParts(t, e.store, key, id, parts, 4, 2, 1, 3)
		if got, want := allocated.Load(), int64(len(want)+len(stale)); got != want {
			t.Errorf("allocated %d bytes for the parts, want %d (one buffer per part)", got, want)
		}
		if _, err := e.store.Size(ctx, key); tarport.ErrorCode(err) != tarport.CodeNotFound {
			t.Fatalf("Size before FinishParts = %v, want not_found: nothing is visible until finished", err)
		}
		if err := e.store.FinishParts(ctx, key, id, len(parts)); err != nil {
			t.Fatalf("FinishParts: %v\nversitygw output:\n%s", err, srv.Log())
		}
		if c := lists.calls.Load(); c != 2 {
			t.Errorf("FinishParts listed %d pages of 2 parts, want 2", c)
		}
		assertSame(t, "Get", readAll(t, e.store, key), want)
		if ct := contentType(t, e, key); ct != partedContentType {
			t.Errorf("content type %q, want %q", ct, partedContentType)
		}
		if err := e.store.FinishParts(ctx, key, id, len(parts)); err != nil {
			t.Errorf("FinishParts again: %v", err)
		}
		if ups := srv.Uploads(t, e.bucket); len(ups) != 0 {
			t.Errorf("multipart uploads left open: %q", ups)
		}
	})
}

// TestPartsOne: an object of a single part, under S3's minimum.
func TestPartsOne(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	e := newEnv(t, srv, Options{}, nil)
	ctx := context.Background()
	want := randomBytes(13, 1000)
	id, err := e.store.BeginParts(ctx, "one")
	if err != nil {
		t.Fatalf("BeginParts: %v", err)
	}
	putParts(t, e.store, "one", id, [][]byte{want}, 1)
	if err := e.store.FinishParts(ctx, "one", id, 1); err != nil {
		t.Fatalf("FinishParts: %v", err)
	}
	assertSame(t, "Get", readAll(t, e.store, "one"), want)
}

// TestFinishPartsRefused: parts missing, extra or too small fail the
// finish and leave the upload open, finishable once the parts are right.
func TestFinishPartsRefused(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	data := randomBytes(14, 3*testPartSize)
	parts := partedBytes(data, testPartSize, testPartSize, testPartSize)
	tests := []struct {
		name    string
		put     []int // parts put before the first finish
		count   int
		wantErr string
		fix     []int // parts put before finishing again
	}{
		{"middle part missing", []int{1, 3}, 3, "1 of 3 parts missing (first 2)", []int{2}},
		{"last part missing", []int{1, 2}, 3, "1 of 3 parts missing (first 3)", []int{3}},
		{"no part yet", nil, 3, "3 of 3 parts missing (first 1)", []int{3, 1, 2}},
		{"more parts than counted", []int{1, 2, 3}, 2, "upload has part 3, want parts 1..2 only", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, srv, Options{}, nil)
			ctx := context.Background()
			id, err := e.store.BeginParts(ctx, "x")
			if err != nil {
				t.Fatalf("BeginParts: %v", err)
			}
			putParts(t, e.store, "x", id, parts, tt.put...)
			err = e.store.FinishParts(ctx, "x", id, tt.count)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("FinishParts = %v, want an error saying %q", err, tt.wantErr)
			}
			if _, err := e.store.Size(ctx, "x"); tarport.ErrorCode(err) != tarport.CodeNotFound {
				t.Fatalf("Size after a refused finish = %v, want not_found", err)
			}
			if ups := srv.Uploads(t, e.bucket); !slices.Equal(ups, []string{"x"}) {
				t.Fatalf("uploads after a refused finish = %q, want the upload kept", ups)
			}
			putParts(t, e.store, "x", id, parts, tt.fix...)
			if err := e.store.FinishParts(ctx, "x", id, 3); err != nil {
				t.Fatalf("FinishParts once the parts are in: %v", err)
			}
			assertSame(t, "Get", readAll(t, e.store, "x"), data)
		})
	}
	t.Run("part under the minimum", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, srv, Options{}, nil)
		ctx := context.Background()
		id, err := e.store.BeginParts(ctx, "small")
		if err != nil {
			t.Fatalf("BeginParts: %v", err)
		}
		small := partedBytes(data, testPartSize-1, 100)
		putParts(t, e.store, "small", id, small, 1, 2)
		err = e.store.FinishParts(ctx, "small", id, 2)
		if err == nil || !strings.Contains(err.Error(), "part 1 is 5242879 bytes, under S3's minimum") {
			t.Fatalf("FinishParts = %v, want an error naming the small part", err)
		}
		if err := e.store.AbortParts(ctx, "small", id); err != nil {
			t.Fatalf("AbortParts: %v", err)
		}
	})
	t.Run("bad arguments", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, srv, Options{}, nil)
		for _, tt := range []struct {
			id    string
			count int
		}{{"", 1}, {"some", 0}, {"some", 10_001}} {
			if err := e.store.FinishParts(context.Background(), "k", tt.id, tt.count); err == nil {
				t.Errorf("FinishParts(id %q, count %d) succeeded, want an error", tt.id, tt.count)
			}
		}
	})
}

// TestAbortParts: an aborted upload is gone, parts and all; aborting again
// succeeds; finishing it fails, saying the object was never made.
func TestAbortParts(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		e := newEnv(t, srv, Options{}, nil)
		ctx := context.Background()
		id, err := e.store.BeginParts(ctx, "aborted")
		if err != nil {
			t.Fatalf("BeginParts: %v", err)
		}
		putParts(t, e.store, "aborted", id, [][]byte{randomBytes(15, testPartSize), {1, 2, 3}}, 1, 2)
		if err := e.store.AbortParts(ctx, "aborted", id); err != nil {
			t.Fatalf("AbortParts: %v", err)
		}
		assertAbsent(t, e, "aborted")
		if err := e.store.AbortParts(ctx, "aborted", id); err != nil {
			t.Errorf("AbortParts again: %v", err)
		}
		err = e.store.FinishParts(ctx, "aborted", id, 2)
		if !noSuchUpload(err) || !strings.Contains(err.Error(), "never made") {
			t.Errorf("FinishParts of an aborted upload = %v, want NoSuchUpload saying the object was never made", err)
		}
		assertAbsent(t, e, "aborted")
	})
}

// TestPutPartFailures: a part whose source is short, long or fails is not
// stored; arguments out of S3's range are refused before any request.
func TestPutPartFailures(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		var calls atomic.Int32
		e := newEnv(t, srv, Options{}, func(c Client) Client { return &countParts{Client: c, calls: &calls} })
		ctx := context.Background()
		id, err := e.store.BeginParts(ctx, "x")
		if err != nil {
			t.Fatalf("BeginParts: %v", err)
		}
		data := randomBytes(16, testPartSize+10)
		n := int64(len(data))
		readers := []struct {
			name    string
			r       io.Reader
			wantErr error
		}{
			{"one byte short", bytes.NewReader(data[:n-1]), io.ErrUnexpectedEOF},
			{"one byte long", io.MultiReader(bytes.NewReader(data), bytes.NewReader([]byte{0})), errTooLong},
			{"long, with EOF on the last promised byte", iotest.DataErrReader(bytes.NewReader(append(slices.Clone(data), 1))), errTooLong},
			{"error half-way", &endError{data: data[:n/2], err: errBroken}, errBroken},
			{"error at the end", &endError{data: data, err: errBroken}, errBroken},
			{"error with the last bytes", &endError{data: data, err: errBroken, withLast: true}, errBroken},
		}
		for _, tt := range readers {
			if err := e.store.PutPart(ctx, "x", id, 1, tt.r, n); !errors.Is(err, tt.wantErr) {
				t.Errorf("%s: PutPart = %v, want %v", tt.name, err, tt.wantErr)
			}
		}
		args := []struct {
			id   string
			n    int
			size int64
		}{
			{"", 1, 10},
			{id, 0, 10},
			{id, 10_001, 10},
			{id, 1, 0},
			{id, 1, 5<<30 + 1},
		}
		for _, tt := range args {
			err := e.store.PutPart(ctx, "x", tt.id, tt.n, bytes.NewReader(make([]byte, 10)), tt.size)
			if err == nil || !strings.Contains(err.Error(), "outside") && !strings.Contains(err.Error(), "no upload id") {
				t.Errorf("PutPart(id %q, n %d, size %d) = %v, want it refused", tt.id, tt.n, tt.size, err)
			}
		}
		if c := calls.Load(); c != 0 {
			t.Errorf("%d parts sent to S3, want none", c)
		}
		parts, err := e.store.listParts(ctx, "x", id)
		if err != nil || len(parts) != 0 {
			t.Errorf("parts stored = %d, %v; want none", len(parts), err)
		}
		if err := e.store.AbortParts(ctx, "x", id); err != nil {
			t.Fatalf("AbortParts: %v", err)
		}
	})
}

// countParts counts the parts uploaded or copied and the CopyObjects.
type countParts struct {
	Client
	calls       *atomic.Int32 // UploadPart and UploadPartCopy
	copyObjects atomic.Int32
}

func (c *countParts) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	c.calls.Add(1)
	return c.Client.UploadPart(ctx, in, opts...)
}

func (c *countParts) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opts ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	c.calls.Add(1)
	return c.Client.UploadPartCopy(ctx, in, opts...)
}

func (c *countParts) CopyObject(ctx context.Context, in *s3.CopyObjectInput, opts ...func(*s3.Options)) (*s3.CopyObjectOutput, error) {
	c.copyObjects.Add(1)
	return c.Client.CopyObject(ctx, in, opts...)
}

// TestMove: an object moves by CopyObject up to the copy limit and by a
// multipart copy above it (the limit lowered to 6 MiB, parts of 5 MiB);
// moving again succeeds.
func TestMove(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		tests := []struct {
			name                 string
			size                 int
			wantCopies, wantPart int32
		}{
			{"empty", 0, 1, 0},
			{"small", 1000, 1, 0},
			{"at the copy limit", 6 << 20, 1, 0},
			{"over the copy limit", 6<<20 + 1, 0, 2},
			{"three copy parts", 2*testPartSize + 123, 0, 3},
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var parts atomic.Int32
				var c *countParts
				e := newEnv(t, srv, Options{CopyConcurrency: 2}, func(cl Client) Client {
					c = &countParts{Client: cl, calls: &parts}
					return c
				})
				e.store.copyMax, e.store.copyPart = 6<<20, testPartSize
				ctx := context.Background()
				want := randomBytes(uint64(20+i), tt.size)
				const from, to = "tmp/split/x", "entries/sha256/x"
				if err := e.store.Put(ctx, from, bytes.NewReader(want), int64(tt.size)); err != nil {
					t.Fatalf("Put: %v", err)
				}
				parts.Store(0)
				if err := e.store.Move(ctx, from, to, int64(tt.size)); err != nil {
					t.Fatalf("Move: %v\nversitygw output:\n%s", err, srv.Log())
				}
				if got, gotParts := c.copyObjects.Load(), parts.Load(); got != tt.wantCopies || gotParts != tt.wantPart {
					t.Errorf("%d CopyObject and %d UploadPartCopy, want %d and %d", got, gotParts, tt.wantCopies, tt.wantPart)
				}
				assertSame(t, "Get", readAll(t, e.store, to), want)
				if ct := contentType(t, e, to); ct != partedContentType {
					t.Errorf("content type %q, want %q", ct, partedContentType)
				}
				assertAbsent(t, e, from)
				if err := e.store.Move(ctx, from, to, int64(tt.size)); err != nil {
					t.Errorf("Move again: %v", err)
				}
				assertSame(t, "Get after moving again", readAll(t, e.store, to), want)
				if ups := srv.Uploads(t, e.bucket); len(ups) != 0 {
					t.Errorf("multipart uploads left open: %q", ups)
				}
			})
		}
	})
}

// TestMoveRefused: a move that cannot be made leaves the source as it was
// and makes no target.
func TestMoveRefused(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	data := randomBytes(30, 2*testPartSize+1)
	n := int64(len(data))
	tests := []struct {
		name     string
		target   []byte // put under the target first, when set
		size     int64
		copyPart func(n int32) error
		wantErr  string
	}{
		{"wrong size", nil, n - 1, nil, fmt.Sprintf("is %d bytes, want %d", n, n-1)},
		{"a copy part fails", nil, n, func(n int32) error {
			if n == 2 {
				return errBroken
			}
			return nil
		}, errBroken.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, srv, Options{}, func(c Client) Client { return &faults{Client: c, copyPart: tt.copyPart} })
			e.store.copyMax, e.store.copyPart = 6<<20, testPartSize
			ctx := context.Background()
			if err := e.store.Put(ctx, "from", bytes.NewReader(data), n); err != nil {
				t.Fatalf("Put: %v", err)
			}
			err := e.store.Move(ctx, "from", "to", tt.size)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Move = %v, want an error saying %q", err, tt.wantErr)
			}
			assertSame(t, "the source after a refused move", readAll(t, e.store, "from"), data)
			assertAbsent(t, e, "to")
		})
	}
	t.Run("gone", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, srv, Options{}, nil)
		ctx := context.Background()
		if err := e.store.Move(ctx, "from", "to", 10); err == nil || !strings.Contains(err.Error(), "neither the source nor the target exists") {
			t.Errorf("Move of nothing = %v, want an error saying neither exists", err)
		}
		if err := e.store.Put(ctx, "to", bytes.NewReader(data[:9]), 9); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if err := e.store.Move(ctx, "from", "to", 10); err == nil || !strings.Contains(err.Error(), "target is 9 bytes, want 10") {
			t.Errorf("Move onto a target of another size = %v, want an error saying so", err)
		}
		if err := e.store.Move(ctx, "to", "to", 9); err == nil {
			t.Errorf("Move onto itself succeeded, want an error")
		}
		assertSame(t, "an object moved onto itself", readAll(t, e.store, "to"), data[:9])
	})
	t.Run("source replaced while copying", func(t *testing.T) {
		t.Parallel()
		var once sync.Once
		var e env
		e = newEnv(t, srv, Options{CopyConcurrency: 1}, func(c Client) Client {
			return &faults{Client: c, copyPart: func(int32) error {
				once.Do(func() {
					// Same size, other bytes, before the first part is copied.
					if err := e.store.Put(context.Background(), "from", bytes.NewReader(randomBytes(31, int(n))), n); err != nil {
						t.Errorf("replacing the source: %v", err)
					}
				})
				return nil
			}}
		})
		e.store.copyMax, e.store.copyPart = 6<<20, testPartSize
		ctx := context.Background()
		if err := e.store.Put(ctx, "from", bytes.NewReader(data), n); err != nil {
			t.Fatalf("Put: %v", err)
		}
		err := e.store.Move(ctx, "from", "to", n)
		if err == nil || !strings.Contains(err.Error(), "changed while being copied") {
			t.Fatalf("Move = %v, want an error saying the source changed", err)
		}
		assertAbsent(t, e, "to")
	})
}

func TestDelete(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		e := newEnv(t, srv, Options{}, nil)
		ctx := context.Background()
		if err := e.store.Delete(ctx, "never/there"); err != nil {
			t.Errorf("Delete of a missing key: %v", err)
		}
		if err := e.store.Put(ctx, "here", strings.NewReader("abc"), 3); err != nil {
			t.Fatalf("Put: %v", err)
		}
		if err := e.store.Delete(ctx, "here"); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		assertAbsent(t, e, "here")
		if err := e.store.Delete(ctx, "here"); err != nil {
			t.Errorf("Delete again: %v", err)
		}
	})
}
