package download

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// A split layer's entry is checked by one in-order hash of all of it (a
// range cannot be hashed alone). Read as one stream from S3, a 20 GB
// entry takes minutes at one stream's pace; read ahead by several ranged
// GETs at once, the hash runs at SHA-256's own speed.

// RangedObjects reads a byte range of an object (S3: GetObject with a
// Range), which the verify task uses to read a split layer's entry with
// several requests at once.
type RangedObjects interface {
	// GetRange returns exactly length bytes of key from offset on, or an
	// error.
	GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error)
}

const (
	// verifyChunk and verifyAhead bound a verify task's read-ahead: 8
	// ranged reads of 8 MiB in flight and one being hashed, 72 MiB of
	// buffers, whatever the layer's size.
	verifyChunk = 8 << 20
	verifyAhead = 8
	// chunkAttempts is how often one range is asked for before the read
	// fails (the task is delivered again after that); chunkTimeout bounds
	// each attempt, so a body that stalls is asked for again rather than
	// holding the in-order hash until the task's deadline.
	chunkAttempts = 3
	chunkTimeout  = time.Minute
)

// aheadReader reads [0, size) of an object in order, keeping up to ahead
// ranged reads of chunk bytes in flight, each into a buffer of a fixed
// set: memory stays at ahead+1 chunks.
type aheadReader struct {
	ctx     context.Context
	cancel  context.CancelFunc
	objs    RangedObjects
	key     string
	size    int64
	chunk   int64
	ahead   int
	free    chan []byte
	pending []chan chunkResult // in flight, in order
	started int64              // chunks started
	cur     []byte             // the chunk being handed out
	buf     []byte             // cur's buffer, back to free once read
	err     error              // the first failure: every later Read returns it
}

type chunkResult struct {
	b   []byte
	err error
}

// ReadAhead reads [0, size) of key in order with verifyAhead ranged reads
// of verifyChunk bytes in flight: how the verify task reads a split
// layer's entry (exported for the benchmark that measures it).
func ReadAhead(ctx context.Context, objs RangedObjects, key string, size int64) io.ReadCloser {
	return newAheadReader(ctx, objs, key, size, verifyChunk, verifyAhead)
}

func newAheadReader(ctx context.Context, objs RangedObjects, key string, size, chunk int64, ahead int) *aheadReader {
	ctx, cancel := context.WithCancel(ctx)
	r := &aheadReader{ctx: ctx, cancel: cancel, objs: objs, key: key, size: size, chunk: chunk, ahead: ahead, free: make(chan []byte, ahead+1)}
	for range min(int64(ahead+1), r.chunks()) {
		r.free <- make([]byte, chunk)
	}
	return r
}

func (r *aheadReader) chunks() int64 { return (r.size + r.chunk - 1) / r.chunk }

// fill starts reads until ahead are in flight (or none is left).
func (r *aheadReader) fill() {
	for len(r.pending) < r.ahead && r.started < r.chunks() {
		var buf []byte
		select {
		case buf = <-r.free:
		default:
			return // every buffer is out: one comes back as a chunk is read
		}
		off := r.started * r.chunk
		n := min(r.chunk, r.size-off)
		done := make(chan chunkResult, 1)
		go func() { done <- r.fetch(off, buf[:n]) }()
		r.pending = append(r.pending, done)
		r.started++
	}
}

// fetch reads one range into b, asking again after a failure.
func (r *aheadReader) fetch(off int64, b []byte) chunkResult {
	var err error
	for range chunkAttempts {
		ctx, cancel := context.WithTimeout(r.ctx, chunkTimeout)
		var rc io.ReadCloser
		if rc, err = r.objs.GetRange(ctx, r.key, off, int64(len(b))); err == nil {
			_, err = io.ReadFull(rc, b)
			rc.Close()
		}
		cancel()
		if err == nil || r.ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return chunkResult{b: b, err: fmt.Errorf("reading bytes %d+%d of %s: %w", off, len(b), r.key, err)}
	}
	return chunkResult{b: b}
}

func (r *aheadReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(r.cur) == 0 {
		if r.buf != nil {
			r.free <- r.buf[:cap(r.buf)]
			r.buf = nil
		}
		r.fill()
		if len(r.pending) == 0 {
			return 0, io.EOF
		}
		res := <-r.pending[0]
		r.pending = r.pending[1:]
		if res.err != nil {
			// A hole must not be read past: the reader stays failed.
			r.free <- res.b[:cap(res.b)]
			r.err = res.err
			return 0, res.err
		}
		r.cur, r.buf = res.b, res.b
		r.fill()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close stops the reads in flight and waits for them.
func (r *aheadReader) Close() error {
	if r.err == nil {
		r.err = errors.New("read after close")
	}
	r.cancel()
	for _, p := range r.pending {
		<-p
	}
	r.pending = nil
	return nil
}
