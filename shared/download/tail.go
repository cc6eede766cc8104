package download

import (
	"context"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarplan"
)

// tail returns the reader of any byte range of the layout's tail: small
// layer entries read from the entry store (at entryKey), metadata files
// from memory, then the end-of-archive blocks. Entries are opened only
// when reached.
func (s *Service) tail(layout tarplan.Layout, entryKey func(digest.Digest) string) TailFunc {
	return func(ctx context.Context, offset, size int64) (io.ReadCloser, error) {
		var segs []segment
		pos := int64(0)
		for _, e := range layout.Tail() {
			segs = append(segs, s.entrySegment(e, pos, entryKey))
			pos += e.Len()
		}
		eoa := layout.Size - layout.TailOffset - pos
		segs = append(segs, bytesSegment(pos, make([]byte, eoa)))
		if total := pos + eoa; offset < 0 || size < 0 || offset > total || size > total-offset {
			return nil, fmt.Errorf("tail range %d+%d outside the %d-byte tail", offset, size, pos+eoa)
		}
		return newSegmentReader(ctx, segs, offset, size), nil
	}
}

func (s *Service) entrySegment(e tarplan.Entry, start int64, entryKey func(digest.Digest) string) segment {
	if !e.Fetched() {
		return inlineSegment(e, start)
	}
	d := e.Digest
	return segment{start: start, size: e.Len(), open: func(ctx context.Context) (io.ReadCloser, error) {
		return s.objects.Get(ctx, entryKey(d))
	}}
}

// segment is one piece of a concatenated stream, opened lazily.
type segment struct {
	start, size int64
	open        func(context.Context) (io.ReadCloser, error)
}

// segmentReader reads [offset, offset+size) of the concatenation of segs.
type segmentReader struct {
	ctx    context.Context
	segs   []segment
	pos    int64 // absolute position of the next byte
	end    int64
	cur    io.ReadCloser
	curEnd int64
}

func newSegmentReader(ctx context.Context, segs []segment, offset, size int64) *segmentReader {
	return &segmentReader{ctx: ctx, segs: segs, pos: offset, end: offset + size}
}

func (r *segmentReader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	for {
		if r.pos >= r.end {
			return 0, io.EOF
		}
		if r.cur == nil {
			if err := r.openAt(r.pos); err != nil {
				return 0, err
			}
		}
		want := min(int64(len(b)), r.end-r.pos, r.curEnd-r.pos)
		n, err := r.cur.Read(b[:want])
		r.pos += int64(n)
		if r.pos == r.curEnd || err == io.EOF {
			if r.pos < r.curEnd {
				return n, fmt.Errorf("entry ended %d bytes early: %w", r.curEnd-r.pos, io.ErrUnexpectedEOF)
			}
			r.cur.Close()
			r.cur = nil
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// WriteTo writes the rest of the range to w a segment at a time; a
// segment whose reader writes itself (a local file, through sendfile when
// w is a network connection) does so.
func (r *segmentReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.pos < r.end {
		if r.cur == nil {
			if err := r.openAt(r.pos); err != nil {
				return total, err
			}
		}
		want := min(r.end, r.curEnd) - r.pos
		var n int64
		var err error
		if wt, ok := r.cur.(io.WriterTo); ok && r.curEnd <= r.end {
			n, err = wt.WriteTo(w)
		} else {
			n, err = io.CopyN(w, r.cur, want)
		}
		r.pos += n
		total += n
		if err == nil && n != want {
			err = fmt.Errorf("a segment ended %d bytes early: %w", want-n, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return total, err
		}
		r.cur.Close()
		r.cur = nil
	}
	return total, nil
}

// openAt opens the segment holding pos and skips to it.
func (r *segmentReader) openAt(pos int64) error {
	for _, sg := range r.segs {
		if pos < sg.start || pos >= sg.start+sg.size {
			continue
		}
		rc, err := sg.open(r.ctx)
		if err != nil {
			return fmt.Errorf("opening tail segment at %d: %w", sg.start, err)
		}
		if skip := pos - sg.start; skip > 0 {
			if _, err := io.CopyN(io.Discard, rc, skip); err != nil {
				rc.Close()
				return fmt.Errorf("skipping to %d in tail segment: %w", pos, err)
			}
		}
		r.cur, r.curEnd = rc, sg.start+sg.size
		return nil
	}
	return fmt.Errorf("no tail segment holds offset %d", pos)
}

func (r *segmentReader) Close() error {
	if r.cur != nil {
		return r.cur.Close()
	}
	return nil
}
