// Package faultproxy owns a test stand-in for Docker Hub: it sits in front of a
// real registry without auth and adds what Hub does and a plain registry does
// not (bearer tokens that expire, blobs redirected to a CDN on another host,
// rate limits), plus faults injected from the test (cut connections, flipped
// bytes, stalls, error statuses) and a log of every request for assertions.
package faultproxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Proxy is a Docker Hub look-alike in front of an upstream registry.
// Every method is safe to call from any goroutine while requests are served.
type Proxy struct {
	upstream string // base URL of the registry, no trailing slash
	client   *http.Client
	registry *httptest.Server // registry API and /token, on 127.0.0.1
	cdn      *httptest.Server // blob CDN, addressed as localhost
	cdnKey   []byte           // signs CDN URLs
	done     chan struct{}    // closed at cleanup so stalled handlers return

	mu        sync.Mutex // guards everything below
	tokens    map[string]grant
	tokenLife time.Duration
	user      string // RequireAuth credentials; empty: none configured
	password  string
	private   map[string]bool
	allPriv   bool
	faults    faults
	stats     Stats
	log       []Request
}

// Request is one request to the registry or the CDN, as logged.
type Request struct {
	Method string
	Host   string // as the client addressed it: Host() or CDNHost()
	Path   string
	Range  string // the Range header, "" when absent
	Status int    // status sent (0 while undecided); for a cut connection, the status before the cut
	Bytes  int64  // body bytes sent
	Auth   bool   // the request carried an Authorization header
	Fault  string // faults that fired, comma-separated: "drop", "reset", "flip", "stall", "status"
}

// Stats counts what happened so far.
type Stats struct {
	TokensIssued  int // tokens handed out by /token
	TokensDenied  int // /token answers 401 for wrong credentials
	Unauthorized  int // registry answers 401
	ExpiredTokens int // of those, because the token had expired
	Drops         int // CDN connections closed early (FIN)
	Resets        int // CDN connections reset (RST)
	Flips         int // bytes flipped
	Stalls        int // pauses mid-body
	Statuses      int // injected error statuses
	LeakedAuth    int // CDN requests that carried an Authorization header
}

// New starts the proxy in front of upstream (e.g. "http://127.0.0.1:5000") and
// stops it when the test ends.
func New(t testing.TB, upstream string) *Proxy {
	t.Helper()
	if _, err := url.Parse(upstream); err != nil {
		t.Fatalf("faultproxy: parsing upstream %q: %v", upstream, err)
	}
	p := &Proxy{
		upstream:  strings.TrimSuffix(upstream, "/"),
		client:    &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		cdnKey:    randomKey(),
		done:      make(chan struct{}),
		tokens:    map[string]grant{},
		tokenLife: DefaultTokenLifetime,
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", p.track(p.serveRegistry))
	mux.Handle("/token", p.track(p.serveToken))
	p.registry = httptest.NewServer(mux)
	p.cdn = httptest.NewServer(p.track(p.serveCDN))
	t.Cleanup(func() {
		close(p.done)
		p.registry.Close()
		p.cdn.Close()
		p.client.CloseIdleConnections()
	})
	return p
}

// Host is the registry's host:port, "127.0.0.1:P1", for references and config.
func (p *Proxy) Host() string { return p.registry.Listener.Addr().String() }

// URL is the registry's base URL, "http://127.0.0.1:P1".
func (p *Proxy) URL() string { return "http://" + p.Host() }

// CDNHost is the CDN's host:port, "localhost:P2". The name differs from Host on
// purpose: Go's client strips Authorization on a redirect only when the host
// name changes, so a leak would go unseen with both on 127.0.0.1.
func (p *Proxy) CDNHost() string {
	_, port, _ := strings.Cut(p.cdn.Listener.Addr().String(), ":")
	return "localhost:" + port
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// LeakedAuth reports whether any CDN request carried an Authorization header.
func (p *Proxy) LeakedAuth() bool { return p.Stats().LeakedAuth > 0 }

// Requests returns the requests so far, in order of arrival. An entry is
// updated as its answer goes out, so it is complete once the client has read
// the answer.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.log...)
}

// repoPath splits a repository endpoint. The name is greedy because names
// contain slashes; the last segment (reference, digest, "list") never does.
var repoPath = regexp.MustCompile(`^/v2/(.+)/(manifests|blobs|tags|referrers)/([^/]+)$`)

func (p *Proxy) serveRegistry(w *tracked, r *http.Request) {
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	if r.URL.Path == "/v2/" {
		if p.authorize(w, r, "") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "{}")
		}
		return
	}
	m := repoPath.FindStringSubmatch(r.URL.Path)
	if m == nil {
		writeError(w, http.StatusNotFound, "NAME_UNKNOWN", "repository name not known to registry", nil)
		return
	}
	name, kind, ref := m[1], m[2], m[3]
	if !p.authorize(w, r, name) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// Tests push straight to the upstream; through Hub's front door they pull.
		writeError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "this registry is read-only", nil)
		return
	}
	switch kind {
	case "manifests":
		if !p.injectStatus(w, Manifests) {
			p.forward(w, r)
		}
	case "blobs":
		if p.injectStatus(w, Blobs) {
			return
		}
		if r.Method == http.MethodGet {
			p.redirectBlob(w, r, name, ref)
		} else {
			p.forward(w, r)
		}
	default:
		p.forward(w, r)
	}
}

// forwardedHeaders are the upstream answer headers a client relies on.
var forwardedHeaders = []string{"Content-Type", "Content-Length", "Docker-Content-Digest", "Etag", "Link"}

// forward relays a read request to the upstream registry as is.
func (p *Proxy) forward(w *tracked, r *http.Request) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.upstream+r.URL.RequestURI(), nil)
	if err != nil {
		writeError(w, http.StatusBadGateway, "UNKNOWN", "building upstream request", nil)
		return
	}
	// Without the client's Accept a registry may down-convert the manifest.
	req.Header["Accept"] = r.Header.Values("Accept")
	resp, err := p.client.Do(req)
	if err != nil {
		writeError(w, http.StatusBadGateway, "UNKNOWN", "upstream unreachable", nil)
		return
	}
	defer resp.Body.Close()
	for _, h := range forwardedHeaders {
		for _, v := range resp.Header.Values(h) {
			w.Header().Add(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// writeError answers in the registry's error shape
// ({"errors":[{"code","message","detail"}]}, as in fixtures/hub/error-*.json).
func writeError(w http.ResponseWriter, status int, code, message string, detail any) {
	type regError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail,omitempty"`
	}
	body, _ := json.Marshal(map[string][]regError{"errors": {{code, message, detail}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// tracked keeps a request's log entry current while its answer is sent, so
// the log never lags behind what the client has already seen.
type tracked struct {
	http.ResponseWriter
	p    *Proxy
	i    int // index of the entry in p.log
	head bool
}

func (w *tracked) update(change func(*Request)) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	change(&w.p.log[w.i])
}

func (w *tracked) WriteHeader(status int) {
	w.update(func(r *Request) {
		if r.Status == 0 {
			r.Status = status
		}
	})
	w.ResponseWriter.WriteHeader(status)
}

func (w *tracked) Write(b []byte) (int, error) {
	// Counted before writing: the client may read the bytes before Write returns.
	w.update(func(r *Request) {
		if r.Status == 0 {
			r.Status = http.StatusOK
		}
		if !w.head { // net/http drops a HEAD answer's body
			r.Bytes += int64(len(b))
		}
	})
	n, err := w.ResponseWriter.Write(b)
	if n < len(b) && !w.head {
		w.update(func(r *Request) { r.Bytes -= int64(len(b) - n) })
	}
	return n, err
}

// fired notes a fault in the log; one answer can see several.
func (w *tracked) fired(fault string) {
	w.update(func(r *Request) {
		if r.Fault != "" {
			fault = r.Fault + "," + fault
		}
		r.Fault = fault
	})
}

// Unwrap lets http.ResponseController reach Flush and Hijack underneath.
func (w *tracked) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (p *Proxy) track(h func(*tracked, *http.Request)) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.log = append(p.log, Request{
			Method: r.Method,
			Host:   r.Host,
			Path:   r.URL.Path,
			Range:  r.Header.Get("Range"),
			Auth:   r.Header.Get("Authorization") != "",
		})
		w := &tracked{ResponseWriter: rw, p: p, i: len(p.log) - 1, head: r.Method == http.MethodHead}
		p.mu.Unlock()
		h(w, r)
		w.update(func(r *Request) {
			if r.Status == 0 {
				r.Status = http.StatusOK // nothing written: net/http sends 200
			}
		})
	})
}
