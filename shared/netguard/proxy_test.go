package netguard

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// proxyServer is a live "proxy" that answers anything it is sent
// (absolute-URI GETs and CONNECTs alike) and records it.
func proxyServer(t *testing.T) (*httptest.Server, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI)
		mu.Unlock()
		io.WriteString(w, "from the proxy")
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// TestTransportIgnoresProxySettings: with the proxy variables set, the
// guarded transport still dials the real target (and refuses it), never
// the proxy: a proxy would fetch 169.254.169.254 for us, out of the
// dial guard's sight.
//
// Go's ProxyFromEnvironment never proxies localhost or loopback targets,
// and a proxy on an untrusted loopback address would be refused by the
// guard itself, so the loopback cases alone cannot tell whether the
// proxy is used. The other cases trust the proxy's address and aim at
// private, non-loopback targets: a transport honouring the variables
// would hand those to the proxy, and the proxy would answer.
//
// t.Setenv: not parallel.
func TestTransportIgnoresProxySettings(t *testing.T) {
	proxy, proxied := proxyServer(t)
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"} {
		t.Setenv(k, proxy.URL)
	}
	for _, k := range []string{"NO_PROXY", "no_proxy"} {
		t.Setenv(k, "")
	}
	target, targetHits := okServer(t, "internal secret")
	proxyAddr := proxy.Listener.Addr().String()
	tp := port(t, target)

	tests := []struct {
		name    string
		trusted []string
		url     string
	}{
		{name: "untrusted loopback target", url: "http://127.0.0.1:TP/v2/"},
		{name: "untrusted loopback target over https", url: "https://127.0.0.1:TP/v2/"},
		{name: "untrusted localhost", url: "http://localhost:TP/v2/"},
		{name: "metadata service, proxy trusted", trusted: []string{proxyAddr}, url: "http://169.254.169.254/latest/meta-data/"},
		{name: "private address over https, proxy trusted", trusted: []string{proxyAddr}, url: "https://10.0.0.1/v2/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := strings.ReplaceAll(tt.url, "TP", tp)
			client := &http.Client{Transport: Policy{Trusted: tt.trusted}.Transport(Watch{Idle: 5 * time.Second}), Timeout: 5 * time.Second}
			resp, err := client.Get(u)
			if resp != nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Fatalf("GET %s answered %s %q, want ErrBlocked", u, resp.Status, b)
			}
			if !errors.Is(err, ErrBlocked) {
				t.Fatalf("GET %s: err %v, want ErrBlocked", u, err)
			}
		})
	}
	if seen := proxied(); len(seen) != 0 {
		t.Fatalf("the proxy received %q, want nothing", seen)
	}
	if n := targetHits.Load(); n != 0 {
		t.Fatalf("the untrusted target served %d requests", n)
	}

	// Control: a transport that does use the proxy reaches it with the
	// same request, so the check above would see proxying.
	proxyURL, err := url.Parse(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctl := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DialContext: Policy{Trusted: []string{proxyAddr}}.Dialer()}, Timeout: 5 * time.Second}
	resp, err := ctl.Get("http://169.254.169.254/latest/meta-data/")
	if err != nil {
		t.Fatalf("control request through the proxy: %v", err)
	}
	resp.Body.Close()
	if seen := proxied(); len(seen) != 1 {
		t.Fatalf("control: the proxy received %q, want one request", seen)
	}
}
