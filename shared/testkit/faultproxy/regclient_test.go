package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/errs"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/ref"
)

// newRegclient points regclient, the library tarport pulls with, at the proxy.
func newRegclient(p *Proxy) *regclient.RegClient {
	host := config.HostNewName(p.Host())
	host.TLS = config.TLSDisabled
	return regclient.New(
		regclient.WithConfigHost(*host),
		regclient.WithRetryDelay(10*time.Millisecond, 200*time.Millisecond),
	)
}

// regclientPull reads the test image's layer: ManifestGet, then BlobGet through
// the 307 and a full read. regclient's blob reader checks size and digest at
// EOF. between runs after the manifest, before the blob.
func regclientPull(ctx context.Context, t *testing.T, rc *regclient.RegClient, p *Proxy, between func()) ([]byte, error) {
	t.Helper()
	r, err := ref.New(p.Host() + "/" + testRepo + ":" + testTag)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rc.ManifestGet(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("getting manifest: %w", err)
	}
	layers, err := m.(manifest.Imager).GetLayers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %v: %v", layers, err)
	}
	if between != nil {
		between()
	}
	br, err := rc.BlobGet(ctx, r, layers[0])
	if err != nil {
		return nil, fmt.Errorf("getting blob: %w", err)
	}
	defer br.Close()
	return io.ReadAll(br)
}

func TestRegclientResumesAfterDrop(t *testing.T) {
	t.Parallel()
	p, img := setup(t)
	const cutAt = 300_000
	p.DropAfter(cutAt, 1)
	body, err := regclientPull(t.Context(), t, newRegclient(p), p, nil)
	if err != nil || digestOf(body) != img.layerDigest {
		t.Fatalf("pull: %d bytes, %v", len(body), err)
	}
	if s := p.Stats(); s.Drops != 1 || s.LeakedAuth != 0 {
		t.Errorf("stats %+v, want 1 drop and no leaked auth", s)
	}
	// The resume went back to the registry for a fresh redirect, then asked
	// the CDN for the rest (regclient's end is the size, one past the last byte).
	var resumed bool
	for _, r := range p.Requests() {
		if r.Host == p.CDNHost() && r.Range == fmt.Sprintf("bytes=%d-%d", cutAt, layerSize) &&
			r.Status == http.StatusPartialContent && r.Bytes == layerSize-cutAt {
			resumed = true
		}
	}
	if !resumed {
		t.Errorf("no ranged resume in the log: %+v", p.Requests())
	}
}

// TestRegclientLimits pins down what regclient v0.11.7 does NOT recover from,
// which tarport's registry client has to handle itself. A failure here means
// regclient changed: revisit that code, then update the expectation.
func TestRegclientLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		fault   func(*Proxy)
		between func(*Proxy)
		want    error // nil: the pull succeeds
	}{
		// Only io.EOF / io.ErrUnexpectedEOF trigger its Range resume
		// (internal/reghttp Resp.Read); a reset surfaces as is.
		{"reset is not resumed", func(p *Proxy) { p.ResetAfter(300_000, 1) }, nil, syscall.ECONNRESET},
		// A 200 to a ranged resume fails "range request not supported by
		// server"; the original EOF is returned.
		{"ignored range fails the resume", func(p *Proxy) { p.DropAfter(300_000, 1); p.IgnoreRange(true) }, nil, io.ErrUnexpectedEOF},
		{"two drops are resumed", func(p *Proxy) { p.DropAfter(300_000, 2) }, nil, nil},
		{"flipped byte fails the digest", func(p *Proxy) { p.FlipByte("", 5000, 1) }, nil, errs.ErrDigestMismatch},
		{"429 with Retry-After is retried", func(p *Proxy) { p.Status(429, 1, time.Second, Manifests) }, nil, nil},
		// 503 is not in its retry list (500, 502, 504, 408, 429 are).
		{"503 is not retried", func(p *Proxy) { p.Status(503, 1, 0, Blobs) }, nil, errs.ErrHTTPStatus},
		// It clamps expires_in to at least 60 s and refreshes only by its own
		// clock; a 401 for a token it thinks valid ends the pull.
		{"early server-side expiry is not refreshed", nil, (*Proxy).ExpireAllTokens, errs.ErrHTTPUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, img := setup(t)
			if tt.fault != nil {
				tt.fault(p)
			}
			between := func() {}
			if tt.between != nil {
				between = func() { tt.between(p) }
			}
			body, err := regclientPull(t.Context(), t, newRegclient(p), p, between)
			if tt.want == nil {
				if err != nil || digestOf(body) != img.layerDigest {
					t.Errorf("pull: %d bytes, %v; want success", len(body), err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("pull error %v, want %v", err, tt.want)
			}
		})
	}
}

// TestRegclientResumeLeaksThrottle shows that every resume keeps one of the
// host's ReqConcurrent (default 3) throttle slots for good: Resp.next acquires
// a slot and overwrites the previous release func. After two resumes on one
// RegClient the third blocks until the context ends.
func TestRegclientResumeLeaksThrottle(t *testing.T) {
	t.Parallel()
	p, img := setup(t)
	rc := newRegclient(p)
	for i := 1; i <= 3; i++ {
		p.DropAfter(300_000, 1)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		body, err := regclientPull(ctx, t, rc, p, nil)
		cancel()
		ok := err == nil && digestOf(body) == img.layerDigest
		if want := i < 3; ok != want {
			t.Errorf("pull %d with one drop: ok %v (%d bytes, %v), want ok %v", i, ok, len(body), err, want)
		}
	}
}
