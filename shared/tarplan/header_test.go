package tarplan_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tarport/tarport/shared/tarplan"
)

// readHeader parses hdr (followed by rest) with archive/tar, the reader
// runtimes and tools use, and checks the fields every tarplan header has.
func readHeader(t testing.TB, hdr []byte, rest io.Reader) (*tar.Header, *tar.Reader) {
	t.Helper()
	tr := tar.NewReader(io.MultiReader(bytes.NewReader(hdr), rest))
	h, err := tr.Next()
	if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
		t.Fatalf("archive/tar cannot read header (%d bytes): %v", len(hdr), err)
	}
	if h.Typeflag != tar.TypeReg {
		t.Errorf("Typeflag = %q, want %q", h.Typeflag, tar.TypeReg)
	}
	if h.Mode != 0o644 {
		t.Errorf("Mode = %o, want 644", h.Mode)
	}
	if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
		t.Errorf("owner = %d/%d (%q/%q), want 0/0 unnamed", h.Uid, h.Gid, h.Uname, h.Gname)
	}
	if h.ModTime.Unix() != 0 || h.ModTime.Nanosecond() != 0 {
		t.Errorf("ModTime = %v, want Unix 0", h.ModTime)
	}
	return h, tr
}

func TestHeader(t *testing.T) {
	t.Parallel()
	const blob = "blobs/sha256/2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	tests := []struct {
		name   string
		size   int64
		format tar.Format
		len    int
	}{
		{"empty", 0, tar.FormatUSTAR, 512},
		{"one byte", 1, tar.FormatUSTAR, 512},
		{"block less one", 511, tar.FormatUSTAR, 512},
		{"one block", 512, tar.FormatUSTAR, 512},
		{"ustar max 8GiB-1", ustarMax, tar.FormatUSTAR, 512},
		{"8GiB", 8 * gib, tar.FormatPAX, paxHeaderLen},
		{"20GiB", 20 * gib, tar.FormatPAX, paxHeaderLen},
		{"1TiB", tib, tar.FormatPAX, paxHeaderLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hdr, err := tarplan.Header(blob, tt.size)
			if err != nil {
				t.Fatalf("Header(%d): %v", tt.size, err)
			}
			if len(hdr)%512 != 0 || len(hdr) != tt.len {
				t.Fatalf("len(header) = %d, want %d (a multiple of 512)", len(hdr), tt.len)
			}
			again, err := tarplan.Header(blob, tt.size)
			if err != nil || !bytes.Equal(hdr, again) {
				t.Fatalf("Header is not deterministic: second call gave %d bytes, err %v", len(again), err)
			}

			// Small files are read back whole, content and padding included;
			// for huge ones the reader needs only the header.
			var content []byte
			rest := io.Reader(bytes.NewReader(nil))
			if tt.size <= 4096 {
				content = pseudoRandom(tt.name, tt.size)
				rest = io.MultiReader(bytes.NewReader(content), bytes.NewReader(tarplan.Padding(tt.size)), bytes.NewReader(make([]byte, 1024)))
			}
			h, tr := readHeader(t, hdr, rest)
			if h.Name != blob || h.Size != tt.size {
				t.Errorf("read back %q size %d, want %q size %d", h.Name, h.Size, blob, tt.size)
			}
			if h.Format != tt.format {
				t.Errorf("Format = %v, want %v", h.Format, tt.format)
			}
			if tt.format == tar.FormatPAX && h.PAXRecords["size"] != strconv.FormatInt(tt.size, 10) {
				t.Errorf("PAX records = %v, want size=%d", h.PAXRecords, tt.size)
			}
			if content == nil {
				return
			}
			got, err := io.ReadAll(tr)
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("content read back: %d bytes, err %v; want %d bytes", len(got), err, len(content))
			}
			if _, err := tr.Next(); err != io.EOF {
				t.Fatalf("after the only entry: Next() = %v, want io.EOF", err)
			}
		})
	}
}

func TestHeaderName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		format tar.Format
	}{
		{"oci-layout", tar.FormatUSTAR},
		{"index.json", tar.FormatUSTAR},
		{strings.Repeat("n", 100), tar.FormatUSTAR}, // fills the ustar name field
		{strings.Repeat("n", 101), tar.FormatPAX},   // needs a PAX path record
		{"blobs/sha512/" + strings.Repeat("ab", 64), tar.FormatPAX},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(len(tt.name)), func(t *testing.T) {
			t.Parallel()
			hdr, err := tarplan.Header(tt.name, 42)
			if err != nil {
				t.Fatal(err)
			}
			if len(hdr)%512 != 0 {
				t.Fatalf("len(header) = %d, not a multiple of 512", len(hdr))
			}
			h, _ := readHeader(t, hdr, bytes.NewReader(nil))
			if h.Name != tt.name || h.Size != 42 || h.Format != tt.format {
				t.Errorf("read back %q size %d format %v, want %q 42 %v", h.Name, h.Size, h.Format, tt.name, tt.format)
			}
		})
	}
}

func TestHeaderNegativeSize(t *testing.T) {
	t.Parallel()
	for _, size := range []int64{-1, -512, -1 << 63} {
		if hdr, err := tarplan.Header("blobs/sha256/x", size); err == nil {
			t.Errorf("Header(size %d) = %d bytes, want an error", size, len(hdr))
		}
	}
}

func TestPaddingAndEntryLen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		size, padding int64
	}{
		{0, 0}, {1, 511}, {511, 1}, {512, 0}, {513, 511}, {ustarMax, 1}, {8 * gib, 0}, {20*gib + 3, 509},
	}
	for _, tt := range tests {
		if got := int64(len(tarplan.Padding(tt.size))); got != tt.padding {
			t.Errorf("len(Padding(%d)) = %d, want %d", tt.size, got, tt.padding)
		}
		if got, want := tarplan.EntryLen(512, tt.size), 512+tt.size+tt.padding; got != want {
			t.Errorf("EntryLen(512, %d) = %d, want %d", tt.size, got, want)
		}
	}
	if !bytes.Equal(tarplan.Padding(1), make([]byte, 511)) {
		t.Error("Padding is not zero bytes")
	}
}

func TestInlineEntry(t *testing.T) {
	t.Parallel()
	for _, n := range []int64{0, 1, 511, 512, 1000} {
		content := pseudoRandom("inline", n)
		entry, err := tarplan.InlineEntry("index.json", content)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(entry)) != tarplan.EntryLen(512, n) || len(entry)%512 != 0 {
			t.Fatalf("InlineEntry(%d bytes) is %d bytes", n, len(entry))
		}
		hdr, _ := tarplan.Header("index.json", n)
		if !bytes.Equal(entry[:512], hdr) {
			t.Fatal("InlineEntry does not start with Header")
		}
		h, tr := readHeader(t, entry, bytes.NewReader(make([]byte, 1024)))
		got, err := io.ReadAll(tr)
		if h.Name != "index.json" || err != nil || !bytes.Equal(got, content) {
			t.Fatalf("read back %q, %d bytes, err %v", h.Name, len(got), err)
		}
	}
}

// FuzzHeader checks that archive/tar reads back any name and size Header
// accepts, and that Header accepts every plain name and non-negative size.
func FuzzHeader(f *testing.F) {
	f.Add("blobs/sha256/2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", int64(1234))
	f.Add("manifest.json", int64(0))
	f.Add("x", int64(ustarMax))
	f.Add("x", int64(ustarMax+1))
	f.Add(strings.Repeat("d/", 60)+"f", int64(20*gib))
	f.Add("blobs/sha256/a", int64(1)<<62)
	f.Add("blobs/sha256/a", int64(1<<63-1))
	f.Add("neg", int64(-1))
	f.Add("", int64(7))
	f.Add("é", int64(3))
	f.Add(strings.Repeat("é", 60), int64(3))
	f.Fuzz(func(t *testing.T, name string, size int64) {
		hdr, err := tarplan.Header(name, size)
		if size < 0 {
			if err == nil {
				t.Fatalf("Header(%q, %d) gave no error", name, size)
			}
			return
		}
		if err != nil {
			if plainName(name) {
				t.Fatalf("Header(%q, %d): %v", name, size, err)
			}
			return // a name no tar format (or no format Header picks) carries
		}
		if len(hdr)%512 != 0 {
			t.Fatalf("len(header) = %d, not a multiple of 512", len(hdr))
		}
		if again, _ := tarplan.Header(name, size); !bytes.Equal(hdr, again) {
			t.Fatal("Header is not deterministic")
		}
		if len(name) <= 100 && size <= ustarMax && len(hdr) != 512 {
			t.Errorf("a ustar-sized header took %d bytes", len(hdr))
		}
		h, _ := readHeader(t, hdr, bytes.NewReader(nil))
		if h.Name != name || h.Size != size {
			t.Fatalf("read back %q size %d, want %q size %d", h.Name, h.Size, name, size)
		}
	})
}

// plainName reports whether name is one Header must accept: printable
// ASCII, no trailing slash (a directory's name), short enough for a PAX
// record. Blob paths and the metadata file names are plain.
func plainName(name string) bool {
	if len(name) > 4096 || strings.HasSuffix(name, "/") || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r > 0x7e {
			return false
		}
	}
	return true
}
