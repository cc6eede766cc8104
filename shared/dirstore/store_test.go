package dirstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/download/objectstest"
	"github.com/tarport/tarport/shared/tarport"
)

// openStore opens a store in a directory of its own (not the TempDir
// itself, so an escaping key would land somewhere the test can see).
func openStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s, dir
}

// tmpFiles lists what is left in the store's temporary directory.
func tmpFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// allFiles lists every regular file under root, relative to it.
func allFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func readAll(t *testing.T, s *Store, key string) []byte { return objectstest.ReadAll(t, s, key) }

// assertAbsent checks that key is not visible through any read method.
func assertAbsent(t *testing.T, s *Store, key string) {
	t.Helper()
	ctx := context.Background()
	if n, err := s.Size(ctx, key); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Errorf("Size(%s) = %d, %v; want not_found", key, n, err)
	}
	if rc, err := s.Get(ctx, key); tarport.ErrorCode(err) != tarport.CodeNotFound {
		if rc != nil {
			rc.Close()
		}
		t.Errorf("Get(%s) err = %v; want not_found", key, err)
	}
}

// failingReader yields n bytes then fails.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(b []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(b), r.n)
	for i := range k {
		b[i] = 'x'
	}
	r.n -= k
	return k, nil
}

var errBroken = errors.New("connection broke")

func TestPut(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		r       func() io.Reader
		size    int64
		wantErr bool
	}{
		{name: "exact", r: func() io.Reader { return bytes.NewReader(body) }, size: int64(len(body))},
		{name: "empty object", r: func() io.Reader { return strings.NewReader("") }, size: 0},
		{name: "reader fails mid-way", r: func() io.Reader { return &failingReader{n: 10000, err: errBroken} }, size: 20000, wantErr: true},
		{name: "reader fails after the last byte", r: func() io.Reader { return &failingReader{n: 100, err: errBroken} }, size: 100, wantErr: true},
		{name: "short body", r: func() io.Reader { return bytes.NewReader(body[:1000]) }, size: int64(len(body)), wantErr: true},
		{name: "long body", r: func() io.Reader { return bytes.NewReader(body) }, size: 1000, wantErr: true},
		{name: "empty body for a sized object", r: func() io.Reader { return strings.NewReader("") }, size: 1, wantErr: true},
		{name: "canceled context", ctx: canceled, r: func() io.Reader { return bytes.NewReader(body) }, size: int64(len(body)), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			s, dir := openStore(t)
			const key = "entries/sha256/abc"
			err := s.Put(ctx, key, tt.r(), tt.size)
			if left := tmpFiles(t, dir); len(left) != 0 {
				t.Errorf("temporary files left behind: %v", left)
			}
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Put succeeded, want an error")
				}
				assertAbsent(t, s, key)
				if _, err := os.Stat(filepath.Join(dir, "objects", "entries", "sha256", "abc")); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("object file exists after a failed Put (stat err %v)", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			if n, err := s.Size(ctx, key); err != nil || n != tt.size {
				t.Fatalf("Size = %d, %v; want %d", n, err, tt.size)
			}
			want, _ := io.ReadAll(tt.r())
			if got := readAll(t, s, key); !bytes.Equal(got, want) {
				t.Fatalf("Get returned %d bytes, want the %d put", len(got), len(want))
			}
		})
	}
}

// TestPutInvisibleUntilComplete holds a Put mid-way and checks that
// nothing of it can be read, then breaks it.
func TestPutInvisibleUntilComplete(t *testing.T) {
	t.Parallel()
	s, dir := openStore(t)
	const key = "tars/x.tar"
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.Put(context.Background(), key, pr, 8192) }()
	if _, err := pw.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	// The write returned: the store holds half the object in a temp file.
	assertAbsent(t, s, key)
	if got := tmpFiles(t, dir); len(got) != 1 {
		t.Errorf("temporary files mid-Put = %v, want one", got)
	}
	pw.CloseWithError(errBroken)
	if err := <-done; !errors.Is(err, errBroken) {
		t.Fatalf("Put err = %v, want it to wrap the reader's error", err)
	}
	assertAbsent(t, s, key)
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// TestPutFailureKeepsOldObject: a failed overwrite leaves the previous
// complete object in place.
func TestPutFailureKeepsOldObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openStore(t)
	const key = "meta/sha256/aa"
	old := []byte("the old, complete object")
	if err := s.Put(ctx, key, bytes.NewReader(old), int64(len(old))); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, key, &failingReader{n: 5, err: errBroken}, 100); err == nil {
		t.Fatal("failing Put succeeded")
	}
	if got := readAll(t, s, key); !bytes.Equal(got, old) {
		t.Fatalf("object after a failed overwrite = %q, want %q", got, old)
	}
}

func TestOpenRemovesStaleTemporaryFiles(t *testing.T) {
	t.Parallel()
	_, dir := openStore(t)
	stale := filepath.Join(dir, "tmp", "put-123")
	if err := os.WriteFile(stale, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
	if left := tmpFiles(t, dir); len(left) != 0 {
		t.Fatalf("Open kept temporary files of a crashed run: %v", left)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key   string
		valid bool
	}{
		{"entries/sha256/0123abcdef", true},
		{"tars/job-1_x.tar", true},
		{"a", true},
		{"0", true},
		{"", false},
		{"..", false},
		{"../escape", false},
		{"a/../../escape", false},
		{"a/..", false},
		{"/abs", false},
		{"/etc/passwd", false},
		{"Upper", false},
		{"tars/X.tar", false},
		{"a//b", false},
		{"a/", false},
		{".hidden", false},
		{"a/.b", false},
		{"a/-b", false},
		{`a\b`, false},
		{`..\escape`, false},
		{"a b", false},
		{"a\x00b", false},
		{"tars/ä", false},
		{"a/./b", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, dir := openStore(t)
			err := s.Put(ctx, tt.key, strings.NewReader("x"), 1)
			if tt.valid {
				if err != nil {
					t.Fatalf("Put(%q): %v", tt.key, err)
				}
				if got := readAll(t, s, tt.key); string(got) != "x" {
					t.Fatalf("Get(%q) = %q", tt.key, got)
				}
				return
			}
			if err == nil {
				t.Fatalf("Put(%q) succeeded, want the key refused", tt.key)
			}
			if _, _, err := s.Sign(ctx, tt.key, "x.tar", 0); err == nil {
				t.Errorf("Sign(%q) succeeded, want the key refused", tt.key)
			}
			if _, err := s.Size(ctx, tt.key); err == nil {
				t.Errorf("Size(%q) succeeded, want an error", tt.key)
			}
			if err := s.Delete(ctx, tt.key); err == nil {
				t.Errorf("Delete(%q) succeeded, want the key refused", tt.key)
			}
			// Nothing was written anywhere, inside the data dir or next to it.
			if got := allFiles(t, filepath.Dir(dir)); !slices.Equal(got, []string{"data/link-secret"}) {
				t.Errorf("files after refused Put(%q): %v", tt.key, got)
			}
		})
	}
}

func TestMeta(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openStore(t)
	manifest := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(manifest)

	if _, err := s.GetMeta(ctx, testOrigin, d); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Fatalf("GetMeta before PutMeta: err %v, want not_found", err)
	}
	if err := s.PutMeta(ctx, testOrigin, d, manifest); err != nil {
		t.Fatalf("PutMeta: %v", err)
	}
	got, err := s.GetMeta(ctx, testOrigin, d)
	if err != nil || !bytes.Equal(got, manifest) {
		t.Fatalf("GetMeta = %q, %v; want %q", got, err, manifest)
	}
	// Caching it again is a no-op.
	if err := s.PutMeta(ctx, testOrigin, d, manifest); err != nil {
		t.Fatalf("second PutMeta: %v", err)
	}
	other := digest.FromString("never stored")
	if _, err := s.GetMeta(ctx, testOrigin, other); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Fatalf("GetMeta(missing) err %v, want not_found", err)
	}
	// Every origin has its own namespace: a registry that names this
	// digest does not read another registry's copy.
	for _, o := range []tarport.Origin{tarport.RegistryOrigin("other.test:5000"), tarport.URLOrigin("https://cdn.test/x")} {
		if _, err := s.GetMeta(ctx, o, d); tarport.ErrorCode(err) != tarport.CodeNotFound {
			t.Fatalf("GetMeta under origin %q = %v, want not_found", o, err)
		}
	}
	// Other algorithms live in their own namespace.
	d512 := digest.SHA512.FromBytes(manifest)
	if _, err := s.GetMeta(ctx, testOrigin, d512); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Fatalf("GetMeta(sha512 of a stored sha256 blob) err %v, want not_found", err)
	}
}

func TestDeletePlainObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openStore(t)
	if err := s.Put(ctx, "tars/a.tar", strings.NewReader("abc"), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "tars/a.tar"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	assertAbsent(t, s, "tars/a.tar")
	if err := s.Delete(ctx, "tars/a.tar"); err != nil {
		t.Fatalf("Delete of a deleted object: %v", err)
	}
}

// TestObjectsContract: the object store behaviour every store has.
func TestObjectsContract(t *testing.T) {
	t.Parallel()
	objectstest.Run(t, func(t *testing.T) download.Objects {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
