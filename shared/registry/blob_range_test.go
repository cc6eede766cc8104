package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/registry"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/faultproxy"
	"github.com/tarport/tarport/shared/testkit/regtest"
)

// Asserted here rather than in package registry, which does not import
// the download service (infra/local/app asserts the other ports).
var _ download.RangeRegistry = (*registry.Client)(nil)

// rangeHeader is the Range header asking for [from, end).
func rangeHeader(from, end int64) string { return fmt.Sprintf("bytes=%d-%d", from, end-1) }

// breakRangeAt answers 206 for blob[from:end] with its Content-Range and
// length, sends count bytes and closes the connection.
func breakRangeAt(t *testing.T, w http.ResponseWriter, blob []byte, from, end, count int) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes %d-%d/%d\r\nContent-Length: %d\r\n\r\n", from, end-1, len(blob), end-from)
	buf.Write(blob[from : from+count])
	buf.Flush()
}

// writeRange answers 206 with blob[from:end] and a Content-Range that says
// it starts at claim.
func writeRange(w http.ResponseWriter, blob []byte, from, end, claim int) {
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", claim, claim+end-from-1, len(blob)))
	w.Header().Set("Content-Length", fmt.Sprint(end-from))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(blob[from:end])
}

func openRange(ctx context.Context, t *testing.T, c *registry.Client, host string, d descriptor.Descriptor, offset, length int64) (io.ReadCloser, error) {
	t.Helper()
	r, err := tarport.ParseReference(host + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.Locate(ctx, r, d, tarport.Credentials{})
	if err != nil {
		return nil, err
	}
	return c.OpenBlobRange(ctx, r, d, o, offset, length, tarport.Credentials{})
}

// readRange opens [offset, offset+length) of d on s and reads it to the
// end, failing the test if that takes longer than limit.
func readRange(t *testing.T, c *registry.Client, s *blobServer, d descriptor.Descriptor, offset, length int64, limit time.Duration) ([]byte, error) {
	t.Helper()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		rc, err := openRange(t.Context(), t, c, s.host(), d, offset, length)
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
		t.Fatalf("reading the range did not end within %v", limit)
		return nil, nil
	}
}

// TestOpenBlobRange: one request with Range: bytes=first-last, and exactly
// those bytes, ending with io.EOF (iotest checks the reader's contract:
// small reads, EOF after the last byte, EOF again after that).
func TestOpenBlobRange(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	tests := []struct {
		name           string
		offset, length int64
	}{
		{"start", 0, 1000},
		{"middle", 20_000, 5_000},
		{"end", blobSize - 3_000, 3_000},
		{"one byte", 12_345, 1},
		{"first byte", 0, 1},
		{"last byte", blobSize - 1, 1},
		{"whole blob", 0, blobSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, blob) })
			rc, err := openRange(t.Context(), t, newClient(s.host()), s.host(), layerOf(blob), tt.offset, tt.length)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if err := iotest.TestReader(rc, blob[tt.offset:tt.offset+tt.length]); err != nil {
				t.Fatal(err)
			}
			reqs := s.requests()
			if len(reqs) != 1 || reqs[0].method != http.MethodGet || reqs[0].rng != rangeHeader(tt.offset, tt.offset+tt.length) {
				t.Fatalf("requests %+v, want one GET with Range %s", reqs, rangeHeader(tt.offset, tt.offset+tt.length))
			}
			if want := "/v2/team/app/blobs/" + digest.FromBytes(blob).String(); reqs[0].path != want {
				t.Fatalf("GET %s, want %s", reqs[0].path, want)
			}
		})
	}
}

// TestOpenBlobRangeResumes: a body that breaks or ends early mid-range is
// resumed at once from the last byte received, up to the same end.
func TestOpenBlobRangeResumes(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	const from, end = 10_000, 30_000
	tests := []struct {
		name       string
		answer     func(t *testing.T, w http.ResponseWriter, r *http.Request, n int)
		wantRanges []string
	}{
		{
			name: "broken body",
			answer: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					breakRangeAt(t, w, blob, from, end, 3_000)
					return
				}
				serveBlob(w, r, blob)
			},
			wantRanges: []string{rangeHeader(from, end), rangeHeader(from+3_000, end)},
		},
		{
			name: "short clean body",
			answer: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					writeRange(w, blob, from, from+5_000, from) // a shorter range than asked, complete
					return
				}
				serveBlob(w, r, blob)
			},
			wantRanges: []string{rangeHeader(from, end), rangeHeader(from+5_000, end)},
		},
		{
			name: "the resumed body breaks too",
			answer: func(t *testing.T, w http.ResponseWriter, r *http.Request, n int) {
				switch n {
				case 1:
					breakRangeAt(t, w, blob, from, end, 3_000)
				case 2:
					breakRangeAt(t, w, blob, from+3_000, end, 7_000)
				default:
					serveBlob(w, r, blob)
				}
			},
			wantRanges: []string{rangeHeader(from, end), rangeHeader(from+3_000, end), rangeHeader(from+10_000, end)},
		},
		{
			name: "the resume is answered 200",
			answer: func(t *testing.T, w http.ResponseWriter, _ *http.Request, n int) {
				if n == 1 {
					breakRangeAt(t, w, blob, from, end, 3_000)
					return
				}
				w.Write(blob)
			},
			wantRanges: []string{rangeHeader(from, end), rangeHeader(from+3_000, end)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, n int) { tt.answer(t, w, r, n) })
			start := time.Now()
			got, err := readRange(t, newClient(s.host()), s, layerOf(blob), from, end-from, 10*time.Second)
			if err != nil {
				t.Fatalf("read: %v (requests %q)", err, s.ranges())
			}
			if !bytes.Equal(got, blob[from:end]) {
				t.Fatalf("read %d bytes that differ from bytes %d-%d of the blob", len(got), from, end-1)
			}
			if rs := s.ranges(); !slices.Equal(rs, tt.wantRanges) {
				t.Fatalf("Range headers %q, want %q", rs, tt.wantRanges)
			}
			if d := time.Since(start); d > 400*time.Millisecond {
				t.Errorf("resuming took %v; a body that made progress should resume at once", d)
			}
		})
	}
}

// TestOpenBlobRangeServerIgnoresRange: a 200 with the whole blob yields
// the range all the same (the bytes before it skipped, the body cut at
// its end), in one request.
func TestOpenBlobRangeServerIgnoresRange(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	tests := []struct {
		name           string
		offset, length int64
	}{
		{"start", 0, 1_000},
		{"middle", 20_000, 5_000},
		{"end", blobSize - 3_000, 3_000},
		{"whole blob", 0, blobSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newBlobServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
				w.Header().Set("Content-Length", fmt.Sprint(blobSize))
				w.Write(blob)
			})
			got, err := readRange(t, newClient(s.host()), s, layerOf(blob), tt.offset, tt.length, 5*time.Second)
			if err != nil || !bytes.Equal(got, blob[tt.offset:tt.offset+tt.length]) {
				t.Fatalf("read %d bytes, %v; want bytes %d+%d of the blob", len(got), err, tt.offset, tt.length)
			}
			if n := len(s.requests()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

// TestOpenBlobRangeRefusesAWrongContentRange: a 206 that does not start
// where the reader asked is a failed request: backed off and retried with
// the same Range, and after blobFailures of them a clean coded error.
func TestOpenBlobRangeRefusesAWrongContentRange(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	const from, end = 10_000, 30_000
	lie := func(w http.ResponseWriter, claim int) {
		if claim < 0 {
			w.WriteHeader(http.StatusPartialContent) // no Content-Range at all
			w.Write(blob[from:end])
			return
		}
		writeRange(w, blob, claim, claim+end-from, claim)
	}
	for _, tt := range []struct {
		name  string
		claim int // where the lying 206 starts; -1: no Content-Range
	}{
		{"starts at 0", 0},
		{"starts after the offset", from + 100},
		{"no Content-Range", -1},
	} {
		t.Run(tt.name+", then right", func(t *testing.T) {
			t.Parallel()
			s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					lie(w, tt.claim)
					return
				}
				serveBlob(w, r, blob)
			})
			got, err := readRange(t, newClient(s.host()), s, layerOf(blob), from, end-from, 10*time.Second)
			if err != nil || !bytes.Equal(got, blob[from:end]) {
				t.Fatalf("read %d bytes, %v; want bytes %d-%d of the blob", len(got), err, from, end-1)
			}
			reqs := s.requests()
			want := rangeHeader(from, end)
			if len(reqs) != 2 || reqs[0].rng != want || reqs[1].rng != want {
				t.Fatalf("Range headers %q, want [%q %q]", s.ranges(), want, want)
			}
			if gap := reqs[1].at.Sub(reqs[0].at); gap < 450*time.Millisecond {
				t.Errorf("retried %v after the wrong 206, want a backoff of ~500ms (a failure)", gap)
			}
		})
		t.Run(tt.name+", always", func(t *testing.T) {
			t.Parallel()
			s := newBlobServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) { lie(w, tt.claim) })
			c := newClient(s.host())
			registry.SetBlobBackoff(c, time.Millisecond)
			rc, err := openRange(t.Context(), t, c, s.host(), layerOf(blob), from, end-from)
			if err == nil {
				b, _ := io.ReadAll(rc)
				rc.Close()
				t.Fatalf("OpenBlobRange accepted bytes from a wrong Content-Range (%d bytes)", len(b))
			}
			if code := tarport.ErrorCode(err); code != tarport.CodeUpstream || !strings.Contains(tarport.ErrorMessage(err), "giving up") {
				t.Fatalf("error %v (%s, %q), want upstream_error, giving up", err, code, tarport.ErrorMessage(err))
			}
			if rs := s.ranges(); len(rs) != 8 || slices.ContainsFunc(rs, func(r string) bool { return r != rangeHeader(from, end) }) {
				t.Fatalf("Range headers %q, want 8 times %q", rs, rangeHeader(from, end))
			}
		})
	}
}

// TestOpenBlobRangeTooLong: a 206 that starts right but goes on past the
// range's end fails as soon as one byte too many arrives, having handed
// out no more than the range.
func TestOpenBlobRangeTooLong(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	const from, end = 10_000, 30_000
	s := newBlobServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		writeRange(w, blob, from, blobSize, from) // to the blob's end
	})
	got, err := readRange(t, newClient(s.host()), s, layerOf(blob), from, end-from, 5*time.Second)
	if code := tarport.ErrorCode(err); code != tarport.CodeUpstream || !strings.Contains(tarport.ErrorMessage(err), "more than") {
		t.Fatalf("error %v (%s), want upstream_error, more than asked", err, code)
	}
	if len(got) > end-from {
		t.Errorf("the reader handed out %d bytes of a %d-byte range", len(got), end-from)
	}
	if n := len(s.requests()); n != 1 {
		t.Errorf("%d requests, want 1 (too many bytes is not retried)", n)
	}
}

// TestOpenBlobRangeRetriesTransientStatuses: 429 and 5xx are retried with
// a backoff (Retry-After on 429), each retry with the same Range.
func TestOpenBlobRangeRetriesTransientStatuses(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	const from, end = 10_000, 30_000
	tests := []struct {
		name     string
		failures int
		status   int
		header   http.Header
		wantGaps []time.Duration
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
			got, err := readRange(t, newClient(s.host()), s, layerOf(blob), from, end-from, 10*time.Second)
			if err != nil || !bytes.Equal(got, blob[from:end]) {
				t.Fatalf("read %d bytes, %v; want bytes %d-%d of the blob", len(got), err, from, end-1)
			}
			reqs := s.requests()
			if len(reqs) != tt.failures+1 {
				t.Fatalf("%d requests, want %d", len(reqs), tt.failures+1)
			}
			for i, r := range reqs {
				if r.rng != rangeHeader(from, end) {
					t.Errorf("request %d: Range %q, want %q", i+1, r.rng, rangeHeader(from, end))
				}
			}
			for i, least := range tt.wantGaps {
				if gap := reqs[i+1].at.Sub(reqs[i].at); gap < least*95/100 {
					t.Errorf("retry %d came after %v, want at least %v", i+1, gap, least)
				}
			}
		})
	}
}

// TestOpenBlobRangeRefusesBadRanges: a range outside the blob is the
// caller's bug, refused before any request.
func TestOpenBlobRangeRefusesBadRanges(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, blob) })
	c := newClient(s.host())
	for _, tt := range []struct {
		name           string
		offset, length int64
	}{
		{"negative offset", -1, 10},
		{"zero length", 100, 0},
		{"negative length", 100, -5},
		{"past the end", blobSize - 10, 11},
		{"at the end", blobSize, 1},
		{"beyond the end", blobSize + 100, 1},
		{"overflowing end", 1, math.MaxInt64},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rc, err := openRange(t.Context(), t, c, s.host(), layerOf(blob), tt.offset, tt.length)
			if err == nil {
				rc.Close()
				t.Fatalf("OpenBlobRange(%d, %d) of a %d-byte blob succeeded", tt.offset, tt.length, blobSize)
			}
			if code := tarport.ErrorCode(err); code != tarport.CodeInternal {
				t.Fatalf("error %v (%s), want internal_error", err, code)
			}
		})
	}
	if rs := s.requests(); len(rs) != 0 {
		t.Fatalf("%d requests for invalid ranges: %+v", len(rs), rs)
	}
}

// TestOpenBlobRangeContextCanceled: a canceled context ends the open, or
// a read stalled mid-body, at once.
func TestOpenBlobRangeContextCanceled(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	const from, end = 10_000, 30_000

	t.Run("before the open", func(t *testing.T) {
		t.Parallel()
		s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, blob) })
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		rc, err := openRange(ctx, t, newClient(s.host()), s.host(), layerOf(blob), from, end-from)
		if err == nil {
			rc.Close()
			t.Fatal("OpenBlobRange with a canceled context succeeded")
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v, want context.Canceled", err)
		}
	})

	t.Run("mid-body", func(t *testing.T) {
		t.Parallel()
		s := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, end-1, blobSize))
			w.Header().Set("Content-Length", fmt.Sprint(end-from))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(blob[from : from+1_000])
			w.(http.Flusher).Flush()
			<-r.Context().Done() // stall until the client gives up
		})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rc, err := openRange(ctx, t, newClient(s.host()), s.host(), layerOf(blob), from, end-from)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if _, err := io.ReadFull(rc, make([]byte, 1_000)); err != nil {
			t.Fatalf("reading the first bytes: %v", err)
		}
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err = io.ReadAll(rc)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read after cancel: %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("the read ended %v after the cancel, want at once", d)
		}
		if n := len(s.requests()); n != 1 {
			t.Errorf("%d requests, want 1 (no retry after a cancel)", n)
		}
	})
}

// TestOpenBlobRangeForeignLayer: a range of a foreign layer the registry
// lacks is read from its URL, with the same Range and no credentials.
func TestOpenBlobRangeForeignLayer(t *testing.T) {
	t.Parallel()
	blob := testBlob()
	const from, end = 10_000, 30_000
	reg := newBlobServer(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
	})
	foreign := newBlobServer(t, func(w http.ResponseWriter, r *http.Request, _ int) { serveBlob(w, r, blob) })
	c := newClient(reg.host(), foreign.host())
	r, err := tarport.ParseReference(reg.host() + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	creds := tarport.Credentials{Username: "alice", Password: "secret"}
	d := layerOf(blob, foreign.URL+"/layers/x.tar.gz")
	o, err := c.Locate(t.Context(), r, d, creds)
	if err != nil {
		t.Fatal(err)
	}
	if o != tarport.URLOrigin(foreign.URL+"/layers/x.tar.gz") {
		t.Fatalf("located %q, want the foreign URL", o)
	}
	rc, err := c.OpenBlobRange(t.Context(), r, d, o, from, end-from, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, blob[from:end]) {
		t.Fatalf("read %d bytes, %v; want bytes %d-%d of the blob", len(got), err, from, end-1)
	}
	fr := foreign.requests()
	if len(fr) != 2 || fr[0].method != http.MethodHead || fr[0].auth != "" {
		t.Fatalf("foreign URL requests %+v, want a HEAD (locating it), then the GET", fr)
	}
	if fr[1].path != "/layers/x.tar.gz" || fr[1].rng != rangeHeader(from, end) || fr[1].auth != "" {
		t.Fatalf("foreign URL requests %+v, want a GET /layers/x.tar.gz with Range %s and no Authorization", fr, rangeHeader(from, end))
	}
}

// TestOpenBlobRangeThroughHub reads a middle range of a layer pushed to a
// real registry behind the Docker Hub look-alike: bearer tokens (here only
// the service account's, as for an anonymous requester), the 307 to a CDN
// on another host name, a connection dropped mid-range and every token
// expired before the resume. The resume goes back to the registry (a new
// token, a fresh CDN URL) and asks the CDN for the rest of the range.
func TestOpenBlobRangeThroughHub(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	hub := faultproxy.New(t, reg.URL())
	hub.RequireAuth("svc", "svc-token")
	pushed := regtest.PushImage(t, reg, "library/app", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 2 << 20, Random: true, Seed: "range-through-hub"},
	}})
	layer := pushed.Images[0].Layers[0]
	d := descriptor.Descriptor{MediaType: layer.MediaType, Digest: digest.Digest(layer.Digest), Size: layer.Size}

	// The expected bytes, straight from the registry.
	resp, err := http.Get(reg.URL() + "/v2/library/app/blobs/" + layer.Digest)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || int64(len(blob)) != layer.Size {
		t.Fatalf("reading the layer from the registry: %d bytes, %v", len(blob), err)
	}

	c := registry.New(registry.Options{
		DockerHubRegistry: hub.URL(),
		Insecure:          []string{hub.CDNHost()},
		DockerHubUsername: "svc",
		DockerHubToken:    "svc-token",
		IdleTimeout:       10 * time.Second,
	})
	r, err := tarport.ParseReference("app:v1")
	if err != nil {
		t.Fatal(err)
	}
	offset, length := layer.Size/3, layer.Size/3
	const dropAt = 300_000
	hub.DropAfter(dropAt, 1)
	rc, err := c.OpenBlobRange(t.Context(), r, d, tarport.RegistryOrigin(r.Registry), offset, length, tarport.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hub.ExpireAllTokens()
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, blob[offset:offset+length]) {
		t.Fatalf("read %d bytes, %v; want bytes %d+%d of the layer", len(got), err, offset, length)
	}

	var cdnRanges []string
	registryGets := 0
	for _, req := range hub.Requests() {
		switch {
		case req.Host == hub.CDNHost():
			cdnRanges = append(cdnRanges, req.Range)
		case req.Method == http.MethodGet && strings.Contains(req.Path, "/blobs/") && req.Status == http.StatusTemporaryRedirect:
			registryGets++
			if req.Range != rangeHeader(offset, offset+length) && req.Range != rangeHeader(offset+dropAt, offset+length) {
				t.Errorf("registry GET with Range %q", req.Range)
			}
		}
	}
	want := []string{rangeHeader(offset, offset+length), rangeHeader(offset+dropAt, offset+length)}
	if !slices.Equal(cdnRanges, want) {
		t.Errorf("CDN Range headers %q, want %q", cdnRanges, want)
	}
	if registryGets != 2 {
		t.Errorf("%d redirected registry GETs, want 2 (the resume fetches a fresh CDN URL)", registryGets)
	}
	st := hub.Stats()
	if st.Drops != 1 || st.ExpiredTokens == 0 || st.TokensIssued < 2 || st.LeakedAuth != 0 {
		t.Errorf("stats %+v, want 1 drop, an expired token refreshed, no Authorization at the CDN", st)
	}
}
