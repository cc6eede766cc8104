// Package tarplan lays out the tar of one image before a byte is fetched:
// every entry's header, offset and size, the metadata files, and the split
// of the whole into S3 multipart parts. It is pure code: no I/O, no clock.
package tarplan

import (
	"archive/tar"
	"bytes"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

const (
	blockSize = 512
	// endOfArchive is the two zero blocks that close a tar.
	endOfArchive = 2 * blockSize
	// ustarMaxSize is the largest size a ustar header's 11 octal digits hold
	// (8 GiB - 1); bigger files need a PAX size record.
	ustarMaxSize = 1<<33 - 1
)

// fixedModTime makes headers independent of when a tar is built, so one
// layer's entry bytes are the same in every image that contains it.
var fixedModTime = time.Unix(0, 0).UTC()

// BlobName is the path of a blob inside the tar: blobs/sha256/<hex>.
func BlobName(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// Header returns the tar header bytes for a regular file of the given name
// and size: ustar up to 8 GiB - 1, PAX (a size record) beyond. Mode 0644,
// uid/gid 0, mtime 0: a pure function of its arguments.
func Header(name string, size int64) ([]byte, error) {
	if size < 0 {
		return nil, fmt.Errorf("building tar header for %s: negative size %d", name, size)
	}
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     0o644,
		Size:     size,
		ModTime:  fixedModTime,
		Format:   tar.FormatUSTAR,
	}
	if size > ustarMaxSize || len(name) > 100 {
		hdr.Format = tar.FormatPAX
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("building tar header for %s: %w", name, err)
	}
	// Not closing tw on purpose: Close would demand the file's bytes and
	// append the end-of-archive blocks; only the header is wanted here.
	return buf.Bytes(), nil
}

// padding is how many zero bytes follow size content bytes in a tar.
func padding(size int64) int64 {
	return (blockSize - size%blockSize) % blockSize
}

// EntryLen is the length of a whole tar entry: header, content, padding.
func EntryLen(headerLen int, size int64) int64 {
	return int64(headerLen) + size + padding(size)
}

// Padding returns the zero bytes that close an entry of the given size.
func Padding(size int64) []byte {
	return make([]byte, padding(size))
}

// InlineEntry returns the complete entry bytes (header, content, padding)
// for a small file whose content is in memory.
func InlineEntry(name string, content []byte) ([]byte, error) {
	hdr, err := Header(name, int64(len(content)))
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, EntryLen(len(hdr), int64(len(content))))
	out = append(out, hdr...)
	out = append(out, content...)
	return append(out, Padding(int64(len(content)))...), nil
}
