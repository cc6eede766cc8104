package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/registry"
	"github.com/tarport/tarport/shared/tarport"
)

// blobSize is big enough to break mid-way and small enough to be instant.
const blobSize = 64 << 10

// breakAt is where a broken body stops.
const breakAt = 20_000

func testBlob() []byte {
	b := make([]byte, blobSize)
	rand.NewChaCha8([32]byte{'t', 'a', 'r', 'p', 'o', 'r', 't'}).Read(b)
	return b
}

// blobServer is a registry whose blob answers are scripted per request:
// answer gets the 1-based number of the request. It records every request
// but the /v2/ ping.
type blobServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seenRequest
}

type seenRequest struct {
	method, path, rng, auth string
	at                      time.Time
}

func newBlobServer(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int)) *blobServer {
	t.Helper()
	s := &blobServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
		if r.URL.Path == "/v2/" {
			return
		}
		s.mu.Lock()
		s.reqs = append(s.reqs, seenRequest{r.Method, r.URL.Path, r.Header.Get("Range"), r.Header.Get("Authorization"), time.Now()})
		n := len(s.reqs)
		s.mu.Unlock()
		answer(w, r, n)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *blobServer) host() string { return strings.TrimPrefix(s.URL, "http://") }

func (s *blobServer) requests() []seenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenRequest(nil), s.reqs...)
}

// ranges lists the Range header of every request ("" for none).
func (s *blobServer) ranges() []string {
	var rs []string
	for _, r := range s.requests() {
		rs = append(rs, r.rng)
	}
	return rs
}

// serveBlob answers like a registry that honours Range (206 with a
// Content-Range) and HEAD.
func serveBlob(w http.ResponseWriter, r *http.Request, blob []byte) {
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
}

// breakBody answers 200 with the whole blob's Content-Length, sends the
// first breakAt bytes and closes the connection.
func breakBody(t *testing.T, w http.ResponseWriter, blob []byte) {
	breakBodyAt(t, w, blob, 0, breakAt)
}

// breakBodyAt answers from byte from on (200, or 206 with a Content-Range),
// with the length of the rest, sends count bytes and closes the connection.
func breakBodyAt(t *testing.T, w http.ResponseWriter, blob []byte, from, count int) {
	breakBodyAtAfter(t, w, blob, from, count, 0)
}

// breakBodyAtAfter is breakBodyAt that waits before closing the connection.
func breakBodyAtAfter(t *testing.T, w http.ResponseWriter, blob []byte, from, count int, wait time.Duration) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	defer conn.Close()
	if from == 0 {
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(blob))
	} else {
		fmt.Fprintf(buf, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n\r\n", from, len(blob)-1, len(blob), len(blob)-from)
	}
	buf.Write(blob[from : from+count])
	buf.Flush()
	time.Sleep(wait)
}

func newClient(insecure ...string) *registry.Client {
	return registry.New(registry.Options{Insecure: insecure, IdleTimeout: 10 * time.Second})
}

func layerOf(blob []byte, urls ...string) descriptor.Descriptor {
	return descriptor.Descriptor{
		MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
		Digest:    digest.FromBytes(blob),
		Size:      int64(len(blob)),
		URLs:      urls,
	}
}

func openBlob(ctx context.Context, t *testing.T, c *registry.Client, host string, d descriptor.Descriptor, creds tarport.Credentials) (io.ReadCloser, error) {
	t.Helper()
	r, err := tarport.ParseReference(host + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.Locate(ctx, r, d, creds)
	if err != nil {
		return nil, err
	}
	return c.OpenBlob(ctx, r, d, o, creds)
}

// readBlob opens d on s and reads it to the end, failing the test if the
// read does not end within limit.
func readBlob(t *testing.T, c *registry.Client, s *blobServer, d descriptor.Descriptor, limit time.Duration) ([]byte, error) {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	r, err := tarport.ParseReference(s.host() + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() {
		rc, err := c.OpenBlob(t.Context(), r, d, tarport.RegistryOrigin(r.Registry), tarport.Credentials{})
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return r.b, r.err
	case <-time.After(limit):
		t.Fatalf("reading the blob did not end within %v", limit)
		return nil, nil
	}
}

// TestOpenBlobCleanRead: a plain 200 is read in one request, verified, and
// ends with io.EOF after exactly its size, and stays ended.
func TestOpenBlobCleanRead(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, blob) })
	rc, err := openBlob(t.Context(), t, newClient(s.host()), s.host(), layerOf(blob), tarport.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var got []byte
	buf := make([]byte, 10_000)
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatalf("no io.EOF after %d reads (%d bytes)", i, len(got))
		}
		n, err := rc.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read after %d bytes: %v", len(got), err)
		}
		if len(got) > blobSize {
			t.Fatalf("read %d bytes of a %d-byte blob", len(got), blobSize)
		}
	}
	if !bytes.Equal(got, blob) {
		t.Fatalf("read %d bytes that differ from the %d-byte blob", len(got), blobSize)
	}
	if n, err := rc.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the end: %d, %v; want 0, io.EOF", n, err)
	}
	reqs := s.requests()
	if len(reqs) != 1 || reqs[0].method != http.MethodGet || reqs[0].rng != "" {
		t.Fatalf("requests %+v, want one GET without Range", reqs)
	}
	if want := "/v2/team/app/blobs/" + digest.FromBytes(blob).String(); reqs[0].path != want {
		t.Fatalf("GET %s, want %s", reqs[0].path, want)
	}
}

// TestOpenBlobEmptyBodiesBackOff: a registry answering 200 with an empty
// body forever must not make the reader spin. Each empty body counts as a
// failure and is followed by an exponential backoff (0.5 s, 1 s, 2 s, 4 s,
// 8 s, 16 s, 16 s): the 8th failure, which ends the read, comes after
// 47.5 s, too long for a unit test. So a 5 s deadline cuts it: the read
// must return promptly after it, having sent a handful of requests spaced
// by the backoff schedule.
func TestOpenBlobEmptyBodiesBackOff(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	s := newBlobServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	})
	const deadline = 5 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	start := time.Now()
	rc, err := openBlob(ctx, t, newClient(s.host()), s.host(), layerOf(blob), tarport.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(rc)
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(deadline + 5*time.Second):
		t.Fatalf("the read did not end %v after the deadline (%d requests so far)", 5*time.Second, len(s.requests()))
	}
	elapsed := time.Since(start)
	reqs := s.requests()
	t.Logf("read ended after %v with %d requests: %v", elapsed.Round(time.Millisecond), len(reqs), err)
	if err == nil {
		t.Fatal("reading endless empty bodies succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) && tarport.ErrorCode(err) == tarport.CodeInternal {
		t.Errorf("error %v is neither the deadline nor a coded error", err)
	}
	if elapsed > deadline+time.Second {
		t.Errorf("the read returned %v after the %v deadline", elapsed-deadline, deadline)
	}
	if len(reqs) > 8 {
		t.Fatalf("%d requests in %v: the reader spins instead of backing off", len(reqs), elapsed)
	}
	// 0.5 s, 1 s, 2 s between the first requests: backing off, not spinning.
	for i := 1; i < len(reqs); i++ {
		gap := reqs[i].at.Sub(reqs[i-1].at)
		if want := time.Duration(1<<(i-1)) * 500 * time.Millisecond * 9 / 10; gap < want {
			t.Errorf("request %d came %v after the previous one, want at least %v", i+1, gap, want)
		}
	}
}

// TestOpenBlobResumes: a body that breaks mid-way is resumed from the
// last byte received, at once (the broken body made progress), and the
// stitched bytes verify, whether the server honours Range or not.
func TestOpenBlobResumes(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	tests := []struct {
		name       string
		answer     func(t *testing.T, w http.ResponseWriter, r *http.Request, n int)
		wantRanges []string
	}{
		{
			name: "server honours Range",
			answer: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					breakBody(t, w, blob)
					return
				}
				serveBlob(w, r, blob)
			},
			wantRanges: []string{"", fmt.Sprintf("bytes=%d-", breakAt)},
		},
		{
			name: "server ignores Range",
			answer: func(t *testing.T, w http.ResponseWriter, _ *http.Request, n int) {
				if n == 1 {
					breakBody(t, w, blob)
					return
				}
				w.Write(blob) // 200, the whole blob again
			},
			wantRanges: []string{"", fmt.Sprintf("bytes=%d-", breakAt)},
		},
		{
			name: "the resumed body breaks too",
			answer: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				switch n {
				case 1:
					breakBody(t, w, blob)
				case 2:
					breakBodyAt(t, w, blob, breakAt, 10_000)
				default:
					serveBlob(w, r, blob)
				}
			},
			wantRanges: []string{"", fmt.Sprintf("bytes=%d-", breakAt), fmt.Sprintf("bytes=%d-", breakAt+10_000)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, n int) { tt.answer(t, w, r, n) })
			start := time.Now()
			got, err := readBlob(t, newClient(s.host()), s, layerOf(blob), 10*time.Second)
			if err != nil {
				t.Fatalf("read: %v (requests %q)", err, s.ranges())
			}
			if !bytes.Equal(got, blob) {
				t.Fatalf("read %d bytes that differ from the %d-byte blob", len(got), blobSize)
			}
			if rs := s.ranges(); !slices.Equal(rs, tt.wantRanges) {
				t.Fatalf("Range headers %q, want %q", rs, tt.wantRanges)
			}
			// A break after progress is not a failure: no backoff.
			if d := time.Since(start); d > 400*time.Millisecond {
				t.Errorf("resuming took %v; a body that made progress should resume at once", d)
			}
		})
	}
}

// TestOpenBlobProgressResetsTheFailures: failures count only in a row;
// a body that brings bytes starts the backoff over, so a flaky registry
// that fails every other request still delivers the blob.
func TestOpenBlobProgressResetsTheFailures(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	const piece = 12_000
	s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		from := 0
		if rest, ok := strings.CutPrefix(r.Header.Get("Range"), "bytes="); ok {
			fmt.Sscanf(rest, "%d-", &from)
		}
		switch {
		case n%2 == 1 && n > 1:
			http.Error(w, "flaky", http.StatusServiceUnavailable)
		case from+piece < blobSize:
			breakBodyAt(t, w, blob, from, piece)
		default:
			serveBlob(w, r, blob)
		}
	})
	got, err := readBlob(t, newClient(s.host()), s, layerOf(blob), 10*time.Second)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("read %d bytes, %v; want the %d-byte blob (Range %q)", len(got), err, blobSize, s.ranges())
	}
	reqs := s.requests()
	if len(reqs) < 9 {
		t.Fatalf("%d requests, want at least 9 (5 pieces, 4 failures between)", len(reqs))
	}
	// Every retry after a 503 waits the first backoff step (500 ms), not
	// 1 s, 2 s, 4 s: the bytes in between reset the count.
	for i := 2; i < len(reqs); i += 2 {
		if gap := reqs[i].at.Sub(reqs[i-1].at); gap > 900*time.Millisecond {
			t.Errorf("retry after failure %d waited %v, want ~500ms", i/2, gap)
		}
	}
}

// TestOpenBlobRefusesAWrongContentRange: a 206 that does not start where
// the reader asked is a failed request (closed, backed off, retried), never
// bytes spliced in at the wrong offset.
func TestOpenBlobRefusesAWrongContentRange(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	tests := []struct {
		name  string
		start int // where the lying 206 starts; -1: no Content-Range at all
	}{
		{"starts at 0", 0},
		{"starts before the offset", breakAt - 100},
		{"starts after the offset", breakAt + 100},
		{"no Content-Range", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				switch n {
				case 1:
					breakBody(t, w, blob)
				case 2:
					if tt.start >= 0 {
						w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", tt.start, blobSize-1, blobSize))
						w.Header().Set("Content-Length", fmt.Sprint(blobSize-tt.start))
						w.WriteHeader(http.StatusPartialContent)
						w.Write(blob[tt.start:])
						return
					}
					w.WriteHeader(http.StatusPartialContent)
					w.Write(blob[breakAt:])
				default:
					serveBlob(w, r, blob)
				}
			})
			got, err := readBlob(t, newClient(s.host()), s, layerOf(blob), 10*time.Second)
			if err != nil {
				t.Fatalf("read: %v (requests %q)", err, s.ranges())
			}
			if !bytes.Equal(got, blob) {
				t.Fatalf("read %d bytes that differ from the %d-byte blob", len(got), blobSize)
			}
			reqs := s.requests()
			want := fmt.Sprintf("bytes=%d-", breakAt)
			if len(reqs) != 3 || reqs[1].rng != want || reqs[2].rng != want {
				t.Fatalf("Range headers %q, want [\"\" %q %q]", s.ranges(), want, want)
			}
			if gap := reqs[2].at.Sub(reqs[1].at); gap < 450*time.Millisecond {
				t.Errorf("retried %v after the wrong 206, want a backoff of ~500ms (a failure)", gap)
			}
		})
	}
}

// TestOpenBlobRetriesTransientStatuses: 429 and 5xx are retried with a
// backoff; Retry-After replaces the default first wait (500 ms).
func TestOpenBlobRetriesTransientStatuses(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	tests := []struct {
		name     string
		failures int
		status   int
		header   http.Header
		wantGaps []time.Duration // minimum wait before each retry
	}{
		{"429 with Retry-After", 1, http.StatusTooManyRequests, http.Header{"Retry-After": {"1"}}, []time.Duration{time.Second}},
		{"503 twice", 2, http.StatusServiceUnavailable, nil, []time.Duration{500 * time.Millisecond, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n <= tt.failures {
					for k, v := range tt.header {
						w.Header()[k] = v
					}
					http.Error(w, `{"errors":[{"code":"TOOMANYREQUESTS"}]}`, tt.status)
					return
				}
				serveBlob(w, r, blob)
			})
			got, err := readBlob(t, newClient(s.host()), s, layerOf(blob), 10*time.Second)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, blob) {
				t.Fatalf("read %d bytes that differ from the %d-byte blob", len(got), blobSize)
			}
			reqs := s.requests()
			if len(reqs) != tt.failures+1 {
				t.Fatalf("%d requests, want %d", len(reqs), tt.failures+1)
			}
			for i, least := range tt.wantGaps {
				if gap := reqs[i+1].at.Sub(reqs[i].at); gap < least*95/100 {
					t.Errorf("retry %d came after %v, want at least %v", i+1, gap, least)
				}
			}
		})
	}
}

// TestOpenBlobForeignLayer: when the registry lacks a foreign layer, its
// URLs are located (a HEAD) and read, plain http only for hosts the
// operator trusts; the requester's credentials never go to the URL's host.
func TestOpenBlobForeignLayer(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	notFound := func(w http.ResponseWriter, _ *http.Request, _ int) {
		http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
	}
	creds := tarport.Credentials{Username: "alice", Password: "secret"}

	t.Run("trusted host", func(t *testing.T) {
		t.Parallel()
		reg := newBlobServer(t, notFound)
		foreign := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, blob) })
		c := newClient(reg.host(), foreign.host())
		rc, err := openBlob(t.Context(), t, c, reg.host(), layerOf(blob, foreign.URL+"/layers/x.tar.gz"), creds)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		got, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(got, blob) {
			t.Fatalf("read %d bytes, %v; want the %d-byte blob", len(got), err, blobSize)
		}
		if rr := reg.requests(); len(rr) != 1 || rr[0].auth == "" {
			t.Errorf("registry requests %+v, want one, with the requester's credentials", rr)
		}
		fr := foreign.requests()
		if len(fr) != 2 || fr[0].method != http.MethodHead || fr[1].method != http.MethodGet || fr[0].path != "/layers/x.tar.gz" || fr[1].path != "/layers/x.tar.gz" {
			t.Fatalf("foreign URL requests %+v, want HEAD then GET /layers/x.tar.gz", fr)
		}
		for _, r := range fr {
			if r.auth != "" {
				t.Errorf("the foreign URL's host got Authorization %q", r.auth)
			}
		}
	})

	t.Run("untrusted plain http", func(t *testing.T) {
		t.Parallel()
		reg := newBlobServer(t, notFound)
		foreign := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, blob) })
		c := newClient(reg.host()) // foreign's host is not trusted
		// The URL is refused before any request: no retries, no waiting.
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		start := time.Now()
		rc, err := openBlob(ctx, t, c, reg.host(), layerOf(blob, foreign.URL+"/layers/x.tar.gz"), creds)
		if d := time.Since(start); d > time.Second {
			t.Errorf("refused after %v, want at once", d)
		}
		if err == nil {
			rc.Close()
			t.Fatal("OpenBlob followed a plain-http URL to an untrusted host")
		}
		if code := tarport.ErrorCode(err); code != tarport.CodeBlockedAddress {
			t.Fatalf("error %v (%s), want blocked_address", err, code)
		}
		if fr := foreign.requests(); len(fr) != 0 {
			t.Fatalf("the untrusted host got %d requests", len(fr))
		}
	})
}

// TestOpenBlobTooLong: a body longer than the descriptor's size fails
// with digest_mismatch as soon as one byte too many arrives, without
// waiting for the rest of the excess (here it never comes: the server
// stalls after one extra byte).
func TestOpenBlobTooLong(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	release := make(chan struct{})
	s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		// Chunked, no length: the reader cannot know the size in advance.
		w.Write(blob)
		w.Write([]byte{'!'})
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	start := time.Now()
	got, err := readBlob(t, newClient(s.host()), s, layerOf(blob), 8*time.Second)
	if code := tarport.ErrorCode(err); code != tarport.CodeDigestMismatch {
		t.Fatalf("error %v (%s), want digest_mismatch", err, code)
	}
	if !strings.Contains(tarport.ErrorMessage(err), "more than") {
		t.Errorf("message %q does not say the blob is too long", tarport.ErrorMessage(err))
	}
	if len(got) > blobSize {
		t.Errorf("the reader handed out %d bytes of a %d-byte blob", len(got), blobSize)
	}
	// The idle timeout is 10 s: waiting for the rest would take that long.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("detected after %v, want at once", d)
	}
}

// TestOpenBlobFlippedByte: one wrong byte fails the read at its end with
// digest_mismatch, after exactly size bytes.
func TestOpenBlobFlippedByte(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	bad := bytes.Clone(blob)
	bad[blobSize/2] ^= 0x01
	s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, bad) })
	got, err := readBlob(t, newClient(s.host()), s, layerOf(blob), 5*time.Second)
	if code := tarport.ErrorCode(err); code != tarport.CodeDigestMismatch {
		t.Fatalf("error %v (%s), want digest_mismatch", err, code)
	}
	if len(got) != blobSize {
		t.Errorf("failed after %d bytes, want at the end (%d)", len(got), blobSize)
	}
	if n := len(s.requests()); n != 1 {
		t.Errorf("%d requests, want 1 (a mismatch is the caller's to retry)", n)
	}
}

// TestCheckBlob: a HEAD at the origin the entry came from, coded by
// status: the registry (in the requester's repository, with their
// credentials) or the exact foreign-layer URL (with none). An origin that
// says it holds another size or digest does not hold this blob.
func TestCheckBlob(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/v2/team/ok/"), r.URL.Path == "/cdn/layer":
			serveBlob(w, r, blob)
		case strings.HasPrefix(r.URL.Path, "/v2/team/private/"):
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
		case strings.HasPrefix(r.URL.Path, "/v2/team/otherdigest/"):
			w.Header().Set("Docker-Content-Digest", digest.FromString("something else").String())
			serveBlob(w, r, blob)
		case strings.HasPrefix(r.URL.Path, "/v2/team/othersize/"), r.URL.Path == "/cdn/short":
			serveBlob(w, r, blob[:100])
		default:
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
		}
	})
	untrusted := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, blob) })
	c := newClient(s.host())
	creds := tarport.Credentials{Username: "alice", Password: "secret"}
	urls := []string{s.URL + "/cdn/layer", s.URL + "/cdn/short", untrusted.URL + "/cdn/layer"}
	tests := []struct {
		name     string
		repo     string
		origin   tarport.Origin // "" for the registry
		wantCode tarport.Code   // "" for no error
	}{
		{name: "registry", repo: "ok"},
		{name: "registry missing", repo: "missing", wantCode: tarport.CodeNotFound},
		{name: "registry refuses", repo: "private", wantCode: tarport.CodeUnauthorized},
		{name: "registry names another digest", repo: "otherdigest", wantCode: tarport.CodeNotFound},
		{name: "registry has another size", repo: "othersize", wantCode: tarport.CodeNotFound},
		{name: "foreign URL", repo: "missing", origin: tarport.URLOrigin(urls[0])},
		{name: "foreign URL of another size", repo: "ok", origin: tarport.URLOrigin(urls[1]), wantCode: tarport.CodeNotFound},
		{name: "plain http to an untrusted host", repo: "ok", origin: tarport.URLOrigin(urls[2]), wantCode: tarport.CodeBlockedAddress},
		{name: "a URL the layer does not list", repo: "ok", origin: tarport.URLOrigin(s.URL + "/cdn/other"), wantCode: tarport.CodeInternal},
		{name: "another registry", repo: "ok", origin: tarport.RegistryOrigin("elsewhere.test"), wantCode: tarport.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tarport.ParseReference(s.host() + "/team/" + tt.repo + ":v1")
			if err != nil {
				t.Fatal(err)
			}
			o := tt.origin
			if o == "" {
				o = tarport.RegistryOrigin(r.Registry)
			}
			err = c.CheckBlob(t.Context(), r, layerOf(blob, urls...), o, creds)
			switch {
			case tt.wantCode == "" && err != nil:
				t.Fatalf("CheckBlob: %v, want nil", err)
			case tt.wantCode != "" && tarport.ErrorCode(err) != tt.wantCode:
				t.Fatalf("CheckBlob: %v (%s), want %s", err, tarport.ErrorCode(err), tt.wantCode)
			}
		})
	}
	for _, r := range s.requests() {
		if r.method != http.MethodHead {
			t.Errorf("CheckBlob sent %s %s, want HEAD only", r.method, r.path)
		}
		if strings.HasPrefix(r.path, "/cdn/") && r.auth != "" {
			t.Errorf("a foreign-layer URL got Authorization %q", r.auth)
		}
		if strings.HasPrefix(r.path, "/v2/") && r.auth == "" {
			t.Errorf("the registry was asked without the requester's credentials: %s", r.path)
		}
	}
	if n := len(untrusted.requests()); n != 0 {
		t.Errorf("the untrusted host got %d requests", n)
	}
}

// TestLocate: a layer without URLs is the registry's, with no request; a
// foreign layer is the registry's if it has it, else its first URL that
// answers, never a plain-http URL of an untrusted host.
func TestLocate(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	has := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, blob) })
	lacks := newBlobServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
	})
	cdn := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if r.URL.Path == "/gone" {
			http.NotFound(w, r)
			return
		}
		serveBlob(w, r, blob)
	})
	untrusted := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, blob) })
	c := newClient(has.host(), lacks.host(), cdn.host())
	tests := []struct {
		name     string
		reg      *blobServer
		urls     []string
		want     tarport.Origin
		wantCode tarport.Code
		requests int // to the registry
	}{
		{name: "no URLs", reg: lacks, want: tarport.RegistryOrigin(lacks.host()), requests: 0},
		{name: "the registry has it", reg: has, urls: []string{cdn.URL + "/a"}, want: tarport.RegistryOrigin(has.host()), requests: 1},
		{name: "the first URL that answers", reg: lacks, urls: []string{cdn.URL + "/gone", untrusted.URL + "/a", cdn.URL + "/b"}, want: tarport.URLOrigin(cdn.URL + "/b"), requests: 1},
		{name: "only untrusted plain http", reg: lacks, urls: []string{untrusted.URL + "/a"}, wantCode: tarport.CodeBlockedAddress, requests: 1},
		{name: "no URL answers", reg: lacks, urls: []string{cdn.URL + "/gone"}, wantCode: tarport.CodeNotFound, requests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := tarport.ParseReference(tt.reg.host() + "/team/" + strings.ReplaceAll(strings.ToLower(tt.name), " ", "-") + ":v1")
			if err != nil {
				t.Fatal(err)
			}
			before := len(tt.reg.requests())
			got, err := c.Locate(t.Context(), r, layerOf(blob, tt.urls...), tarport.Credentials{})
			if tt.wantCode != "" {
				if tarport.ErrorCode(err) != tt.wantCode {
					t.Fatalf("Locate = %q, %v; want %s", got, err, tt.wantCode)
				}
			} else if err != nil || got != tt.want {
				t.Fatalf("Locate = %q, %v; want %q", got, err, tt.want)
			}
			if n := len(tt.reg.requests()) - before; n != tt.requests {
				t.Errorf("%d registry requests, want %d", n, tt.requests)
			}
		})
	}
	if n := len(untrusted.requests()); n != 0 {
		t.Errorf("the untrusted host got %d requests", n)
	}
}

// TestOpenBlobBlockedAddressFailsPromptly: a foreign-layer URL over https
// to an untrusted private host, or a registry redirecting the blob GET to
// one (as it would to a CDN), is refused by the SSRF dial guard. The
// refusal is final, so the read should end with blocked_address at once.
func TestOpenBlobBlockedAddressFailsPromptly(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	for _, tt := range []struct {
		name     string
		redirect bool
	}{
		{name: "foreign https URL"},
		{name: "redirect", redirect: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			internal := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, blob) })
			reg := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
				if tt.redirect {
					http.Redirect(w, r, internal.URL+"/cdn/blob", http.StatusTemporaryRedirect)
					return
				}
				http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			})
			d := layerOf(blob)
			if !tt.redirect {
				d = layerOf(blob, "https://"+internal.host()+"/layers/x.tar.gz")
			}
			const deadline = 2 * time.Second
			ctx, cancel := context.WithTimeout(t.Context(), deadline)
			defer cancel()
			start := time.Now()
			rc, err := openBlob(ctx, t, newClient(reg.host()), reg.host(), d, tarport.Credentials{})
			elapsed := time.Since(start)
			if err == nil {
				rc.Close()
				t.Fatal("OpenBlob reached an untrusted private address")
			}
			if n := len(internal.requests()); n != 0 {
				t.Fatalf("the untrusted host got %d requests", n)
			}
			// A refusal by the dial guard is final: no backoff and retries
			// (which took 47.5 s and, for a redirect, 8 registry GETs).
			if code := tarport.ErrorCode(err); code != tarport.CodeBlockedAddress || elapsed > time.Second {
				t.Fatalf("after %v (%d registry requests): %v (%s); want blocked_address at once",
					elapsed.Round(time.Millisecond), len(reg.requests()), err, code)
			}
		})
	}
}

// TestOpenBlobAllBytesThenBreak: a body that delivered every byte of the
// blob but then broke (a chunked body cut before its last, empty chunk)
// has nothing left to fetch: the bytes verify, so the read succeeds.
func TestOpenBlobAllBytesThenBreak(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n > 1 {
			serveBlob(w, r, blob) // "bytes=<size>-" gets 416, as from a real registry
			return
		}
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", len(blob))
		buf.Write(blob)
		buf.WriteString("\r\n") // and no "0\r\n\r\n"
		buf.Flush()
	})
	got, err := readBlob(t, newClient(s.host()), s, layerOf(blob), 10*time.Second)
	// Every byte arrived before the body broke: verify, do not ask for
	// "bytes=<size>-" (a registry answers 416 and the layer is fetched
	// again).
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("read %d bytes, %v (%s); want the %d-byte blob (requests with Range %q)",
			len(got), err, tarport.ErrorCode(err), blobSize, s.ranges())
	}
}

// TestOpenBlobGivesUpOnACrawl: a registry that trickles a blob just fast
// enough to dodge the idle timer is cut every window it stays under the
// minimum rate, resumed from the last byte on a new connection, and given
// up on (upstream_timeout) after three such bodies: however big the blob
// claims to be, the read ends within a few windows.
func TestOpenBlobGivesUpOnACrawl(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		var from int
		if rng := r.Header.Get("Range"); rng != "" {
			fmt.Sscanf(rng, "bytes=%d-", &from)
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(blob)-1, len(blob)))
			w.Header().Set("Content-Length", fmt.Sprint(len(blob)-from))
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
		}
		for i := from; i < len(blob); i++ {
			w.Write(blob[i : i+1])
			w.(http.Flusher).Flush()
			select {
			case <-time.After(20 * time.Millisecond):
			case <-r.Context().Done():
				return
			case <-done:
				return
			}
		}
	})
	const window = 300 * time.Millisecond
	c := registry.New(registry.Options{Insecure: []string{s.host()}, IdleTimeout: window, MinRate: 10_000})
	start := time.Now()
	got, err := readBlob(t, c, s, layerOf(blob), 10*time.Second)
	if code := tarport.ErrorCode(err); code != tarport.CodeUpstreamTimeout {
		t.Fatalf("read %d bytes: %v (%s); want upstream_timeout", len(got), err, code)
	}
	if elapsed := time.Since(start); elapsed > 3*window+3*time.Second {
		t.Errorf("gave up after %v, want about 3 windows", elapsed)
	}
	rs := s.ranges()
	if len(rs) != 3 || rs[0] != "" || !strings.HasPrefix(rs[1], "bytes=") || !strings.HasPrefix(rs[2], "bytes=") {
		t.Fatalf("requests with ranges %q, want the first and two resumes from the last byte", rs)
	}
}

// TestOpenBlobGivesUpOnShortBodies: a registry that dodges the crawl
// watchdog by ending each body itself after a byte (honest Content-Range,
// then a closed connection), so the reader reconnects at once with
// progress made, is given up on all the same: its bodies are under the
// minimum rate, and so is the read as a whole after the grace windows.
func TestOpenBlobGivesUpOnShortBodies(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	for _, tc := range []struct {
		name string
		life time.Duration // how long each body lives before the registry ends it
	}{
		{"bodies that outlive a window", 1100 * time.Millisecond}, // the watchdog cuts them
		{"young bodies", 150 * time.Millisecond},                  // under a second: only the read's average catches them
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
				var from int
				fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &from)
				breakBodyAtAfter(t, w, blob, from, 1, tc.life)
			})
			const window = 300 * time.Millisecond
			c := registry.New(registry.Options{Insecure: []string{s.host()}, IdleTimeout: window, MinRate: 10_000})
			start := time.Now()
			got, err := readBlob(t, c, s, layerOf(blob), 20*time.Second)
			if code := tarport.ErrorCode(err); code != tarport.CodeUpstreamTimeout {
				t.Fatalf("read %d bytes: %v (%s); want upstream_timeout", len(got), err, code)
			}
			if elapsed := time.Since(start); elapsed > 3*time.Second+4*tc.life {
				t.Errorf("gave up after %v", elapsed)
			}
		})
	}
}
