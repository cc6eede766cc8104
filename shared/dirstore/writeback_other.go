//go:build !linux

package dirstore

import "os"

// writebackFile is a plain writer where sync_file_range does not exist.
type writebackFile struct{ f *os.File }

func newWriteback(f *os.File) *writebackFile { return &writebackFile{f: f} }

func (w *writebackFile) Write(b []byte) (int, error) { return w.f.Write(b) }
