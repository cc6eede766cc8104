package s3store

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarplan"
)

// Stitch writes the tar under key in one multipart upload: copy parts are
// UploadPartCopy of byte ranges of the entry objects (no byte passes
// through here), upload parts are read from the tail. Parts are sent
// concurrently, up to CopyConcurrency; the tar appears only if all of
// them succeeded, otherwise the upload is aborted.
func (s *Store) Stitch(ctx context.Context, key string, parts []tarplan.Part, entryKey func(digest.Digest) string, tail download.TailFunc) error {
	if err := s.stitch(ctx, key, parts, entryKey, tail); err != nil {
		return fmt.Errorf("stitching %s: %w", key, err)
	}
	return nil
}

func (s *Store) stitch(ctx context.Context, key string, parts []tarplan.Part, entryKey func(digest.Digest) string, tail download.TailFunc) error {
	if len(parts) == 0 || len(parts) > tarplan.S3Limits.MaxParts {
		return fmt.Errorf("%d parts, want 1 to %d", len(parts), tarplan.S3Limits.MaxParts)
	}
	for i, p := range parts {
		if p.Number != i+1 || p.Size <= 0 || p.SourceOffset < 0 {
			return fmt.Errorf("part %d of %d is malformed: %+v", i+1, len(parts), p)
		}
	}
	if err := s.checkEntries(ctx, parts, entryKey); err != nil {
		return err
	}
	// As in Put, a failure stops new parts (gctx) but lets those sent end
	// under ctx, so none is stored after the abort.
	return s.multipart(ctx, key, "application/x-tar", false, func(ctx context.Context, u *upload) error {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.opts.CopyConcurrency)
		bufs := newBuffers(s.opts.PartsInFlight, s.alloc)
		for _, p := range parts {
			if gctx.Err() != nil {
				break // a part failed: the upload is aborted anyway
			}
			g.Go(func() error {
				if err := gctx.Err(); err != nil {
					return err
				}
				if p.Copy() {
					return u.copy(ctx, int32(p.Number), entryKey(p.Digest), p.SourceOffset, p.Size)
				}
				return s.sendTail(ctx, gctx, u, p, tail, bufs)
			})
		}
		return g.Wait()
	})
}

// checkEntries makes sure every entry a copy part reads exists and holds
// the range, before an upload is started: S3 would refuse a missing
// source, but a range past a short entry must not go unnoticed.
func (s *Store) checkEntries(ctx context.Context, parts []tarplan.Part, entryKey func(digest.Digest) string) error {
	need := map[digest.Digest]int64{} // the end of the furthest range read
	var order []digest.Digest
	for _, p := range parts {
		if !p.Copy() {
			continue
		}
		if _, ok := need[p.Digest]; !ok {
			order = append(order, p.Digest)
		}
		need[p.Digest] = max(need[p.Digest], p.SourceOffset+p.Size)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.CopyConcurrency)
	for _, d := range order {
		g.Go(func() error {
			n, err := s.Size(gctx, entryKey(d))
			if err != nil {
				return fmt.Errorf("entry %s: %w", d, err)
			}
			if n < need[d] {
				return fmt.Errorf("entry %s is %d bytes, parts read up to %d", d, n, need[d])
			}
			return nil
		})
	}
	return g.Wait()
}

// sendTail uploads an upload part read from the tail. A part that fits a
// part buffer is read whole first (once); a bigger one (a tail over
// PartSize) is streamed from a body that reopens the tail when the SDK
// rewinds it, so memory stays bounded whatever the tail's size.
//
// The tail is read under readCtx, which ends when another part failed: a
// streamed body cut off mid-request is never stored.
func (s *Store) sendTail(ctx, readCtx context.Context, u *upload, p tarplan.Part, tail download.TailFunc, bufs *buffers) error {
	number := int32(p.Number)
	if p.Size > s.opts.PartSize {
		body := &tailBody{ctx: readCtx, tail: tail, off: p.SourceOffset, size: p.Size}
		defer body.Close()
		return u.send(ctx, number, body, p.Size)
	}
	buf, err := bufs.get(readCtx, p.Size)
	if err != nil {
		return err
	}
	rc, err := tail(readCtx, p.SourceOffset, p.Size)
	if err != nil {
		bufs.put(buf)
		return fmt.Errorf("reading tail part %d: %w", number, err)
	}
	err = fill(readCtx, rc, buf, true)
	rc.Close()
	if err != nil {
		bufs.put(buf)
		return fmt.Errorf("reading tail part %d: %w", number, err)
	}
	if err := u.send(ctx, number, bytes.NewReader(buf), p.Size); err != nil {
		bufs.drop()
		return err
	}
	bufs.put(buf)
	return nil
}

// tailBody is a tail range as an io.ReadSeeker: a seek reopens the range
// at the new position. It fails unless the tail yields exactly size bytes
// and then ends cleanly, like Put's source.
type tailBody struct {
	ctx       context.Context // the part's: the SDK's Read has none
	tail      download.TailFunc
	off, size int64
	pos       int64
	rc        io.ReadCloser
}

func (b *tailBody) Read(p []byte) (int, error) {
	if b.pos >= b.size {
		return 0, io.EOF
	}
	if b.rc == nil {
		rc, err := b.tail(b.ctx, b.off+b.pos, b.size-b.pos)
		if err != nil {
			return 0, fmt.Errorf("opening tail at %d: %w", b.off+b.pos, err)
		}
		b.rc = rc
	}
	n, err := b.rc.Read(p[:min(int64(len(p)), b.size-b.pos)])
	b.pos += int64(n)
	switch {
	case b.pos == b.size && err == nil:
		if err := atEnd(b.ctx, b.rc); err != nil {
			return n, fmt.Errorf("reading tail at %d: %w", b.off+b.pos, err)
		}
		return n, io.EOF
	case err == io.EOF && b.pos < b.size:
		return n, fmt.Errorf("tail ended %d bytes early: %w", b.size-b.pos, io.ErrUnexpectedEOF)
	case err != nil && err != io.EOF:
		return n, fmt.Errorf("reading tail at %d: %w", b.off+b.pos, err)
	}
	return n, err
}

func (b *tailBody) Seek(offset int64, whence int) (int64, error) {
	abs := offset
	switch whence {
	case io.SeekCurrent:
		abs += b.pos
	case io.SeekEnd:
		abs += b.size
	}
	if abs < 0 {
		return 0, fmt.Errorf("seeking tail body to %d", abs)
	}
	if abs != b.pos {
		b.Close()
		b.pos = abs
	}
	return abs, nil
}

func (b *tailBody) Close() error {
	if b.rc == nil {
		return nil
	}
	err := b.rc.Close()
	b.rc = nil
	return err
}
