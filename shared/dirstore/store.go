// Package dirstore is the object store of local mode: a data directory in
// place of S3. Objects are written to a temporary file and renamed into
// place only when complete; a stitched tar is a recipe of byte ranges of
// stored entries plus its tail, the local twin of S3's UploadPartCopy, so
// a tar of cached layers costs no copy.
package dirstore

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/tarport/tarport/shared/tarplan"
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

// Put writes exactly size bytes from r under key, atomically.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	return s.writeAtomic(ctx, p, r, size)
}

func (s *Store) writeAtomic(ctx context.Context, dst string, r io.Reader, size int64) (err error) {
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
	src := io.Reader(&ctxReader{ctx: ctx, r: r})
	if size >= 0 {
		// One byte more than promised is enough to refuse a long body
		// without writing all of it.
		src = io.LimitReader(src, size+1)
	}
	n, err := io.Copy(newWriteback(tmp), src)
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

// Get opens a plain or stitched object.
func (s *Store) Get(_ context.Context, key string) (io.ReadCloser, error) {
	obj, err := s.open(key)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(obj, 0, obj.size), obj}, nil
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
	return s.writeAtomic(ctx, p, bytes.NewReader(b), int64(len(b)))
}

// recipe lists the byte ranges a stitched object is made of.
type recipe struct {
	Size     int64     `json:"size"`
	Segments []segment `json:"segments"`
}

type segment struct {
	Key    string `json:"key"`
	Offset int64  `json:"offset"` // within the source object
	Size   int64  `json:"size"`
}

// Stitch writes the tail as an object of its own and a recipe that points
// at entry ranges and tail ranges, part by part, as S3 would copy them.
func (s *Store) Stitch(ctx context.Context, key string, parts []tarplan.Part, entryKey func(digest.Digest) string, tail download.TailFunc) error {
	var tailStart, tailLen int64 = -1, 0
	for _, p := range parts {
		if !p.Copy() {
			if tailStart < 0 {
				tailStart = p.SourceOffset
			}
			tailLen += p.Size
		}
	}
	tailKey := key + ".tail"
	rec := recipe{}
	if tailLen > 0 {
		rc, err := tail(ctx, tailStart, tailLen)
		if err != nil {
			return fmt.Errorf("stitching %s: %w", key, err)
		}
		err = s.Put(ctx, tailKey, rc, tailLen)
		rc.Close()
		if err != nil {
			return fmt.Errorf("stitching %s: %w", key, err)
		}
	}
	for _, p := range parts {
		seg := segment{Key: tailKey, Offset: p.SourceOffset - tailStart, Size: p.Size}
		if p.Copy() {
			seg = segment{Key: entryKey(p.Digest), Offset: p.SourceOffset, Size: p.Size}
			n, err := s.Size(ctx, seg.Key)
			if err != nil {
				return fmt.Errorf("stitching %s: entry %s: %w", key, p.Digest, err)
			}
			if seg.Offset+seg.Size > n {
				return fmt.Errorf("stitching %s: part %d reads past entry %s", key, p.Number, p.Digest)
			}
		}
		rec.Segments = append(rec.Segments, seg)
		rec.Size += p.Size
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding recipe of %s: %w", key, err)
	}
	p, err := s.path(key)
	if err != nil {
		return err
	}
	return s.writeAtomic(ctx, p+recipeSuffix, bytes.NewReader(b), int64(len(b)))
}

func (s *Store) loadRecipe(key string) (recipe, error) {
	p, err := s.path(key)
	if err != nil {
		return recipe{}, err
	}
	b, err := os.ReadFile(p + recipeSuffix)
	if errors.Is(err, fs.ErrNotExist) {
		return recipe{}, notFound(key, err)
	}
	if err != nil {
		return recipe{}, fmt.Errorf("reading recipe of %s: %w", key, err)
	}
	var r recipe
	if err := json.Unmarshal(b, &r); err != nil {
		return recipe{}, fmt.Errorf("decoding recipe of %s: %w", key, err)
	}
	return r, nil
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
