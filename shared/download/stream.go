package download

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// streamPoll is how often a stream waiting for a layer reads its job, and
// the longest it waits between looks at a write it follows.
const streamPoll = 100 * time.Millisecond

// Stream returns the tar of a job while it is built: its bytes in order
// from the first, exactly the tar the stitch makes. A layer's bytes are
// read once its task has stored its entry (verified) and counted it for
// this job (the requester authorized by its origin), so no stream ever
// carries a byte that was not checked; tar headers, metadata and the end
// of the archive come from the plan. The reader waits for entries still being fetched
// (later ones go on downloading meanwhile) and fails when the job fails or
// expires: a server then cuts its response, so a client sees a short
// transfer, never a complete-looking file. Any number of streams may read
// one job. The caller must have authorized the requester for the job.
func (s *Service) Stream(ctx context.Context, job tarport.Job) (io.ReadCloser, error) {
	layout, layers, err := s.replan(ctx, job)
	if err != nil {
		return nil, err
	}
	index := map[digest.Digest]int{}
	for i, l := range job.Layers {
		index[l.Digest] = i
	}
	var segs []segment
	for _, e := range layout.Entries {
		if !e.Fetched() {
			segs = append(segs, inlineSegment(e, e.Offset))
			continue
		}
		i, ok := index[e.Digest]
		if !ok {
			return nil, fmt.Errorf("job %s has no layer %s", job.ID, e.Digest)
		}
		// The entry's header goes ahead of its bytes (the plan holds it):
		// a stream cut while the entry is awaited ends inside the entry,
		// which every tar reader reports as truncated. An empty layer's
		// entry is its header alone, read like a layer's bytes, so it too
		// waits for the layer (and holds its last byte back).
		d, hdr := layers[i].desc, int64(len(e.Header))
		origins, size := tarport.Origins(layers[i].ref, d), e.Len()
		first := hdr
		if e.Size == 0 {
			first = 0
		} else {
			segs = append(segs, bytesSegment(e.Offset, e.Header))
		}
		segs = append(segs, segment{start: e.Offset + first, size: size - first, open: func(ctx context.Context) (io.ReadCloser, error) {
			return &entryReader{ctx: ctx, s: s, job: job.ID, layer: i, d: d, origin: origins, off: first, start: first, size: size}, nil
		}})
	}
	end := layout.Entries[len(layout.Entries)-1]
	eoa := layout.Size - (end.Offset + end.Len())
	segs = append(segs, bytesSegment(layout.Size-eoa, make([]byte, eoa)))
	return newSegmentReader(ctx, segs, 0, layout.Size), nil
}

// Job reads a job as it is stored, for a caller that authorized its
// requester otherwise (a signed stream link).
func (s *Service) Job(ctx context.Context, id string) (tarport.Job, error) {
	return s.jobs.Get(ctx, id)
}

// inlineSegment is an entry whose bytes the plan holds (metadata, an empty
// layer), at start: its header, content and padding.
func inlineSegment(e tarplan.Entry, start int64) segment {
	whole := make([]byte, 0, e.Len())
	whole = append(append(append(whole, e.Header...), e.Inline...), tarplan.Padding(e.Size)...)
	return bytesSegment(start, whole)
}

// bytesSegment is a segment of bytes held in memory, at start.
func bytesSegment(start int64, b []byte) segment {
	return segment{start: start, size: int64(len(b)), open: func(context.Context) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}}
}

// storedEntry is the key of layer d's stored entry for a job whose task
// finished it: under the first of its origins holding it, as the stitch
// picks it.
func (s *Service) storedEntry(ctx context.Context, id string, origins []tarport.Origin, d descriptor.Descriptor) (string, error) {
	key, ok, err := s.storedKey(ctx, origins, d)
	if err == nil && !ok {
		err = tarport.Errorf(tarport.CodeInternal, "layer %s of download %s is done but its entry is not stored", d.Digest, id)
	}
	return key, err
}
