package dirstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"time"
)

// object is an open plain or stitched object, readable at any offset, so
// http.ServeContent can answer Range requests on it.
type object struct {
	size    int64
	modTime time.Time
	parts   []openSegment // sorted by start
}

type openSegment struct {
	start int64 // in the object
	size  int64
	f     *os.File
	off   int64 // in f
}

func (s *Store) open(key string) (*object, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	if f, err := os.Open(p); err == nil {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("opening %s: %w", key, err)
		}
		return &object{size: fi.Size(), modTime: fi.ModTime(), parts: []openSegment{{size: fi.Size(), f: f}}}, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("opening %s: %w", key, err)
	}
	rec, err := s.loadRecipe(key)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(p + recipeSuffix)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", key, err)
	}
	obj := &object{size: rec.Size, modTime: fi.ModTime()}
	files := map[string]*os.File{}
	var start int64
	for _, seg := range rec.Segments {
		f, ok := files[seg.Key]
		if !ok {
			sp, err := s.path(seg.Key)
			if err == nil {
				f, err = os.Open(sp)
			}
			if err != nil {
				obj.Close()
				return nil, notFound(key, fmt.Errorf("segment %s: %w", seg.Key, err))
			}
			files[seg.Key] = f
		}
		obj.parts = append(obj.parts, openSegment{start: start, size: seg.Size, f: f, off: seg.Offset})
		start += seg.Size
	}
	return obj, nil
}

// ReadAt reads from whichever segments hold [off, off+len(b)).
func (o *object) ReadAt(b []byte, off int64) (int, error) {
	if off >= o.size {
		return 0, io.EOF
	}
	i := sort.Search(len(o.parts), func(i int) bool { return o.parts[i].start+o.parts[i].size > off })
	n := 0
	for n < len(b) && i < len(o.parts) {
		p := o.parts[i]
		within := off - p.start
		want := min(int64(len(b)-n), p.size-within)
		m, err := p.f.ReadAt(b[n:n+int(want)], p.off+within)
		n += m
		off += int64(m)
		if err != nil && !(errors.Is(err, io.EOF) && int64(m) == want) {
			return n, fmt.Errorf("reading segment at %d: %w", p.start, err)
		}
		i++
	}
	if n < len(b) {
		return n, io.EOF
	}
	return n, nil
}

func (o *object) Close() error {
	seen := map[*os.File]bool{}
	var first error
	for _, p := range o.parts {
		if !seen[p.f] {
			seen[p.f] = true
			if err := p.f.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// sendChunk is the most writeRange hands to w in one call.
const sendChunk = 16 << 20

// writeRange writes [off, off+n) to w segment by segment, each as a
// length-limited *os.File so net/http can hand it to sendfile.
func (o *object) writeRange(w io.Writer, off, n int64) error {
	end := off + n
	for _, p := range o.parts {
		if p.start+p.size <= off || p.start >= end {
			continue
		}
		from := max(off, p.start)
		to := min(end, p.start+p.size)
		if _, err := p.f.Seek(p.off+from-p.start, io.SeekStart); err != nil {
			return fmt.Errorf("seeking segment at %d: %w", p.start, err)
		}
		// A few MiB per call: a writer that bounds each write's time
		// (a stream's idle deadline) then bounds a slow client's pace,
		// not a whole layer's transfer.
		for from < to {
			n := min(to-from, sendChunk)
			if _, err := io.Copy(w, &io.LimitedReader{R: p.f, N: n}); err != nil {
				return err
			}
			from += n
		}
	}
	return nil
}

// objectReader reads an object from its start. It writes itself to a
// writer a file segment at a time (WriteTo), so a stream of it to a
// network connection goes through sendfile, not user space.
type objectReader struct {
	obj *object
	pos int64
}

func (r *objectReader) Read(b []byte) (int, error) {
	if r.pos >= r.obj.size {
		return 0, io.EOF
	}
	n, err := r.obj.ReadAt(b[:min(int64(len(b)), r.obj.size-r.pos)], r.pos)
	r.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// WriteTo writes the rest of the object to w.
func (r *objectReader) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	err := r.obj.writeRange(cw, r.pos, r.obj.size-r.pos)
	r.pos += cw.n
	return cw.n, err
}

// Seek moves the read position (a stream resuming inside an entry).
func (r *objectReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += r.pos
	case io.SeekEnd:
		off += r.obj.size
	default:
		return r.pos, fmt.Errorf("seeking: whence %d", whence)
	}
	if off < 0 {
		return r.pos, fmt.Errorf("seeking to %d", off)
	}
	r.pos = off
	return off, nil
}

func (r *objectReader) Close() error { return r.obj.Close() }

// countWriter counts what passes to w, keeping w's ReadFrom (sendfile).
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.w, r)
	c.n += n
	return n, err
}
