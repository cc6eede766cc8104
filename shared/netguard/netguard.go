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
	"sync/atomic"
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
	// Resolver looks names up (nil: the system's); tests point it at a
	// DNS server of their own.
	Resolver *net.Resolver
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
	open := &net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second, Resolver: p.Resolver}
	guarded := &net.Dialer{
		Timeout:   15 * time.Second,
		KeepAlive: 30 * time.Second,
		Resolver:  p.Resolver,
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

// ErrTooSlow ends a body that delivered fewer bytes in a window than the
// minimum rate asks for: a reader resumes it on a new connection, and gives
// up when that does not help.
var ErrTooSlow = errors.New("the body is slower than the minimum rate")

// Watch says when a body is cut. A body that delivers no byte for Idle is
// cut; with MinRate set (bytes per second), so is one that delivers fewer
// than MinRate*Idle bytes in any window of Idle: a registry trickling bytes
// just fast enough to dodge the idle timer must not hold a worker.
type Watch struct {
	Idle    time.Duration
	MinRate int64
}

// Transport is an HTTP transport for registry traffic under the policy,
// whose bodies are watched as w says, so the reader sees an error and can
// resume instead of hanging on a dead or crawling connection.
func (p Policy) Transport(w Watch) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = p.Dialer()
	// No proxy: the dial guard must see the real target, not a proxy that
	// would fetch 169.254.169.254 for us.
	t.Proxy = nil
	t.MaxIdleConnsPerHost = 16
	t.ResponseHeaderTimeout = 60 * time.Second
	return &resumableTransport{base: t, watch: w}
}

type resumableTransport struct {
	base  http.RoundTripper
	watch Watch
}

func (t *resumableTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.Body == nil || req.Method == http.MethodHead || t.watch.Idle <= 0 {
		return resp, err
	}
	resp.Body = newWatchedBody(resp.Body, t.watch)
	return resp, nil
}

// watchedBody closes a body that delivers no byte for idle, or (with a
// floor) fewer than floor bytes in a window of idle.
type watchedBody struct {
	body   io.ReadCloser
	timer  *time.Timer // idle: reset by every byte
	window *time.Timer // rate: a fresh window every idle
	idle   time.Duration
	floor  int64
	n      atomic.Int64 // bytes in the current window
	slow   atomic.Bool  // cut for a window under the floor
	closed atomic.Bool
}

func newWatchedBody(body io.ReadCloser, w Watch) *watchedBody {
	b := &watchedBody{body: body, idle: w.Idle}
	b.timer = time.AfterFunc(w.Idle, func() { _ = body.Close() })
	if w.MinRate > 0 {
		b.floor = max(1, int64(float64(w.MinRate)*w.Idle.Seconds()))
		// Armed once assigned: check reads b.window.
		b.window = time.AfterFunc(time.Hour, b.check)
		b.window.Reset(w.Idle)
	}
	return b
}

// check ends a window: a body under the floor is cut, else a new window
// starts.
func (b *watchedBody) check() {
	if b.closed.Load() {
		return
	}
	if b.n.Swap(0) < b.floor {
		b.slow.Store(true)
		_ = b.body.Close()
		return
	}
	b.window.Reset(b.idle)
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
		b.n.Add(int64(n))
	}
	if err != nil && err != io.EOF && b.slow.Load() {
		err = fmt.Errorf("%w (under %d bytes in %s): %v", ErrTooSlow, b.floor, b.idle, err)
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.closed.Store(true)
	b.timer.Stop()
	if b.window != nil {
		b.window.Stop()
	}
	return b.body.Close()
}
