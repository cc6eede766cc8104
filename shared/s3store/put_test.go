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
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/testkit/s3test"
)

func TestPutRoundTrip(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		e := newEnv(t, srv, Options{PartSize: testPartSize, PartsInFlight: 3}, nil)
		sizes := []int{
			0,
			1,
			testPartSize,          // the biggest single PutObject
			testPartSize + 1,      // two parts, the last one byte
			2*testPartSize + 4321, // three parts
		}
		for i, n := range sizes {
			t.Run(fmt.Sprint(n), func(t *testing.T) {
				ctx := context.Background()
				want := randomBytes(uint64(i+1), n)
				key := fmt.Sprintf("entries/sha256/%d", n)
				// One byte per Read at the start stresses the part filling.
				r := io.MultiReader(iotest.OneByteReader(bytes.NewReader(want[:min(n, 10)])), bytes.NewReader(want[min(n, 10):]))
				if err := e.store.Put(ctx, key, r, int64(n)); err != nil {
					t.Fatalf("Put: %v\nversitygw output:\n%s", err, srv.Log())
				}
				if got, err := e.store.Size(ctx, key); err != nil || got != int64(n) {
					t.Fatalf("Size = %d, %v; want %d", got, err, n)
				}
				assertSame(t, "Get", readAll(t, e.store, key), want)
			})
		}
		if ups := srv.Uploads(t, e.bucket); len(ups) != 0 {
			t.Errorf("multipart uploads left open: %q", ups)
		}
	})
}

// endError returns data, then err instead of io.EOF: a verifying reader
// whose digest did not match. withLast returns err with the last bytes.
type endError struct {
	data     []byte
	err      error
	withLast bool
}

func (r *endError) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(b, r.data)
	r.data = r.data[n:]
	if len(r.data) == 0 && r.withLast {
		return n, r.err
	}
	return n, nil
}

// TestPutFailures: whatever goes wrong, no object appears and no upload
// stays open, for one PutObject and for multipart uploads alike.
func TestPutFailures(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		e := newEnv(t, srv, Options{PartSize: testPartSize, PartsInFlight: 2}, nil)
		sizes := map[string]int{"single": 1000, "multipart": 2*testPartSize + 100}
		tests := []struct {
			name    string
			reader  func(data []byte) io.Reader
			wantErr error
		}{
			{"error at the end", func(d []byte) io.Reader { return &endError{data: d, err: errBroken} }, errBroken},
			{"error with the last bytes", func(d []byte) io.Reader { return &endError{data: d, err: errBroken, withLast: true} }, errBroken},
			{"error half-way", func(d []byte) io.Reader { return &endError{data: d[:len(d)/2], err: errBroken} }, errBroken},
			{"one byte short", func(d []byte) io.Reader { return bytes.NewReader(d[:len(d)-1]) }, io.ErrUnexpectedEOF},
			{"ends at a part boundary", func(d []byte) io.Reader { return bytes.NewReader(d[:min(len(d)-1, testPartSize)]) }, io.ErrUnexpectedEOF},
			{"one byte long", func(d []byte) io.Reader { return io.MultiReader(bytes.NewReader(d), bytes.NewReader([]byte{0})) }, errTooLong},
			{"long, with EOF on the last promised byte", func(d []byte) io.Reader { return iotest.DataErrReader(bytes.NewReader(append(d, 1, 2, 3))) }, errTooLong},
		}
		for kind, n := range sizes {
			data := randomBytes(3, n)
			for _, tt := range tests {
				t.Run(kind+"/"+tt.name, func(t *testing.T) {
					key := "entries/sha256/" + kind + "/" + tt.name
					err := e.store.Put(context.Background(), key, tt.reader(data), int64(n))
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("Put = %v, want %v", err, tt.wantErr)
					}
					assertAbsent(t, e, key)
				})
			}
		}
	})
}

// cancelAfter cancels a context once n bytes were read, and goes on
// serving bytes: only the store's own checks can stop the upload.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func TestPutCanceled(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		e := newEnv(t, srv, Options{PartSize: testPartSize, PartsInFlight: 2}, nil)
		for _, at := range []int{100, testPartSize + 100, 3 * testPartSize} {
			t.Run(fmt.Sprint(at), func(t *testing.T) {
				data := randomBytes(4, 4*testPartSize)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				r := &cancelAfter{r: bytes.NewReader(data), n: at, cancel: cancel}
				err := e.store.Put(ctx, "entries/sha256/canceled", r, int64(len(data)))
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Put = %v, want context.Canceled", err)
				}
				assertAbsent(t, e, "entries/sha256/canceled")
			})
		}
	})
}

// faults stands between the store and the server and fails chosen calls.
type faults struct {
	Client
	uploadPart func(n int32) error
	copyPart   func(n int32) error
	complete   func() error
	// lostAborts aborts answer success without reaching the server, as if
	// a part stored late had revived the upload after them.
	lostAborts atomic.Int32
}

func (f *faults) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	if f.lostAborts.Add(-1) >= 0 {
		return &s3.AbortMultipartUploadOutput{}, nil
	}
	return f.Client.AbortMultipartUpload(ctx, in, opts...)
}

func (f *faults) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	if f.uploadPart != nil {
		if err := f.uploadPart(*in.PartNumber); err != nil {
			return nil, err
		}
	}
	return f.Client.UploadPart(ctx, in, opts...)
}

func (f *faults) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opts ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	if f.copyPart != nil {
		if err := f.copyPart(*in.PartNumber); err != nil {
			return nil, err
		}
	}
	return f.Client.UploadPartCopy(ctx, in, opts...)
}

func (f *faults) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	if f.complete != nil {
		if err := f.complete(); err != nil {
			return nil, err
		}
	}
	return f.Client.CompleteMultipartUpload(ctx, in, opts...)
}

func TestPutServerFailures(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	failPart := func(fail int32) func(n int32) error {
		return func(n int32) error {
			if n == fail {
				return errBroken
			}
			return nil
		}
	}
	tests := []struct {
		name       string
		uploadPart func(n int32) error
		complete   func() error
		lostAborts int32
		wantOpen   bool // every abort lost: the failure says so
	}{
		{name: "part 2 fails", uploadPart: failPart(2)},
		{name: "the last part fails", uploadPart: failPart(3)},
		{name: "complete fails", complete: func() error { return errBroken }},
		{name: "a part revives the upload after the abort", uploadPart: failPart(3), lostAborts: 1},
		{name: "a part revives the upload after two aborts", uploadPart: failPart(2), lostAborts: 2},
		{name: "the upload survives every abort", uploadPart: failPart(2), lostAborts: abortAttempts, wantOpen: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, srv, Options{PartSize: testPartSize, PartsInFlight: 2}, func(c Client) Client {
				f := &faults{Client: c, uploadPart: tt.uploadPart, complete: tt.complete}
				f.lostAborts.Store(tt.lostAborts)
				return f
			})
			data := randomBytes(5, 2*testPartSize+1)
			err := e.store.Put(context.Background(), "entries/sha256/x", bytes.NewReader(data), int64(len(data)))
			if !errors.Is(err, errBroken) {
				t.Fatalf("Put = %v, want %v", err, errBroken)
			}
			if tt.wantOpen {
				if !strings.Contains(err.Error(), "aborting upload") || !slices.Contains(srv.Uploads(t, e.bucket), "entries/sha256/x") {
					t.Fatalf("Put = %v with the upload left open, want an error saying the abort failed", err)
				}
				return
			}
			assertAbsent(t, e, "entries/sha256/x")
		})
	}
}

// TestPutMemoryBound: a Put holds at most PartsInFlight buffers of
// PartSize, reused part after part, and does run that many parts at once.
// The bound is counted at the allocation, so timing cannot make it flaky;
// the first part waits for a second one to arrive, so concurrency is
// proven without sleeping.
func TestPutMemoryBound(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	const inFlight = 2
	var w *concurrency
	e := newEnv(t, srv, Options{PartSize: testPartSize, PartsInFlight: inFlight}, func(c Client) Client {
		w = &concurrency{Client: c, barrier: inFlight, both: make(chan struct{})}
		return w
	})
	var allocs, allocated atomic.Int64
	e.store.allocated = func(n int64) { allocs.Add(1); allocated.Add(n) }

	data := randomBytes(6, 6*testPartSize+99) // 7 parts
	if err := e.store.Put(context.Background(), "entries/sha256/big", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put: %v", err)
	}
	assertSame(t, "Get", readAll(t, e.store, "entries/sha256/big"), data)
	if allocs.Load() > inFlight || allocated.Load() > inFlight*testPartSize {
		t.Errorf("allocated %d buffers, %d bytes; want at most %d of %d bytes", allocs.Load(), allocated.Load(), inFlight, testPartSize)
	}
	if most, waited := w.most.Load(), w.waitedOut.Load(); waited || most != inFlight {
		t.Errorf("at most %d parts uploaded at once (barrier timed out: %v), want %d", most, waited, inFlight)
	}
}

// concurrency counts the parts being uploaded or copied at once. The
// first calls wait until barrier of them are in flight together (or 20 s
// passed), which proves the store runs them concurrently.
type concurrency struct {
	Client
	barrier       int64
	both          chan struct{}
	once          sync.Once
	running, most atomic.Int64
	waitedOut     atomic.Bool
}

func (c *concurrency) enter() {
	now := c.running.Add(1)
	for old := c.most.Load(); now > old && !c.most.CompareAndSwap(old, now); old = c.most.Load() {
	}
	if now >= c.barrier {
		c.once.Do(func() { close(c.both) })
	}
	select {
	case <-c.both:
	case <-time.After(20 * time.Second):
		c.waitedOut.Store(true)
	}
}

func (c *concurrency) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	c.enter()
	defer c.running.Add(-1)
	return c.Client.UploadPart(ctx, in, opts...)
}

func (c *concurrency) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opts ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	c.enter()
	defer c.running.Add(-1)
	return c.Client.UploadPartCopy(ctx, in, opts...)
}

func TestPartSize(t *testing.T) {
	t.Parallel()
	const (
		MiB = int64(1) << 20
		GiB = int64(1) << 30
		TiB = int64(1) << 40
	)
	tests := []struct {
		size, preferred, want int64
	}{
		{0, 16 * MiB, 16 * MiB},
		{1, 16 * MiB, 16 * MiB},
		{1, 0, 5 * MiB},                                  // never under S3's minimum
		{1, 1, 5 * MiB},                                  //
		{1, 6 * GiB, 5 * GiB},                            // never over S3's maximum
		{10_000 * 16 * MiB, 16 * MiB, 16 * MiB},          // exactly 10,000 parts
		{10_000*16*MiB + 1, 16 * MiB, 17 * MiB},          // one byte more: bigger parts
		{100 * GiB, 5 * MiB, 11 * MiB},                   // 102,400 MiB / 10,000, rounded up
		{MaxObjectSize, 16 * MiB, 525 * MiB},             // 5 TiB in 9,987 parts
		{MaxObjectSize, 5 * GiB, 5 * GiB},                // big preferred parts stay
		{4 * TiB, 64 * MiB, 420 * MiB},                   //
		{10_000 * 5 * MiB, 0, 5 * MiB},                   //
		{10_000*5*MiB + 10_000, 0, 6 * MiB},              //
		{MaxObjectSize - 1, DefaultPartSize, 525 * MiB},  //
		{12345678901, DefaultPartSize, DefaultPartSize},  // 736 parts
		{3*TiB + 12345, DefaultPartSize, 315 * MiB},      //
		{2*TiB - 1, 1 * GiB, 1 * GiB},                    //
		{50 * GiB, DefaultPartSize, DefaultPartSize},     //
		{500 * GiB, DefaultPartSize, 52 * MiB},           //
		{10_000*DefaultPartSize - 1, 0, DefaultPartSize}, //
	}
	for _, tt := range tests {
		got, err := PartSize(tt.size, tt.preferred)
		if err != nil || got != tt.want {
			t.Errorf("PartSize(%d, %d) = %d, %v; want %d", tt.size, tt.preferred, got, err, tt.want)
		}
		checkPartSize(t, tt.size, tt.preferred)
	}
	for _, size := range []int64{-1, MaxObjectSize + 1, 1 << 62} {
		if got, err := PartSize(size, DefaultPartSize); err == nil {
			t.Errorf("PartSize(%d) = %d, want an error", size, got)
		}
	}
}

// checkPartSize checks the rules every part size must obey.
func checkPartSize(t *testing.T, size, preferred int64) {
	t.Helper()
	lim := tarplan.S3Limits
	ps, err := PartSize(size, preferred)
	if err != nil {
		t.Fatalf("PartSize(%d, %d): %v", size, preferred, err)
	}
	if ps < lim.MinPart || ps > lim.MaxPart {
		t.Fatalf("PartSize(%d, %d) = %d, outside [%d, %d]", size, preferred, ps, lim.MinPart, lim.MaxPart)
	}
	if parts := ceilDiv(size, ps); parts > int64(lim.MaxParts) {
		t.Fatalf("PartSize(%d, %d) = %d: %d parts, over %d", size, preferred, ps, parts, lim.MaxParts)
	}
	// Parts are no bigger than needed: the preferred size, or the 10,000th
	// of the object rounded up to a MiB.
	floor := min(max(preferred, lim.MinPart), lim.MaxPart)
	if ps != floor && ps-ceilDiv(size, int64(lim.MaxParts)) >= 1<<20 {
		t.Fatalf("PartSize(%d, %d) = %d: bigger than needed", size, preferred, ps)
	}
}

func FuzzPartSize(f *testing.F) {
	for _, seed := range [][2]int64{{0, 0}, {1, 5 << 20}, {MaxObjectSize, 16 << 20}, {10_000*16<<20 + 1, 16 << 20}, {MaxObjectSize, 1}} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, size, preferred int64) {
		if size < 0 {
			size = -(size + 1)
		}
		size %= MaxObjectSize + 1
		checkPartSize(t, size, preferred)
	})
}

func TestFill(t *testing.T) {
	t.Parallel()
	data := []byte("0123456789")
	stuck := readerFunc(func([]byte) (int, error) { return 0, nil })
	tests := []struct {
		name    string
		r       io.Reader
		n       int
		last    bool
		wantErr error
	}{
		{"exact, last", bytes.NewReader(data), 10, true, nil},
		{"exact with EOF on the last bytes", iotest.DataErrReader(bytes.NewReader(data)), 10, true, nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data)), 10, true, nil},
		{"half-reads", iotest.HalfReader(bytes.NewReader(data)), 10, true, nil},
		{"not last: more follows", bytes.NewReader(data), 4, false, nil},
		{"longer, last", bytes.NewReader(data), 9, true, errTooLong},
		{"shorter", bytes.NewReader(data), 11, true, io.ErrUnexpectedEOF},
		{"EOF at the end of a part that is not the last", iotest.DataErrReader(bytes.NewReader(data)), 10, false, io.ErrUnexpectedEOF},
		{"error after the data", &endError{data: data, err: errBroken}, 10, true, errBroken},
		{"error with the last bytes", &endError{data: data, err: errBroken, withLast: true}, 10, true, errBroken},
		{"error with the last bytes of a part that is not the last", &endError{data: data, err: errBroken, withLast: true}, 10, false, errBroken},
		{"empty, last", bytes.NewReader(nil), 0, true, nil},
		{"empty but data follows", bytes.NewReader(data), 0, true, errTooLong},
		{"no progress", stuck, 0, true, io.ErrNoProgress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			buf := make([]byte, tt.n)
			err := fill(context.Background(), tt.r, buf, tt.last)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("fill = %v, want %v", err, tt.wantErr)
			}
			if err == nil && !bytes.Equal(buf, data[:tt.n]) {
				t.Fatalf("filled %q, want %q", buf, data[:tt.n])
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := fill(ctx, bytes.NewReader(data), make([]byte, 5), true); !errors.Is(err, context.Canceled) {
		t.Errorf("fill with a canceled context = %v, want context.Canceled", err)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }
