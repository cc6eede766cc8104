package tarplan

import (
	"fmt"

	"github.com/opencontainers/go-digest"
)

// Limits are the multipart rules a stitched tar must obey.
type Limits struct {
	MinPart  int64 // every part but the last is at least this big
	MaxPart  int64 // every part is at most this big
	MaxParts int   // at most this many parts
}

// S3Limits are Amazon S3's multipart upload rules.
var S3Limits = Limits{MinPart: 5 << 20, MaxPart: 5 << 30, MaxParts: 10_000}

// Part is one part of the stitched tar, numbered from 1 in tar order. A
// part copies a byte range of one stored entry (Digest set) or uploads a
// byte range of the tail (Digest empty).
type Part struct {
	Number int
	Offset int64 // in the tar
	Size   int64
	// Digest names the stored entry a copy part reads from; SourceOffset is
	// the offset within that entry object (or within the tail).
	Digest       digest.Digest
	SourceOffset int64
}

// Copy reports whether the part is copied from a stored entry.
func (p Part) Copy() bool { return p.Digest != "" }

// Parts splits a layout into multipart parts: each stored entry into
// near-equal copy parts of at most MaxPart, then the tail into upload
// parts. Stored entries are at least BigEntryMin (= S3's MinPart), so with
// S3Limits every part but the last obeys MinPart.
func Parts(l Layout, lim Limits) ([]Part, error) {
	if lim.MinPart <= 0 || lim.MaxPart/2 < lim.MinPart || lim.MaxParts < 1 {
		return nil, fmt.Errorf("planning parts: unusable limits %+v", lim)
	}
	// Count first: a hostile manifest must not make us build millions of
	// parts only to refuse them.
	count := pieces(l.Size-l.TailOffset, lim.MaxPart)
	for _, e := range l.Entries[:l.Stored] {
		count += pieces(e.Len(), lim.MaxPart)
	}
	if count > int64(lim.MaxParts) {
		return nil, fmt.Errorf("planning parts: %d parts needed, more than the %d allowed", count, lim.MaxParts)
	}
	parts := make([]Part, 0, count)
	add := func(offset, size int64, d digest.Digest, srcOffset int64) {
		parts = append(parts, Part{Number: len(parts) + 1, Offset: offset, Size: size, Digest: d, SourceOffset: srcOffset})
	}
	for _, e := range l.Entries[:l.Stored] {
		if e.Len() < lim.MinPart {
			return nil, fmt.Errorf("planning parts: stored entry %s is %d bytes, under the %d-byte minimum part", e.Name, e.Len(), lim.MinPart)
		}
		for _, r := range split(e.Len(), lim.MaxPart) {
			add(e.Offset+r[0], r[1], e.Digest, r[0])
		}
	}
	tailLen := l.Size - l.TailOffset
	for _, r := range split(tailLen, lim.MaxPart) {
		add(l.TailOffset+r[0], r[1], "", r[0])
	}
	return parts, nil
}

// split cuts n bytes into the fewest near-equal ranges of at most max
// bytes, as {offset, size} pairs. Near-equal keeps every range at least
// max/2, so none falls under a minimum that is at most half the maximum.
func split(n, max int64) [][2]int64 {
	k := pieces(n, max)
	if k == 0 {
		return nil
	}
	base, extra := n/k, n%k
	out := make([][2]int64, 0, k)
	var off int64
	for i := int64(0); i < k; i++ {
		size := base
		if i < extra {
			size++
		}
		out = append(out, [2]int64{off, size})
		off += size
	}
	return out
}

// pieces is ceil(n/max) without overflow; 0 for n <= 0.
func pieces(n, max int64) int64 {
	if n <= 0 {
		return 0
	}
	k := n / max
	if n%max != 0 {
		k++
	}
	return k
}
