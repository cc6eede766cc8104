package registry_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/registry"
	"github.com/tarport/tarport/shared/tarport"
)

// servfailDNS is a DNS server that answers every query with SERVFAIL (a
// name server that fails, not one that says the name does not exist),
// and counts the queries.
func servfailDNS(t *testing.T) (*net.Resolver, *atomic.Int32) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var queries atomic.Int32
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			queries.Add(1)
			resp := append([]byte(nil), buf[:n]...)
			resp[2] |= 0x80                   // QR: a response
			resp[3] = resp[3]&0xf0 | 0x80 | 2 // RA, RCODE 2: SERVFAIL
			pc.WriteTo(resp, from)
		}
	}()
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	return r, &queries
}

// TestFailingDNSIsNotRetried: a registry host whose name servers fail is
// not asked again and again (regclient backs off and retries every
// transport error, and Resolve retried 5xx-like failures on top: 24
// lookups over 2.5 minutes); resolving, locating and reading all give up
// at once with an error that says the name could not be looked up.
func TestFailingDNSIsNotRetried(t *testing.T) {
	t.Parallel()
	resolver, queries := servfailDNS(t)
	c := registry.New(registry.Options{Resolver: resolver, IdleTimeout: 10 * time.Second})
	r, err := tarport.ParseReference("registry.servfail.example/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	d := descriptor.Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: digest.FromString("x"), Size: 1, URLs: []string{"https://cdn.servfail.example/x"}}
	steps := []struct {
		name string
		run  func(ctx context.Context) error
	}{
		{"resolve", func(ctx context.Context) error {
			_, err := c.Resolve(ctx, r, tarport.DefaultPlatform, tarport.Credentials{})
			return err
		}},
		{"locate", func(ctx context.Context) error {
			_, err := c.Locate(ctx, r, d, tarport.Credentials{})
			return err
		}},
		{"open", func(ctx context.Context) error {
			_, err := c.OpenBlob(ctx, r, d, tarport.RegistryOrigin(r.Registry), tarport.Credentials{})
			return err
		}},
	}
	for _, s := range steps {
		before := queries.Load()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		start := time.Now()
		err := s.run(ctx)
		cancel()
		elapsed, n := time.Since(start), queries.Load()-before
		if err == nil || tarport.ErrorCode(err) != tarport.CodeUpstream || !strings.Contains(tarport.ErrorMessage(err), "look up") {
			t.Errorf("%s: %v (%s); want upstream_error saying the host could not be looked up", s.name, err, tarport.ErrorCode(err))
		}
		// One lookup of A and AAAA, each tried twice by the resolver (and
		// a second name for locate, whose URL is on another host).
		if elapsed > 5*time.Second || n > 16 {
			t.Errorf("%s: gave up after %v and %d DNS queries, want at once", s.name, elapsed.Round(time.Millisecond), n)
		}
		t.Logf("%s: %v, %d queries", s.name, elapsed.Round(time.Millisecond), n)
	}
}
