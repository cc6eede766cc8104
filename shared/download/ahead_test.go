package download

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rangedBytes serves ranges of data, after a random short delay, failing
// the ranges failAt says how often, and counts reads in flight.
type rangedBytes struct {
	data     []byte
	mu       sync.Mutex
	failures map[int64]int // offset -> failures left
	inFlight atomic.Int32
	most     atomic.Int32
	calls    atomic.Int32
}

func (r *rangedBytes) GetRange(ctx context.Context, _ string, off, n int64) (io.ReadCloser, error) {
	r.calls.Add(1)
	cur := r.inFlight.Add(1)
	defer r.inFlight.Add(-1)
	for {
		m := r.most.Load()
		if cur <= m || r.most.CompareAndSwap(m, cur) {
			break
		}
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Duration(rand.IntN(300)) * time.Microsecond):
	}
	r.mu.Lock()
	left := r.failures[off]
	if left > 0 {
		r.failures[off] = left - 1
	}
	r.mu.Unlock()
	if left > 0 {
		return nil, errors.New("connection reset")
	}
	if off < 0 || n < 0 || off+n > int64(len(r.data)) {
		return nil, fmt.Errorf("range %d+%d outside %d bytes", off, n, len(r.data))
	}
	return io.NopCloser(bytes.NewReader(r.data[off : off+n])), nil
}

// TestAheadReader: the bytes come whole and in order for any size, chunk
// and read-ahead, with at most ahead reads in flight; a range failing
// less than chunkAttempts times is asked again, one failing every time
// fails the read.
func TestAheadReader(t *testing.T) {
	t.Parallel()
	data := make([]byte, 100_003)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, tc := range []struct {
		size, chunk int64
		ahead       int
	}{
		{0, 10, 3}, {1, 10, 3}, {10, 10, 3}, {11, 10, 3}, {100_003, 4096, 8}, {100_003, 1 << 20, 8}, {99_999, 1000, 1},
	} {
		src := &rangedBytes{data: data, failures: map[int64]int{tc.chunk: chunkAttempts - 1}}
		r := newAheadReader(context.Background(), src, "k", tc.size, tc.chunk, tc.ahead)
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, data[:tc.size]) {
			t.Fatalf("%+v: %d bytes, %v", tc, len(got), err)
		}
		if most := src.most.Load(); int(most) > tc.ahead {
			t.Errorf("%+v: %d reads in flight, want at most %d", tc, most, tc.ahead)
		}
	}
	src := &rangedBytes{data: data, failures: map[int64]int{5000: chunkAttempts}}
	r := newAheadReader(context.Background(), src, "k", int64(len(data)), 1000, 4)
	got, err := io.ReadAll(r)
	r.Close()
	if err == nil || len(got) != 5000 {
		t.Fatalf("a range failing every time: %d bytes, %v; want the 5000 before it and an error", len(got), err)
	}
	// Read again after the failure: still failing, never the bytes past
	// the hole, never a clean end.
	src = &rangedBytes{data: data, failures: map[int64]int{1000: chunkAttempts}}
	r = newAheadReader(context.Background(), src, "k", 10_000, 1000, 1)
	defer r.Close()
	var n int
	var errs int
	buf := make([]byte, 500)
	for range 40 {
		m, err := r.Read(buf)
		n += m
		if err == io.EOF {
			t.Fatalf("a clean end after a failed range, %d bytes read", n)
		}
		if err != nil {
			errs++
		}
	}
	if n != 1000 || errs == 0 {
		t.Fatalf("after a failed range: %d bytes, %d errors; want the 1000 before it and only errors after", n, errs)
	}
}

// TestAheadReaderClose: closing mid-read stops the reads in flight and
// returns.
func TestAheadReaderClose(t *testing.T) {
	t.Parallel()
	src := &rangedBytes{data: make([]byte, 1<<20)}
	r := newAheadReader(context.Background(), src, "k", 1<<20, 1000, 8)
	if _, err := io.ReadFull(r, make([]byte, 2500)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	if calls := src.calls.Load(); calls > 3+8+1 {
		t.Errorf("%d ranges read for 2500 bytes with 8 ahead", calls)
	}
}
