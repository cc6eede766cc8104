package download

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarport"
)

var (
	_ RangeRegistry = (*fakeRegistry)(nil)
	_ PartedObjects = (*fakeObjects)(nil)
	_ RangedObjects = (*fakeObjects)(nil)
)

// GetRange serves a range of a stored object.
func (f *fakeObjects) GetRange(_ context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if f.onRange != nil {
		f.onRange(key)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ranges++
	b, ok := f.objs[key]
	if !ok {
		return nil, notFoundErr(key)
	}
	if offset < 0 || length < 0 || offset+length > int64(len(b)) {
		return nil, fmt.Errorf("range %d+%d of the %d-byte %s", offset, length, len(b), key)
	}
	return io.NopCloser(bytes.NewReader(b[offset : offset+length])), nil
}

// OpenBlobRange serves a range of a blob, unverified as the real one;
// corrupt flips the first byte of every range of that blob.
func (f *fakeRegistry) OpenBlobRange(_ context.Context, _ ref.Ref, d descriptor.Descriptor, o tarport.Origin, offset, length int64, _ tarport.Credentials) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ranges++
	f.origins = append(f.origins, o)
	b, ok := f.blobs[d.Digest]
	if !ok {
		return nil, tarport.Errorf(tarport.CodeNotFound, "blob %s not found", d.Digest)
	}
	if offset < 0 || length <= 0 || offset+length > int64(len(b)) {
		return nil, fmt.Errorf("range %d+%d of a %d-byte blob", offset, length, len(b))
	}
	out := bytes.Clone(b[offset : offset+length])
	if f.corrupt[d.Digest] {
		out[0] ^= 0xff
	}
	return io.NopCloser(chunked(bytes.NewReader(out), 4096)), nil
}

// upload is one parted object being written.
type upload struct {
	key   string
	parts map[int][]byte
}

func (f *fakeObjects) BeginParts(_ context.Context, key string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.uploads == nil {
		f.uploads = map[string]*upload{}
	}
	f.uploadSeq++
	id := "upload-" + strconv.Itoa(f.uploadSeq)
	f.uploads[id] = &upload{key: key, parts: map[int][]byte{}}
	return id, nil
}

func (f *fakeObjects) PutPart(_ context.Context, key, uploadID string, n int, r io.Reader, size int64) error {
	b, err := io.ReadAll(r)
	if err == nil && int64(len(b)) != size {
		err = fmt.Errorf("part %d of %s: %d bytes, want %d", n, key, len(b), size)
	}
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.uploads[uploadID]
	if !ok || u.key != key {
		return fmt.Errorf("no upload %s of %s", uploadID, key)
	}
	u.parts[n] = b
	f.partPuts++
	return nil
}

func (f *fakeObjects) FinishParts(_ context.Context, key, uploadID string, count int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.uploads[uploadID]
	if !ok {
		if _, done := f.objs[key]; done {
			return nil
		}
		return fmt.Errorf("no upload %s of %s", uploadID, key)
	}
	var out bytes.Buffer
	for n := 1; n <= count; n++ {
		p, ok := u.parts[n]
		if !ok {
			return fmt.Errorf("upload %s lacks part %d", uploadID, n)
		}
		out.Write(p)
	}
	delete(f.uploads, uploadID)
	f.objs[key] = out.Bytes()
	return nil
}

func (f *fakeObjects) AbortParts(_ context.Context, _ string, uploadID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.uploads, uploadID)
	return nil
}

func (f *fakeObjects) Move(_ context.Context, from, to string, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.objs[from]
	if !ok {
		if got, done := f.objs[to]; done && int64(len(got)) == size {
			return nil
		}
		return notFoundErr(from)
	}
	if int64(len(b)) != size {
		return fmt.Errorf("moving %s: %d bytes, want %d", from, len(b), size)
	}
	f.objs[to] = b
	delete(f.objs, from)
	f.moves++
	return nil
}

func (f *fakeObjects) Delete(_ context.Context, key string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.objs, key)
	return nil
}

func (f *fakeObjects) openUploads() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.uploads)
}

func (f *fakeObjects) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.objs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
