// Package dirstore is the object store of local mode: a data directory in
// place of S3. Objects are written to a temporary file and renamed into
// place only when complete; a stitched tar is a recipe of byte ranges of
// stored entries plus its tail, the local twin of S3's UploadPartCopy, so
// a tar of cached layers costs no copy.
package dirstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// Store keeps objects under a directory.
type Store struct {
	dir      string
	secret   []byte // signs download links
	writeErr ErrorWriter
}

var (
	_ download.Objects   = (*Store)(nil)
	_ download.MetaStore = (*Store)(nil)
	_ download.Signer    = (*Store)(nil)
)

// recipeSuffix marks a stitched object: its bytes are the segments listed.
const recipeSuffix = ".recipe"

// Open prepares dir (creating it) and loads or creates the link secret.
func Open(dir string) (*Store, error) {
	for _, sub := range []string{"objects", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, fmt.Errorf("preparing data directory: %w", err)
		}
	}
	// Temporary files of a crashed run are incomplete by definition.
	tmps, _ := filepath.Glob(filepath.Join(dir, "tmp", "*"))
	for _, t := range tmps {
		os.Remove(t)
	}
	secret, err := loadSecret(filepath.Join(dir, "link-secret"))
	if err != nil {
		return nil, err
	}
	return &Store{dir: dir, secret: secret}, nil
}

var keyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$`)

func (s *Store) path(key string) (string, error) {
	if !keyRE.MatchString(key) || strings.Contains(key, "..") {
		return "", fmt.Errorf("invalid object key %q", key)
	}
	return filepath.Join(s.dir, "objects", filepath.FromSlash(key)), nil
}

func notFound(key string, err error) error {
	return tarport.Wrap(err, tarport.CodeNotFound, "object %s not found", key)
}

// Size returns the size of a plain or stitched object.
func (s *Store) Size(_ context.Context, key string) (int64, error) {
	p, err := s.path(key)
	if err != nil {
		return 0, err
	}
	if fi, err := os.Stat(p); err == nil {
		return fi.Size(), nil
	}
	r, err := s.loadRecipe(key)
	if err != nil {
		return 0, err
	}
	return r.Size, nil
}

// Get opens a plain or stitched object.
func (s *Store) Get(_ context.Context, key string) (io.ReadCloser, error) {
	obj, err := s.open(key)
	if err != nil {
		return nil, err
	}
	return &objectReader{obj: obj}, nil
}

// GetRange returns exactly length bytes of key from offset on.
func (s *Store) GetRange(_ context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	obj, err := s.open(key)
	if err != nil {
		return nil, err
	}
	if offset < 0 || length <= 0 || offset > obj.size || length > obj.size-offset {
		obj.Close()
		return nil, fmt.Errorf("reading %s: bytes %d+%d are not a range of its %d", key, offset, length, obj.size)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(obj, offset, length), obj}, nil
}

// GetMeta returns a cached manifest or config.
func (s *Store) GetMeta(ctx context.Context, o tarport.Origin, d digest.Digest) ([]byte, error) {
	p, err := s.path(download.MetaKey(o, d))
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, notFound(download.MetaKey(o, d), err)
	}
	return b, err
}

// PutMeta caches a manifest or config; callers have verified d.
func (s *Store) PutMeta(ctx context.Context, o tarport.Origin, d digest.Digest, b []byte) error {
	p, err := s.path(download.MetaKey(o, d))
	if err != nil {
		return err
	}
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return s.writeAtomic(ctx, p, bytes.NewReader(b), int64(len(b)), nil)
}

// Delete removes an object, and the tail of a stitched one. Entries that
// recipes point at are shared and deleted only by the collector.
func (s *Store) Delete(_ context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	for _, f := range []string{p, p + recipeSuffix, p + ".tail"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("deleting %s: %w", key, err)
		}
	}
	return nil
}
