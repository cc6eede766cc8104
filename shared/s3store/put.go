package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/tarport/tarport/shared/tarplan"
)

// MaxObjectSize is the biggest object S3 stores: 5 TiB.
const MaxObjectSize = 5 << 40

// errTooLong reports a source with more bytes than promised.
var errTooLong = errors.New("more bytes than promised")

// Put stores exactly size bytes from r under key. The object becomes
// visible only when all of them arrived and r then ended with io.EOF: a
// verifying reader reports a bad digest at its end, so r is read once past
// the last byte before anything is published. On any failure the
// multipart upload is aborted and no object appears.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := s.put(ctx, key, r, size); err != nil {
		return fmt.Errorf("putting %s: %w", key, err)
	}
	return nil
}

func (s *Store) put(ctx context.Context, key string, r io.Reader, size int64) error {
	if size < 0 || size > MaxObjectSize {
		return fmt.Errorf("size %d outside 0..%d", size, int64(MaxObjectSize))
	}
	if size <= s.opts.PartSize {
		buf := s.alloc(size)
		if err := fill(ctx, r, buf, true); err != nil {
			return err
		}
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket:        aws.String(s.bucket),
			Key:           aws.String(key),
			Body:          bytes.NewReader(buf),
			ContentLength: aws.Int64(size),
		})
		return err
	}
	ps, err := PartSize(size, s.opts.PartSize)
	if err != nil {
		return err
	}
	// The memory budget stays PartsInFlight x PartSize when an object
	// needs bigger parts: fewer of them fly, never fewer than one.
	inFlight := int(max(1, min(int64(s.opts.PartsInFlight), int64(s.opts.PartsInFlight)*s.opts.PartSize/ps)))
	return s.multipart(ctx, key, "", true, func(ctx context.Context, u *upload) error {
		return s.sendStream(ctx, u, r, size, ps, inFlight)
	})
}

// sendStream cuts r into parts of ps bytes and uploads up to inFlight of
// them at once, reading the next part while earlier ones upload.
//
// A failure stops the reading (gctx), but parts already sent run to their
// end under ctx: a request cut off may still be finishing on the server
// and store its part after the abort, leaving the upload open.
func (s *Store) sendStream(ctx context.Context, u *upload, r io.Reader, size, ps int64, inFlight int) error {
	g, gctx := errgroup.WithContext(ctx)
	bufs := newBuffers(inFlight, s.alloc)
	var readErr error
	for off, number := int64(0), int32(1); off < size; off, number = off+ps, number+1 {
		n := min(ps, size-off)
		buf, err := bufs.get(gctx, n)
		if err != nil {
			readErr = err
			break
		}
		last := off+n == size
		if err := fill(gctx, r, buf, last); err != nil {
			bufs.put(buf)
			readErr = fmt.Errorf("reading part %d at offset %d: %w", number, off, err)
			break
		}
		g.Go(func() error {
			if err := u.send(ctx, number, bytes.NewReader(buf), n); err != nil {
				// net/http may still be reading a failed request's body:
				// leave the buffer to it.
				bufs.drop()
				return err
			}
			bufs.put(buf)
			return nil
		})
	}
	// A part's failure cancels gctx, which then stops the reading: report
	// the cause, not the cancellation.
	if err := g.Wait(); err != nil {
		return err
	}
	return readErr
}

// fill reads exactly len(buf) bytes into buf. When last, it reads on until
// r ends and fails unless r ends there with io.EOF: a longer stream, or
// the error a verifying reader keeps for its end, fails the put. An error
// returned with the final bytes counts too (io.ReadFull would drop it).
func fill(ctx context.Context, r io.Reader, buf []byte, last bool) error {
	n := 0
	for n < len(buf) {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := r.Read(buf[n:])
		n += m
		switch {
		case err == io.EOF && n < len(buf):
			return fmt.Errorf("stream ended %d bytes early: %w", len(buf)-n, io.ErrUnexpectedEOF)
		case err == io.EOF && !last:
			return fmt.Errorf("stream ended at a part boundary before the last part: %w", io.ErrUnexpectedEOF)
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
	if !last {
		return nil
	}
	return atEnd(ctx, r)
}

// atEnd reads past the last promised byte: r must end there with io.EOF.
func atEnd(ctx context.Context, r io.Reader) error {
	var one [1]byte
	for range 100 {
		if err := ctx.Err(); err != nil {
			return err
		}
		m, err := r.Read(one[:])
		switch {
		case m > 0:
			return errTooLong
		case err == io.EOF:
			return nil
		case err != nil:
			return err
		}
	}
	return io.ErrNoProgress
}

// PartSize returns the part size for an object of size bytes: preferred
// (raised to S3's 5 MiB minimum), or, when the object would need more than
// 10,000 such parts, the smallest whole number of MiB that fits it in
// 10,000. It fails only for objects over S3's 5 TiB.
func PartSize(size, preferred int64) (int64, error) {
	lim := tarplan.S3Limits
	if size < 0 || size > MaxObjectSize {
		return 0, fmt.Errorf("choosing part size: object of %d bytes outside 0..%d", size, int64(MaxObjectSize))
	}
	ps := min(max(preferred, lim.MinPart), lim.MaxPart)
	if need := ceilDiv(size, int64(lim.MaxParts)); need > ps {
		ps = ceilDiv(need, 1<<20) << 20
	}
	return ps, nil
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func (s *Store) alloc(n int64) []byte {
	if s.allocated != nil {
		s.allocated(n)
	}
	return make([]byte, n)
}

// buffers hands out at most n part buffers at once, reusing returned ones,
// so a Put's memory is bounded by what is in flight.
type buffers struct {
	free  chan []byte
	alloc func(int64) []byte
}

func newBuffers(n int, alloc func(int64) []byte) *buffers {
	b := &buffers{free: make(chan []byte, n), alloc: alloc}
	for range n {
		b.free <- nil // a slot without a buffer yet: allocated when first needed
	}
	return b
}

// get waits for a free slot and returns a buffer of size bytes.
func (b *buffers) get(ctx context.Context, size int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case buf := <-b.free:
		if int64(cap(buf)) < size {
			buf = b.alloc(size)
		}
		return buf[:size], nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *buffers) put(buf []byte) { b.free <- buf }

// drop frees a slot whose buffer must not be reused.
func (b *buffers) drop() { b.free <- nil }
