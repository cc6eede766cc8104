package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/tarport"
)

// A stream follows a layer while its own job's task writes it (where the
// store lets it: WatchedObjects), so the tar flows from the first byte
// the registry sends rather than from the first layer stored. The rule
// that no one holds an unverified layer whole: the layer's last byte
// leaves only once the write completed, which is once the registry
// adapter's reader checked size and digest at the end of the body. When
// a write fails after bytes of it were sent, the stream hashes what it
// sent (from the failed write's file, which is then let go) and waits for
// the next attempt (or the stored entry) to have as many bytes: the same
// digest, it goes on from where it was; another (the bytes sent were not
// the layer's), it is cut, as it is when the layer fails for good. Only the
// job's own task's write is followed: bytes another job fetches are this
// job's only after its origin authorized this requester, which the task
// checks once they are stored.

// liveWrite is one attempt of a task writing a layer's entry.
type liveWrite struct {
	mu   sync.Mutex
	path string // the file being written; "" until the write starts
	done bool
	err  error // the write failed
}

func (w *liveWrite) started(path string) {
	w.mu.Lock()
	w.path = path
	w.mu.Unlock()
}

func (w *liveWrite) finish(err error) {
	w.mu.Lock()
	w.done, w.err = true, err
	w.mu.Unlock()
}

func (w *liveWrite) state() (path string, done bool, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.path, w.done, w.err
}

// liveWrites are the writes in progress, by job and layer.
type liveWrites struct {
	mu sync.Mutex
	m  map[string]*liveWrite
}

func liveKey(job string, layer int) string { return job + "/" + strconv.Itoa(layer) }

// begin registers a new attempt at writing layer of job.
func (l *liveWrites) begin(job string, layer int) *liveWrite {
	w := &liveWrite{}
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*liveWrite{}
	}
	l.m[liveKey(job, layer)] = w
	l.mu.Unlock()
	return w
}

func (l *liveWrites) get(job string, layer int) *liveWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[liveKey(job, layer)]
}

// end forgets layer of job: its task is over (streams reading it keep
// their own reference).
func (l *liveWrites) end(job string, layer int) {
	l.mu.Lock()
	delete(l.m, liveKey(job, layer))
	l.mu.Unlock()
}

// put is how a task stores its entry: watched where the store allows, so
// streams of the job can follow the write.
func (s *Service) put(ctx context.Context, t Task, key string, r io.Reader, size int64) error {
	wo, ok := s.objects.(WatchedObjects)
	if !ok {
		return s.objects.Put(ctx, key, r, size)
	}
	w := s.live.begin(t.JobID, t.Layer)
	err := wo.PutWatched(ctx, key, r, size, w.started)
	w.finish(err)
	return err
}

// entryReader reads the body of one layer's entry (after its tar header)
// for a stream: following the job's own write while it runs, else from
// the stored entry once the layer is finished for the job.
type entryReader struct {
	ctx    context.Context
	s      *Service
	job    string
	layer  int
	d      descriptor.Descriptor
	origin []tarport.Origin
	off    int64 // next offset in the entry
	start  int64 // where the body starts (the header's length)
	size   int64 // the entry's length

	cur    io.ReadCloser // the stored entry, at off
	live   *liveWrite    // the write followed
	file   *os.File      // live's file
	failed *liveWrite    // the last write that failed (or was gone), not to follow again
	// sent is the SHA-256 of [start, off) when those bytes came from a
	// write that failed; until the next source's [start, off) hashed the
	// same (check, over [start, checked)), nothing more is sent.
	sent    []byte
	check   hash.Hash
	checked int64
	buf     []byte        // for hashing, made when first needed
	polled  time.Time     // the last read of the job
	idle    time.Duration // the current wait for new bytes
}

func (e *entryReader) Read(b []byte) (int, error) {
	if e.off >= e.size {
		return 0, io.EOF
	}
	b = b[:min(int64(len(b)), e.size-e.off)]
	for {
		if e.cur != nil {
			n, err := e.cur.Read(b)
			e.off += int64(n)
			return n, err
		}
		if n, err := e.follow(b); n > 0 || err != nil {
			e.idle = 0
			return n, err
		}
		if err := e.checkJob(); err != nil || e.cur != nil {
			if err != nil {
				return 0, err
			}
			continue
		}
		// Nothing new: wait, longer the longer nothing comes (2 ms while
		// a write streams in, up to streamPoll when it stalls or waits).
		e.idle = min(max(2*e.idle, 2*time.Millisecond), streamPoll)
		select {
		case <-e.ctx.Done():
			return 0, e.ctx.Err()
		case <-time.After(e.idle):
		}
	}
}

// follow reads what the live write has on disk: all but the layer's last
// byte while the write runs, the rest once it completed.
func (e *entryReader) follow(b []byte) (int, error) {
	if e.live == nil {
		w := e.s.live.get(e.job, e.layer)
		if w == nil || w == e.failed {
			return 0, nil
		}
		e.live = w
	}
	path, done, werr := e.live.state()
	switch {
	case werr != nil:
		return 0, e.attemptFailed(werr)
	case path == "":
		return 0, nil
	}
	if e.file == nil {
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			// Renamed into place (or removed after a failure) before this
			// stream reached it: the next look at the write says which;
			// a stored entry is read once the layer counts as finished.
			if _, done, _ := e.live.state(); done {
				e.failed, e.live = e.live, nil
			}
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("following layer %s: %w", e.d.Digest, err)
		}
		e.file = f
	}
	// Until the write completed (the digest checked), the layer's last
	// byte stays back: its padding comes after it, so holding the entry's
	// last byte alone would let the whole layer out. An empty layer holds
	// its header's last byte.
	limit := e.size
	if !done {
		limit = e.size - 1
		if e.d.Size > 0 {
			limit = e.start + e.d.Size - 1
		}
	}
	if e.sent != nil {
		if matched, err := e.matchSent(e.file.ReadAt); err != nil || !matched {
			return 0, err
		}
	}
	if e.off >= limit {
		return 0, nil
	}
	n, err := e.file.ReadAt(b[:min(int64(len(b)), limit-e.off)], e.off)
	e.off += int64(n)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, fmt.Errorf("following layer %s: %w", e.d.Digest, err)
	}
	return n, nil
}

// checkJob reads the job now and then: a failed job ends the read; a
// finished layer is read from its stored entry from here on.
func (e *entryReader) checkJob() error {
	if time.Since(e.polled) < streamPoll {
		return nil
	}
	e.polled = time.Now()
	job, err := e.s.jobs.Get(e.ctx, e.job)
	if err != nil {
		return err
	}
	if job.Status == tarport.StatusFailed {
		return job.Failure()
	}
	if e.layer >= len(job.Layers) || !job.Layers[e.layer].Finished {
		return nil
	}
	// A followed write's failure is taken first, whatever the job says
	// since: what it sent must be compared with the stored entry.
	if e.live != nil {
		if _, _, werr := e.live.state(); werr != nil {
			if err := e.attemptFailed(werr); err != nil {
				return err
			}
		}
	}
	key, err := e.s.storedEntry(e.ctx, e.job, e.origin, e.d)
	if err != nil {
		return err
	}
	rc, err := e.s.objects.Get(e.ctx, key)
	if err != nil {
		return err
	}
	if err := e.resumeStored(rc); err != nil {
		rc.Close()
		return fmt.Errorf("reading entry %s: %w", key, err)
	}
	e.closeFile()
	e.cur, e.live = rc, nil
	return nil
}

// attemptFailed takes the failure of the followed write: with nothing of
// it sent, the stream waits for the next attempt; with bytes sent, it
// keeps their digest (read back from the write's file, whose name is gone
// but whose bytes are not) to compare with the next source before it
// sends more.
func (e *entryReader) attemptFailed(werr error) error {
	e.failed, e.live = e.live, nil
	defer e.closeFile()
	e.check, e.checked = nil, e.start // the next source is hashed from the start
	switch {
	case e.off == e.start:
	case e.sent != nil:
		// This attempt was still being compared (it sent nothing): the
		// digest of what was sent stands.
	case e.file != nil:
		h := sha256.New()
		if err := e.hashRange(h, e.file.ReadAt, e.start, e.off); err != nil {
			return fmt.Errorf("layer %s: reading back the bytes sent: %w", e.d.Digest, err)
		}
		e.sent = h.Sum(nil)
	default:
		return tarport.Wrap(werr, tarport.CodeUpstream, "layer %s failed after part of it was sent", e.d.Digest)
	}
	return nil
}

// hashRange hashes [from, to) of readAt into h, in order, while the
// stream's context lasts. A short read is io.ErrUnexpectedEOF.
func (e *entryReader) hashRange(h hash.Hash, readAt func([]byte, int64) (int, error), from, to int64) error {
	n, err := e.hashAvailable(h, readAt, from, to)
	if err == nil && from+n < to {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// hashAvailable hashes what readAt has of [from, to) into h, stopping at
// the first short read (a write still under way); it returns how much.
func (e *entryReader) hashAvailable(h hash.Hash, readAt func([]byte, int64) (int, error), from, to int64) (int64, error) {
	if e.buf == nil {
		e.buf = make([]byte, 256<<10)
	}
	at := from
	for at < to {
		if err := e.ctx.Err(); err != nil {
			return at - from, err
		}
		want := min(int64(len(e.buf)), to-at)
		n, err := readAt(e.buf[:want], at)
		h.Write(e.buf[:n])
		at += int64(n)
		if err != nil && !errors.Is(err, io.EOF) {
			return at - from, err
		}
		if int64(n) < want {
			break
		}
	}
	return at - from, nil
}

// matchSent hashes what readAt has of the next source's [checked, off):
// true once all of [start, off) is hashed and matches the digest of the
// bytes sent, false while the rest is not written yet. Another digest is
// an error: the bytes sent were not the layer's.
func (e *entryReader) matchSent(readAt func([]byte, int64) (int, error)) (bool, error) {
	if e.check == nil {
		e.check, e.checked = sha256.New(), e.start
	}
	n, err := e.hashAvailable(e.check, readAt, e.checked, e.off)
	e.checked += n
	if err != nil {
		return false, fmt.Errorf("following layer %s: %w", e.d.Digest, err)
	}
	if e.checked < e.off {
		return false, nil
	}
	if !bytes.Equal(e.check.Sum(nil), e.sent) {
		return false, tarport.Errorf(tarport.CodeDigestMismatch, "layer %s: the %d bytes sent from a failed attempt are not the layer's", e.d.Digest, e.off-e.start)
	}
	e.sent, e.check = nil, nil
	return true, nil
}

// resumeStored moves the stored entry rc to off: past what was sent,
// which must be what it holds when it came from a failed write.
func (e *entryReader) resumeStored(rc io.Reader) error {
	if e.sent == nil {
		return skip(rc, e.off)
	}
	if err := skip(rc, e.start); err != nil {
		return err
	}
	e.check = nil // whatever a followed attempt matched, this is another source
	matched, err := e.matchSent(func(b []byte, _ int64) (int, error) {
		return io.ReadFull(rc, b) // matchSent reads in order
	})
	if err == nil && !matched {
		err = io.ErrUnexpectedEOF // a stored entry is whole
	}
	return err
}

// WriteTo hands a stored entry to w whole (sendfile, where the store's
// reader and w allow), and copies what is followed live.
func (e *entryReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	buf := make([]byte, 256<<10)
	for e.off < e.size {
		if wt, ok := e.cur.(io.WriterTo); ok {
			n, err := wt.WriteTo(w)
			e.off += n
			return total + n, err
		}
		n, err := e.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (e *entryReader) closeFile() {
	if e.file != nil {
		e.file.Close()
		e.file = nil
	}
}

func (e *entryReader) Close() error {
	e.closeFile()
	if e.cur != nil {
		return e.cur.Close()
	}
	return nil
}

// skip moves r n bytes on: a seek where r can, else a read.
func skip(r io.Reader, n int64) error {
	if sk, ok := r.(io.Seeker); ok {
		_, err := sk.Seek(n, io.SeekCurrent)
		return err
	}
	_, err := io.CopyN(io.Discard, r, n)
	return err
}
