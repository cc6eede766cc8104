package dirstore

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Put writes exactly size bytes from r under key, atomically.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	return s.PutWatched(ctx, key, r, size, nil)
}

// PutWatched is Put that first tells started (if not nil) where the bytes
// are being written (a temporary file, renamed into place once whole), so
// a reader in this process can follow the write (download.WatchedObjects).
func (s *Store) PutWatched(ctx context.Context, key string, r io.Reader, size int64, started func(path string)) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	return s.writeAtomic(ctx, p, r, size, started)
}

func (s *Store) writeAtomic(ctx context.Context, dst string, r io.Reader, size int64, started func(string)) (err error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(dst), err)
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-*")
	if err != nil {
		return fmt.Errorf("creating temporary file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if started != nil {
		started(tmp.Name())
	}
	src := io.Reader(&ctxReader{ctx: ctx, r: r})
	if size >= 0 {
		// One byte more than promised is enough to refuse a long body
		// without writing all of it.
		src = io.LimitReader(src, size+1)
	}
	// A large buffer: fewer read and write system calls per GiB.
	n, err := io.CopyBuffer(newWriteback(tmp), src, make([]byte, min(max(size, 512), 1<<20)))
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(dst), err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("writing %s: got %d bytes, want %d", filepath.Base(dst), n, size)
	}
	// Synced before the rename: after a crash an object is whole or absent.
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", filepath.Base(dst), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", filepath.Base(dst), err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("publishing %s: %w", filepath.Base(dst), err)
	}
	return nil
}

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}
