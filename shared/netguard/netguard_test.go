package netguard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPublic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		want bool
	}{
		// Loopback.
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"::1", false},
		// RFC 1918 private space, and its edges.
		{"10.0.0.1", false},
		{"10.255.255.255", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"172.15.255.255", true},
		{"172.32.0.1", true},
		{"192.168.0.1", false},
		{"192.168.255.255", false},
		// Link-local: the cloud metadata service above all.
		{"169.254.169.254", false},
		{"169.254.0.1", false},
		{"fe80::1", false},
		// Unique local IPv6.
		{"fc00::1", false},
		{"fd12:3456::1", false},
		// Shared CGNAT space and its edges.
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		{"100.63.255.255", true},
		{"100.128.0.1", true},
		// Unspecified, broadcast, reserved, documentation, benchmarking.
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"::", false},
		{"255.255.255.255", false},
		{"240.0.0.1", false},
		{"192.0.0.8", false},
		{"192.0.2.1", false},
		{"198.18.0.1", false},
		{"198.51.100.1", false},
		{"203.0.113.1", false},
		{"2001:db8::1", false},
		// Multicast.
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"ff02::1", false},
		{"ff0e::1", false},
		// IPv4 smuggled in IPv6: mapped, NAT64, 6to4, Teredo.
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"64:ff9b::7f00:1", false},
		{"64:ff9b::a9fe:a9fe", false},
		{"64:ff9b:1::1", false},
		{"2002:7f00:1::1", false},
		{"2002:a9fe:a9fe::1", false},
		{"2001::1", false},
		// Public.
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"::ffff:8.8.8.8", true},
		{"2606:4700::1111", true},
		{"2a00:1450:4001::1", true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			a := netip.MustParseAddr(tt.addr)
			if got := Public(a); got != tt.want {
				t.Fatalf("Public(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

// okServer starts an HTTP server on 127.0.0.1 that counts its requests.
func okServer(t *testing.T, body string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func port(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	_, p, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDialer(t *testing.T) {
	t.Parallel()
	srv, _ := okServer(t, "ok")
	other, _ := okServer(t, "ok")
	p, otherPort := port(t, srv), port(t, other)
	fill := func(s string) string {
		return strings.NewReplacer("PORT", p, "OTHER", otherPort).Replace(s)
	}
	tests := []struct {
		name        string
		trusted     []string
		addr        string
		wantBlocked bool
	}{
		{name: "loopback refused", addr: "127.0.0.1:PORT", wantBlocked: true},
		{name: "trusted host:port", trusted: []string{"127.0.0.1:PORT"}, addr: "127.0.0.1:PORT"},
		{name: "trusted bare host", trusted: []string{"127.0.0.1"}, addr: "127.0.0.1:PORT"},
		{name: "trusted other port only", trusted: []string{"127.0.0.1:OTHER"}, addr: "127.0.0.1:PORT", wantBlocked: true},
		{name: "other host trusted", trusted: []string{"10.0.0.5:PORT", "registry.internal"}, addr: "127.0.0.1:PORT", wantBlocked: true},
		{name: "localhost resolves to loopback", addr: "localhost:PORT", wantBlocked: true},
		{name: "trusting a name is not trusting its address", trusted: []string{"localhost:PORT"}, addr: "127.0.0.1:PORT", wantBlocked: true},
		{name: "trusted name", trusted: []string{"localhost:PORT"}, addr: "localhost:PORT"},
		{name: "trusted name any case", trusted: []string{"LocalHost:PORT"}, addr: "localhost:PORT"},
		{name: "trusted bare name", trusted: []string{"localhost"}, addr: "localhost:PORT"},
		{name: "ipv6 loopback", addr: "[::1]:PORT", wantBlocked: true},
		{name: "mapped loopback", addr: "[::ffff:127.0.0.1]:PORT", wantBlocked: true},
		{name: "unspecified", addr: "0.0.0.0:PORT", wantBlocked: true},
		{name: "metadata service", addr: "169.254.169.254:80", wantBlocked: true},
		{name: "private", addr: "10.1.2.3:443", wantBlocked: true},
		{name: "nat64 loopback", addr: "[64:ff9b::7f00:1]:PORT", wantBlocked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var trusted []string
			for _, h := range tt.trusted {
				trusted = append(trusted, fill(h))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := Policy{Trusted: trusted}.Dialer()(ctx, "tcp", fill(tt.addr))
			if conn != nil {
				defer conn.Close()
			}
			if tt.wantBlocked {
				if !errors.Is(err, ErrBlocked) {
					t.Fatalf("dial %s with trusted %q: err %v, want ErrBlocked", fill(tt.addr), trusted, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial %s with trusted %q: %v", fill(tt.addr), trusted, err)
			}
			// The connection is real: the server answers on it.
			fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("request over the dialed connection: %v", err)
			}
			resp.Body.Close()
		})
	}
}

// TestDialerLetsPublicAddressesThrough: the guard itself does not refuse
// a public address (this sandbox may have no route to it: any error but
// ErrBlocked is fine).
func TestDialerLetsPublicAddressesThrough(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	conn, err := Policy{}.Dialer()(ctx, "tcp", "1.1.1.1:443")
	if conn != nil {
		conn.Close()
	}
	if errors.Is(err, ErrBlocked) {
		t.Fatalf("dial 1.1.1.1:443: %v, a public address was refused", err)
	}
}

func TestTransportRedirects(t *testing.T) {
	t.Parallel()
	target, targetHits := okServer(t, "internal secret")
	tp := port(t, target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			io.WriteString(w, "front ok")
			return
		}
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(front.Close)
	fp := port(t, front)

	tests := []struct {
		name        string
		trusted     []string
		url         string
		wantBlocked bool
		wantBody    string
	}{
		{name: "to localhost", url: "http://127.0.0.1:FP/r?to=http://localhost:TP/", wantBlocked: true},
		{name: "to loopback ip, other port", url: "http://127.0.0.1:FP/r?to=http://127.0.0.1:TP/", wantBlocked: true},
		{name: "to ipv6 loopback", url: "http://127.0.0.1:FP/r?to=http://[::1]:TP/", wantBlocked: true},
		{name: "to metadata service", url: "http://127.0.0.1:FP/r?to=http://169.254.169.254/latest/meta-data/", wantBlocked: true},
		{name: "untrusted first hop", url: "http://localhost:TP/", wantBlocked: true},
		{name: "to the trusted host itself", url: "http://127.0.0.1:FP/r?to=/ok", wantBody: "front ok"},
		{name: "to another trusted host", trusted: []string{"localhost:TP"}, url: "http://127.0.0.1:FP/r?to=http://localhost:TP/", wantBody: "internal secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fill := strings.NewReplacer("FP", fp, "TP", tp).Replace
			trusted := []string{"127.0.0.1:" + fp}
			for _, h := range tt.trusted {
				trusted = append(trusted, fill(h))
			}
			client := &http.Client{Transport: Policy{Trusted: trusted}.Transport(Watch{Idle: 5 * time.Second}), Timeout: 10 * time.Second}
			resp, err := client.Get(fill(tt.url))
			if tt.wantBlocked {
				if resp != nil {
					resp.Body.Close()
				}
				if !errors.Is(err, ErrBlocked) {
					t.Fatalf("GET %s: err %v, want ErrBlocked", fill(tt.url), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("GET %s: %v", fill(tt.url), err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || string(b) != tt.wantBody {
				t.Fatalf("GET %s: body %q, %v; want %q", fill(tt.url), b, err, tt.wantBody)
			}
		})
	}
	// Only the trusted-target case reached the target. Subtests ran in
	// parallel, so count at the end.
	t.Cleanup(func() {
		if n := targetHits.Load(); n != 1 {
			t.Errorf("the untrusted target served %d requests, want 1 (the trusted case only)", n)
		}
	})
}

// trustedClient talks to srv (on 127.0.0.1, trusted) with the watched
// transport.
func trustedClient(t *testing.T, srv *httptest.Server, idle time.Duration) *http.Client {
	t.Helper()
	return watchedClient(srv, Watch{Idle: idle})
}

// watchedClient talks to srv (trusted) with bodies watched as w says.
func watchedClient(srv *httptest.Server, w Watch) *http.Client {
	return &http.Client{Transport: Policy{Trusted: []string{srv.Listener.Addr().String()}}.Transport(w)}
}

// stallServer sends half a body, then nothing until the test ends or the
// client goes away.
func stallServer(t *testing.T, chunked bool) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !chunked {
			w.Header().Set("Content-Length", "2000")
		}
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv
}

func TestWatchedBodyStall(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			t.Parallel()
			srv := stallServer(t, chunked)
			resp, err := trustedClient(t, srv, idle).Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			start := time.Now()
			b, err := io.ReadAll(resp.Body)
			elapsed := time.Since(start)
			// Not a clean io.EOF: the blob reader must see a truncated body
			// as a failure to resume from, never as the end of the blob.
			if err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("read of a stalled body: err %#v, want a (non-EOF) error", err)
			}
			if len(b) != 1000 {
				t.Errorf("read %d bytes before the stall, want 1000", len(b))
			}
			if elapsed > idle+time.Second {
				t.Errorf("stall detected after %v, want within %v", elapsed, idle+time.Second)
			}
			if elapsed < idle/2 {
				t.Errorf("stall detected after %v, before the %v idle timeout", elapsed, idle)
			}
		})
	}
}

// TestWatchedBodySlowButSteady: idle is between bytes, not for the whole
// body: a slow body that keeps flowing is read to the end.
func TestWatchedBodySlowButSteady(t *testing.T) {
	t.Parallel()
	const idle = 500 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "120")
		for range 12 {
			w.Write([]byte("0123456789"))
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}))
	t.Cleanup(srv.Close)
	resp, err := trustedClient(t, srv, idle).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || len(b) != 120 {
		t.Fatalf("slow body: %d bytes, %v; want 120 and no error", len(b), err)
	}
}

func TestWatchedBodyComplete(t *testing.T) {
	t.Parallel()
	srv, _ := okServer(t, strings.Repeat("x", 100_000))
	client := trustedClient(t, srv, 200*time.Millisecond)
	for i := range 3 { // reused connections too
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(b) != 100_000 {
			t.Fatalf("request %d: %d bytes, %v", i, len(b), err)
		}
	}
	// A HEAD has no body to watch.
	resp, err := client.Head(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// hijackServer writes a raw response head and part of its body, then
// breaks the connection: closed cleanly, or reset.
func hijackServer(t *testing.T, head, partial string, reset bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		buf.WriteString(head + partial)
		buf.Flush()
		time.Sleep(50 * time.Millisecond) // let the client read the part
		if reset {
			conn.(*net.TCPConn).SetLinger(0)
		}
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestWatchedBodyBrokenConnection: a connection that breaks mid-body is
// an error, never a short body ending in a clean io.EOF.
func TestWatchedBodyBrokenConnection(t *testing.T) {
	t.Parallel()
	partial := strings.Repeat("y", 500)
	tests := []struct {
		name  string
		head  string
		reset bool
	}{
		{name: "closed mid-body", head: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"},
		{name: "reset mid-body", head: "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", reset: true},
		{name: "closed mid-chunk", head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"},
		{name: "reset mid-chunk", head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n", reset: true},
		{name: "closed before the last chunk", head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n", reset: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := partial
			if tt.name == "closed before the last chunk" {
				body += "\r\n" // a complete chunk, then nothing
			}
			srv := hijackServer(t, tt.head, body, tt.reset)
			resp, err := trustedClient(t, srv, 10*time.Second).Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("read of a broken body: err %#v, want a (non-EOF) error", err)
			}
			if len(b) > len(partial) {
				t.Fatalf("read %d bytes, more than the %d sent", len(b), len(partial))
			}
		})
	}
}

// TestWatchedBodyOwnCancellation: when the caller gives up, it gets its
// context's error, not a cue to resume.
func TestWatchedBodyOwnCancellation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{
			name: "canceled",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
				return ctx, cancel
			},
			wantErr: context.Canceled,
		},
		{
			name: "deadline",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 200*time.Millisecond)
			},
			wantErr: context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := stallServer(t, false)
			ctx, cancel := tt.ctx()
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := trustedClient(t, srv, 10*time.Second).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			start := time.Now()
			_, err = io.ReadAll(resp.Body)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("read after the context ended: err %#v, want %v", err, tt.wantErr)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("read returned %v after the context ended", d)
			}
		})
	}
}

// TestWatchedBodyNoIdleTimeout: an idle of zero (or less) watches nothing,
// so a pause in the body is waited out.
func TestWatchedBodyNoIdleTimeout(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "20")
		w.Write([]byte("0123456789"))
		w.(http.Flusher).Flush()
		time.Sleep(300 * time.Millisecond)
		w.Write([]byte("0123456789"))
	}))
	t.Cleanup(srv.Close)
	for _, idle := range []time.Duration{0, -time.Second} {
		resp, err := trustedClient(t, srv, idle).Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || len(b) != 20 {
			t.Fatalf("idle %v: %d bytes, %v; want 20 and no error", idle, len(b), err)
		}
	}
}

// trickleServer sends one byte every gap, forever, under a big length.
func trickleServer(t *testing.T, gap time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		for {
			w.Write([]byte{'x'})
			w.(http.Flusher).Flush()
			select {
			case <-time.After(gap):
			case <-r.Context().Done():
				return
			}
		}
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}

// TestWatchedBodyUnderTheFloor: a body that never goes silent long enough
// for the idle timer, but brings fewer bytes per window than the minimum
// rate, is cut after one window with ErrTooSlow.
func TestWatchedBodyUnderTheFloor(t *testing.T) {
	t.Parallel()
	const window = 300 * time.Millisecond
	srv := trickleServer(t, 20*time.Millisecond) // 50 B/s
	client := watchedClient(srv, Watch{Idle: window, MinRate: 1000})
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	b, err := io.ReadAll(resp.Body)
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTooSlow) {
		t.Fatalf("read %d bytes, err %v; want ErrTooSlow", len(b), err)
	}
	if elapsed < window*9/10 || elapsed > window+time.Second {
		t.Errorf("cut after %v, want after one window of %v", elapsed, window)
	}
}

// TestWatchedBodyAtTheFloor: a slow body that keeps the minimum rate is
// read to the end, however long it takes.
func TestWatchedBodyAtTheFloor(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "200")
		for range 20 {
			w.Write([]byte("0123456789"))
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond) // 200 B/s
		}
	}))
	t.Cleanup(srv.Close)
	client := watchedClient(srv, Watch{Idle: 300 * time.Millisecond, MinRate: 100})
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, err := io.ReadAll(resp.Body); err != nil || len(b) != 200 {
		t.Fatalf("read %d bytes, %v; want all 200", len(b), err)
	}
}
