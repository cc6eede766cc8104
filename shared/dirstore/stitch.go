package dirstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarplan"
)

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
	return s.writeAtomic(ctx, p+recipeSuffix, bytes.NewReader(b), int64(len(b)), nil)
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
