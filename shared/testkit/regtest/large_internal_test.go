package regtest

import (
	"archive/tar"
	"io"
	"testing"
)

func TestGeneratedLayerSize(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ ask, want int64 }{
		{0, 1536},
		{1, 1536},
		{2048, 2048},
		{5000, 5120},
		{1 << 30, 1 << 30},
		{9 << 30, 9 << 30}, // past 8 GiB the tar header needs a PAX size record
	} {
		l, err := newGeneratedLayer("size test", tt.ask)
		if err != nil {
			t.Fatal(err)
		}
		if l.size != tt.want {
			t.Errorf("size %d: layer is %d bytes, want %d", tt.ask, l.size, tt.want)
		}
	}
}

func TestGeneratedLayerIsTar(t *testing.T) {
	t.Parallel()
	l, err := newGeneratedLayer("tar test", 100_000)
	if err != nil {
		t.Fatal(err)
	}
	rc := l.open()
	n, err := io.Copy(io.Discard, rc)
	if err != nil || n != l.size {
		t.Fatalf("stream is %d bytes (%v), size says %d", n, err, l.size)
	}
	tr := tar.NewReader(l.open())
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if data, err := io.ReadAll(tr); err != nil || int64(len(data)) != h.Size || h.Size != l.content {
		t.Fatalf("file %s: read %d bytes (%v), header %d, want %d", h.Name, len(data), err, h.Size, l.content)
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Fatalf("after the file: %v, want EOF", err)
	}
}
