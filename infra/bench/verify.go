package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/s3store"
	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/s3test"
)

const (
	verifyBegin = "<!-- bench-verify:begin -->"
	verifyEnd   = "<!-- bench-verify:end -->"
)

// verifyBench measures how fast a split layer's entry of size bytes is
// checked in S3 (versitygw on loopback): read as one stream, as the verify
// task did, and with ranged reads ahead (download.ReadAhead), each hashed
// in order, beside SHA-256 alone over the same bytes in memory.
func verifyBench(ctx context.Context, work string, size int64) (string, error) {
	bin, err := daemon.FindBinary("versitygw")
	if err != nil {
		return "", err
	}
	dir := filepath.Join(work, "verify")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	srv, err := s3test.Launch(ctx, bin, dir)
	if err != nil {
		return "", err
	}
	defer srv.Stop()
	if err := srv.NewBucket(ctx, "verify"); err != nil {
		return "", err
	}
	c := srv.Client()
	store := s3store.New(c, s3.NewPresignClient(c), "verify", s3store.Options{PartSize: 64 << 20})
	const key = "staging/job/sha256/x"
	start := time.Now()
	if err := store.Put(ctx, key, io.LimitReader(fastRandom{}, size), size); err != nil {
		return "", fmt.Errorf("writing the %s entry: %w", formatBytes(size), err)
	}
	logf("verify: wrote %s into versitygw in %s", formatBytes(size), time.Since(start).Round(100*time.Millisecond))

	hashOf := func(open func() (io.ReadCloser, error)) (time.Duration, error) {
		start := time.Now()
		rc, err := open()
		if err != nil {
			return 0, err
		}
		defer rc.Close()
		h := sha256.New()
		n, err := io.Copy(h, rc)
		if err == nil && n != size {
			err = fmt.Errorf("read %d of %d bytes", n, size)
		}
		return time.Since(start), err
	}
	oneStream, err := hashOf(func() (io.ReadCloser, error) { return store.Get(ctx, key) })
	if err != nil {
		return "", err
	}
	ahead, err := hashOf(func() (io.ReadCloser, error) { return download.ReadAhead(ctx, store, key, size), nil })
	if err != nil {
		return "", err
	}
	memory := hashSpeed(size)
	rate := func(d time.Duration) string { return fmt.Sprintf("%.0f MB/s", float64(size)/d.Seconds()/1e6) }
	var b strings.Builder
	fmt.Fprintf(&b, "| read of a %s split layer's entry from versitygw, hashed in order | time | rate |\n|---|---|---|\n", formatBytes(size))
	fmt.Fprintf(&b, "| one stream (the verify task before) | %s | %s |\n", secs(oneStream), rate(oneStream))
	fmt.Fprintf(&b, "| 8 ranged reads of 8 MiB ahead (now) | %s | %s |\n", secs(ahead), rate(ahead))
	fmt.Fprintf(&b, "| SHA-256 alone, in memory | %s | %s |\n", secs(memory), rate(memory))
	return b.String(), nil
}

// hashSpeed is how long SHA-256 takes over size bytes already in memory.
func hashSpeed(size int64) time.Duration {
	buf := make([]byte, 8<<20)
	fastRandom{}.Read(buf)
	h := sha256.New()
	start := time.Now()
	for done := int64(0); done < size; done += int64(len(buf)) {
		h.Write(buf[:min(int64(len(buf)), size-done)])
	}
	return time.Since(start)
}

// fastRandom is cheap incompressible bytes.
type fastRandom struct{}

func (fastRandom) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		v := rand.Uint64()
		for j := 0; j < 8 && i+j < len(p); j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return len(p), nil
}
