package regtest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// WriteLarge pushes a linux/amd64 OCI image with one layer per entry of layerSizes, each
// an uncompressed tar of one file of incompressible data, so the registry's blob size
// is the requested size (rounded up to the 512-byte tar block; at least 1536 bytes).
//
// Layers are never held in memory: each is generated twice from a seeded keystream,
// once to compute its digest and once to upload it, so pushing 2 GiB layers takes a few
// MiB. The content depends on the repository, tag and position only, so pushing the same
// Dest again finds the blobs already there and uploads nothing.
func WriteLarge(ctx context.Context, dst Dest, layerSizes []int64) (Pushed, error) {
	s, err := newSession(dst)
	if err != nil {
		return Pushed{}, err
	}
	layers := make([]*generatedLayer, len(layerSizes))
	for i, size := range layerSizes {
		if layers[i], err = newGeneratedLayer(fmt.Sprintf("%s large layer %d", s.seed, i), size); err != nil {
			return Pushed{}, err
		}
	}
	// Digest layers in parallel, one per CPU: hashing is the slow part of this pass.
	var wg sync.WaitGroup
	errs := make([]error, len(layers))
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, l := range layers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = l.computeDigest(ctx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return Pushed{}, err
	}

	built := make([]layerBlob, len(layers))
	blobs := make([]v1.Layer, len(layers))
	for i, l := range layers {
		built[i] = layerBlob{
			desc:    Blob{Digest: l.digest.String(), Size: l.size, MediaType: MediaTypeOCILayer},
			diffID:  l.digest.String(), // uncompressed: the blob is the tar
			history: fmt.Sprintf("regtest: %d bytes of random data", l.content),
		}
		blobs[i] = l
	}
	// The layers have no bytes in memory, so assemble lists only the config to upload;
	// the generated layers go up beside it, streamed.
	img, err := assemble(v1.Platform{OS: "linux", Architecture: "amd64"}, false, built)
	if err != nil {
		return Pushed{}, err
	}
	if err := s.upload(ctx, append(img.blobs, blobs...)); err != nil {
		return Pushed{}, err
	}
	if err := s.put(ctx, s.tag, img.manifest, img.Manifest.MediaType); err != nil {
		return Pushed{}, err
	}
	return Pushed{Ref: dst.Ref, Images: []Image{img.Image}}, nil
}

// PushLarge is WriteLarge for tests and benchmarks.
func PushLarge(t testing.TB, reg *Registry, repo, tag string, layerSizes []int64) Pushed {
	t.Helper()
	p, err := WriteLarge(t.Context(), reg.Dest(repo, tag), layerSizes)
	if err != nil {
		t.Fatalf("pushing large image: %v", err)
	}
	return p
}

// generatedLayer is an uncompressed tar of one file of keystream data, re-generated on
// every read. It is a v1.Layer so the pusher can stream (and retry) it.
type generatedLayer struct {
	seed    string
	header  []byte // the tar header of the one file
	content int64  // bytes of file data
	size    int64  // the whole tar: header, data, padding, end-of-archive
	digest  v1.Hash
}

var _ v1.Layer = (*generatedLayer)(nil)

func newGeneratedLayer(seed string, size int64) (*generatedLayer, error) {
	target := max((size+511)/512*512, 3*512)
	content := target - 512 - 1024
	hdr, err := tarHeader(content)
	if err != nil {
		return nil, err
	}
	// Files of 8 GiB and more need a PAX size record, which makes the header longer:
	// take that from the data so the blob keeps the requested size.
	if extra := int64(len(hdr)) - 512; extra > 0 {
		content -= extra
		if hdr, err = tarHeader(content); err != nil {
			return nil, err
		}
	}
	l := &generatedLayer{seed: seed, header: hdr, content: content}
	l.size = int64(len(l.header)) + l.content + padding(l.content) + 1024
	return l, nil
}

func tarHeader(content int64) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// WriteHeader writes the header blocks at once; the data and the end-of-archive
	// blocks are streamed by open, not by this writer.
	err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "tarport/large.bin", Mode: 0o644, Size: content, ModTime: created})
	return buf.Bytes(), err
}

func padding(n int64) int64 { return (512 - n%512) % 512 }

// open returns the layer's bytes, generated as they are read.
func (l *generatedLayer) open() io.ReadCloser {
	return io.NopCloser(io.MultiReader(
		bytes.NewReader(l.header),
		io.LimitReader(newContent(l.seed, true), l.content),
		io.LimitReader(zeros{}, padding(l.content)+1024),
	))
}

func (l *generatedLayer) computeDigest(ctx context.Context) error {
	h := sha256.New()
	rc := l.open()
	defer rc.Close()
	buf := make([]byte, 1<<20)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("digesting %s: %w", l.seed, err)
		}
		n, err := rc.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("digesting %s: %w", l.seed, err)
		}
	}
	l.digest = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	return nil
}

func (l *generatedLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *generatedLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *generatedLayer) Compressed() (io.ReadCloser, error)   { return l.open(), nil }
func (l *generatedLayer) Uncompressed() (io.ReadCloser, error) { return l.open(), nil }
func (l *generatedLayer) Size() (int64, error)                 { return l.size, nil }
func (l *generatedLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(MediaTypeOCILayer), nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
