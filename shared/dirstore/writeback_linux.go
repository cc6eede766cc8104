package dirstore

import (
	"os"

	"golang.org/x/sys/unix"
)

// writebackEvery is how much is written before the kernel is asked to
// start writing it out, so the fsync that publishes an object waits for
// the last stretch only, not for gigabytes.
const writebackEvery = 32 << 20

// writebackFile starts asynchronous writeback behind the writer.
type writebackFile struct {
	f       *os.File
	written int64
	flushed int64
}

func newWriteback(f *os.File) *writebackFile { return &writebackFile{f: f} }

func (w *writebackFile) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.written += int64(n)
	if w.written-w.flushed >= writebackEvery {
		// Best effort: a failure here only means the final fsync does it.
		_ = unix.SyncFileRange(int(w.f.Fd()), w.flushed, w.written-w.flushed, unix.SYNC_FILE_RANGE_WRITE)
		w.flushed = w.written
	}
	return n, err
}
