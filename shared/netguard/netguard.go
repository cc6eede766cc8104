// Package netguard owns the outbound HTTP transport of the download path:
// it refuses connections to non-public addresses (SSRF) unless the operator
// trusted the host, and it closes bodies that stall, so a reader resumes
// instead of hanging on a dead connection.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// ErrBlocked is returned for a connection to a non-public address.
var ErrBlocked = errors.New("address is not public")

// Policy says which hosts may be reached on private addresses.
type Policy struct {
	// Trusted holds "host:port" (or bare "host") entries the operator
	// trusts: allowed on loopback and private addresses.
	Trusted []string
}

func (p Policy) trusted(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	for _, t := range p.Trusted {
		if strings.EqualFold(t, addr) || strings.EqualFold(t, host) {
			return true
		}
	}
	return false
}

// Dialer returns a DialContext that checks every address it connects to,
// after DNS resolution, so a name that resolves (or rebinds) to
// 169.254.169.254 is refused too, also on redirects.
func (p Policy) Dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	open := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}
	guarded := &net.Dialer{
		Timeout:   15 * time.Second,
		KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("dialing %s: %w", address, err)
			}
			if !Public(ap.Addr()) {
				return fmt.Errorf("dialing %s: %w", address, ErrBlocked)
			}
			return nil
		},
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if p.trusted(addr) {
			return open.DialContext(ctx, network, addr)
		}
		return guarded.DialContext(ctx, network, addr)
	}
}

// Public reports whether a is a globally routable unicast address.
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// nonPublic lists ranges that IsGlobalUnicast still accepts but no
// registry lives on: shared CGNAT space, benchmarking, documentation,
// 6to4/Teredo/NAT64 wrappers that can smuggle private IPv4 addresses.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("::/96"), // IPv4-compatible IPv6 (deprecated)
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001::/32"),
	netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
}

// Transport is an HTTP transport for registry traffic under the policy.
// A body that delivers no byte for idle is closed, so the reader sees an
// error and can resume instead of hanging on a dead connection.
func (p Policy) Transport(idle time.Duration) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = p.Dialer()
	// No proxy: the dial guard must see the real target, not a proxy that
	// would fetch 169.254.169.254 for us.
	t.Proxy = nil
	t.MaxIdleConnsPerHost = 16
	t.ResponseHeaderTimeout = 60 * time.Second
	return &resumableTransport{base: t, idle: idle}
}

type resumableTransport struct {
	base http.RoundTripper
	idle time.Duration
}

func (t *resumableTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.Body == nil || req.Method == http.MethodHead || t.idle <= 0 {
		return resp, err
	}
	resp.Body = newWatchedBody(resp.Body, t.idle)
	return resp, nil
}

// watchedBody closes a body that delivers no byte for idle.
type watchedBody struct {
	body  io.ReadCloser
	timer *time.Timer
	idle  time.Duration
}

func newWatchedBody(body io.ReadCloser, idle time.Duration) *watchedBody {
	w := &watchedBody{body: body, idle: idle}
	w.timer = time.AfterFunc(idle, func() { _ = body.Close() })
	return w
}

func (w *watchedBody) Read(b []byte) (int, error) {
	n, err := w.body.Read(b)
	if n > 0 {
		w.timer.Reset(w.idle)
	}
	return n, err
}

func (w *watchedBody) Close() error {
	w.timer.Stop()
	return w.body.Close()
}
