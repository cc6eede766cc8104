package regtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
)

// EmptyLayerDigest is the digest of the canonical gzipped empty tar (1024 zero bytes)
// that BuildKit and containerd write for steps that change no files (WORKDIR, ENV);
// EmptyLayerDiffID is its uncompressed digest.
const (
	EmptyLayerDigest = "sha256:4f4fb700ef54461cfa02571ae0db9a0dc1e0cdb5577484a6d75e68dc38e8acc1"
	EmptyLayerDiffID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
)

// emptyLayer is the blob behind EmptyLayerDigest, byte for byte as BuildKit writes it.
var emptyLayer = []byte{
	0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x62, 0x18, 0x05, 0xa3, 0x60, 0x14,
	0x8c, 0x58, 0x00, 0x08, 0x00, 0x00, 0xff, 0xff, 0x2e, 0xaf, 0xb5, 0xef, 0x00, 0x04, 0x00, 0x00,
}

// Compression is how a layer's tar is stored in the registry.
type Compression int

const (
	Gzip         Compression = iota // tar+gzip, the default
	Zstd                            // tar+zstd (OCI media types only)
	Uncompressed                    // plain tar
)

// ImageSpec describes a single-platform image for WriteImage. Its zero value is an OCI
// linux/amd64 image without layers.
type ImageSpec struct {
	Platform string // "os/arch[/variant]"; default "linux/amd64"
	// Docker selects Docker v2 schema2 media types (manifest, config, layers) instead of OCI.
	Docker bool
	Layers []LayerSpec
}

// LayerSpec describes one layer: a real tar with real files, so runtimes can unpack it.
// Its zero value is a tiny gzip layer holding two directories, unique to its position,
// so make([]LayerSpec, 120) is an image of 120 distinct tiny layers.
//
// Content is deterministic. Two LayerSpecs that are equal and have the same non-empty
// Seed give byte-identical layers: that is how to write a layer twice into one image,
// or share a base layer between images.
type LayerSpec struct {
	Size        int64             // bytes of file content, in files of at most 1 MiB under tarport/<id>/
	Random      bool              // incompressible content; otherwise repetitive text
	Compression Compression       // Gzip, Zstd or Uncompressed
	Files       map[string]string // extra files by path (e.g. "etc/os-release"), with their content
	Seed        string            // names the content; empty means unique to the image, platform and position
	// Empty makes this the canonical empty layer (EmptyLayerDigest); the other fields
	// are ignored.
	Empty bool
}

// WriteImage pushes the single-platform image spec describes to dst.Ref.
func WriteImage(ctx context.Context, dst Dest, spec ImageSpec) (Pushed, error) {
	s, err := newSession(dst)
	if err != nil {
		return Pushed{}, err
	}
	img, err := buildImage(spec, s.seed)
	if err != nil {
		return Pushed{}, fmt.Errorf("building %s: %w", dst.Ref, err)
	}
	if err := s.pushImage(ctx, img, s.tag); err != nil {
		return Pushed{}, err
	}
	return Pushed{Ref: dst.Ref, Images: []Image{img.Image}}, nil
}

// PushImage is WriteImage for tests: it pushes to repo:tag on reg and fails t on error.
func PushImage(t testing.TB, reg *Registry, repo, tag string, spec ImageSpec) Pushed {
	t.Helper()
	p, err := WriteImage(t.Context(), reg.Dest(repo, tag), spec)
	if err != nil {
		t.Fatalf("pushing image: %v", err)
	}
	return p
}

func buildImage(spec ImageSpec, seed string) (builtImage, error) {
	platform := spec.Platform
	if platform == "" {
		platform = "linux/amd64"
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		return builtImage{}, fmt.Errorf("parsing platform: %w", err)
	}
	layers := make([]layerBlob, len(spec.Layers))
	for i, ls := range spec.Layers {
		s := ls.Seed
		if s == "" {
			s = fmt.Sprintf("%s %s layer %d", seed, platform, i)
		}
		if layers[i], err = buildLayer(ls, s, spec.Docker); err != nil {
			return builtImage{}, fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return assemble(*p, spec.Docker, layers)
}

// buildLayer makes the tar spec describes and compresses it.
func buildLayer(spec LayerSpec, seed string, docker bool) (layerBlob, error) {
	if spec.Empty {
		mt := MediaTypeOCILayerGzip
		if docker {
			mt = MediaTypeDockerLayer
		}
		return layerBlob{desc: blobOf(emptyLayer, mt), diffID: EmptyLayerDiffID, data: emptyLayer,
			history: "regtest: empty layer"}, nil
	}
	raw, err := layerTar(spec, seed)
	if err != nil {
		return layerBlob{}, err
	}
	var data []byte
	var mt string
	switch spec.Compression {
	case Gzip:
		data, mt = gzipBytes(raw), MediaTypeOCILayerGzip
		if docker {
			mt = MediaTypeDockerLayer
		}
	case Zstd:
		if docker {
			// Docker schema2 has no zstd media type; builders refuse this too.
			return layerBlob{}, errors.New("zstd layers need OCI media types")
		}
		enc, err := zstd.NewWriter(nil)
		if err != nil {
			return layerBlob{}, err
		}
		data, mt = enc.EncodeAll(raw, nil), MediaTypeOCILayerZstd
		enc.Close()
	case Uncompressed:
		data, mt = raw, MediaTypeOCILayer
		if docker {
			mt = MediaTypeDockerLayerTar
		}
	default:
		return layerBlob{}, fmt.Errorf("unknown compression %d", spec.Compression)
	}
	return layerBlob{
		desc:    blobOf(data, mt),
		diffID:  digestOf(raw),
		data:    data,
		history: fmt.Sprintf("regtest: %d bytes of files (%s)", spec.Size, mt),
	}, nil
}

// layerTar writes spec.Files, then spec.Size bytes of content under tarport/<id>/,
// where id comes from the seed so layers with different seeds always differ.
func layerTar(spec LayerSpec, seed string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdirs := func(file string) error {
		var parent string
		for _, part := range strings.Split(path.Dir(file), "/") {
			if part == "." || part == "" {
				continue
			}
			parent += part + "/"
			if dirs[parent] {
				continue
			}
			dirs[parent] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: parent, Mode: 0o755, ModTime: created}); err != nil {
				return err
			}
		}
		return nil
	}
	writeFile := func(name string, size int64, r io.Reader) error {
		if err := mkdirs(name); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: created}); err != nil {
			return err
		}
		_, err := io.CopyN(tw, r, size)
		return err
	}
	names := make([]string, 0, len(spec.Files))
	for n := range spec.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := writeFile(strings.TrimPrefix(n, "/"), int64(len(spec.Files[n])), strings.NewReader(spec.Files[n])); err != nil {
			return nil, err
		}
	}
	sum := sha256.Sum256([]byte(seed))
	dir := "tarport/" + hex.EncodeToString(sum[:6]) + "/"
	if err := mkdirs(dir + "x"); err != nil {
		return nil, err
	}
	content := newContent(seed, spec.Random)
	const fileSize = 1 << 20
	for i, off := 0, int64(0); off < spec.Size; i, off = i+1, off+fileSize {
		n := min(fileSize, spec.Size-off)
		if err := writeFile(fmt.Sprintf("%sdata-%04d", dir, i), n, content); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// newContent returns an endless deterministic stream for seed: AES-CTR keystream when
// random (incompressible and fast, also for multi-GiB layers), else a repeated line.
func newContent(seed string, random bool) io.Reader {
	if !random {
		return &repeatReader{pattern: []byte("tarport regtest content " + seed + "\n")}
	}
	key := sha256.Sum256([]byte(seed))
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 32-byte key is always valid
	}
	return keystream{cipher.NewCTR(block, make([]byte, aes.BlockSize))}
}

type keystream struct{ s cipher.Stream }

func (k keystream) Read(p []byte) (int, error) {
	clear(p)
	k.s.XORKeyStream(p, p)
	return len(p), nil
}

type repeatReader struct {
	pattern []byte
	off     int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.pattern[r.off:])
		n += c
		r.off = (r.off + c) % len(r.pattern)
	}
	return n, nil
}

func gzipBytes(raw []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf) // no name, zero mtime: the same bytes every run
	zw.Write(raw)
	zw.Close()
	return buf.Bytes()
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}
