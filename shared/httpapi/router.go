// Package httpapi is the HTTP API of DESIGN.md: one net/http router that
// serves the local server and, behind an API Gateway adapter, the Lambdas.
// Every error leaves through one table of codes and statuses.
package httpapi

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/limits"
	"github.com/tarport/tarport/shared/metrics"
	"github.com/tarport/tarport/shared/tarport"
)

// Downloads is what the API needs of the download service.
type Downloads interface {
	Create(ctx context.Context, req download.Request) (download.View, error)
	// Status and Wait take the requester's registry credentials: a private
	// job's link is signed only for credentials the registry authorizes.
	Status(ctx context.Context, id string, creds tarport.Credentials) (download.View, error)
	Wait(ctx context.Context, id string, wait time.Duration, creds tarport.Credentials) (download.View, error)
}

// Tars streams a job's tar while it is built (the local server, whose
// workers and tar share its disk). Without one (Lambda, whose tars are S3
// objects) the tar answers are redirects to the finished tar's link.
type Tars interface {
	// Stream reads the job's tar in order, failing when the job fails;
	// the requester must be authorized for the job already.
	Stream(ctx context.Context, job tarport.Job) (io.ReadCloser, error)
	// Job reads a job, for a stream link (whose signature authorized the
	// requester).
	Job(ctx context.Context, id string) (tarport.Job, error)
}

// Options configure the API.
type Options struct {
	// Downloads and Discovery serve their routes; either may be nil (an
	// untyped nil) for a server that does not offer that part.
	Downloads Downloads
	Discovery Discovery
	// Tars, when set, streams tars at once from /api/pull, the seed's
	// /api/download and /api/download-stream, and the stream link a new
	// job's answer carries (stream_url, for the browser).
	Tars Tars
	// StreamIdle is how long a streamed tar's write may wait for a client
	// that stopped reading before it is cut (0: DefaultStreamIdle).
	StreamIdle time.Duration
	// Limits counts requests per client; nil: a limiter of RatePerMinute
	// (0 = 100) in memory.
	Limits        Limits
	RatePerMinute int
	// AccessToken, when set, is what every request but health must carry
	// in X-Tarport-Token (TARPORT_ACCESS_TOKEN).
	AccessToken string
	// OriginSecret, when set, is what CloudFront adds to every request it
	// forwards (X-Tarport-Origin-Secret): requests without it are refused,
	// and the client is the viewer address CloudFront reports.
	OriginSecret string
	// PullWait is how long /api/pull holds a request for a job to finish
	// before answering 503 + Retry-After (API Gateway allows ~30 s).
	PullWait time.Duration
	// PublicURL is the address clients reach the server by (local mode:
	// TARPORT_PUBLIC_URL, by default the listen address): links and
	// Location headers are built on it, never on a request's Host, and a
	// job-creating request's Origin must be it. Empty (Lambda): links are
	// S3's, and no Origin is compared.
	PublicURL string
	// BodyTimeout is how long a client has to send a request body (the
	// server's ReadHeaderTimeout covers headers); 0: no limit here.
	BodyTimeout time.Duration
	// RebindGuard refuses a browser's job request addressed to a host name
	// other than PublicURL's or a loopback name (DNS rebinding): on for
	// the local server; behind CloudFront the Host is API Gateway's own.
	RebindGuard bool
	// Metrics counts requests by route and status, discovery cache results
	// and token refusals (nil: none).
	Metrics *metrics.Metrics
	Logger  *slog.Logger
}

// API serves /api/*.
type API struct {
	opts    Options
	public  *url.URL // opts.PublicURL, parsed; nil without one
	log     *slog.Logger
	mux     *http.ServeMux
	streams streamSlots // tars streaming now
	links   streamLinks // signs stream links (with Tars)
}

// MaxBodyBytes bounds a request body.
const MaxBodyBytes = 64 << 10

// New builds the API handler.
func New(opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Limits == nil {
		opts.Limits = limits.New(limits.NewMemory(), limits.Rules{RatePerMinute: opts.RatePerMinute}, nil)
	}
	if opts.PullWait <= 0 {
		opts.PullWait = 20 * time.Second
	}
	if opts.StreamIdle <= 0 {
		opts.StreamIdle = DefaultStreamIdle
	}
	a := &API{opts: opts, log: opts.Logger, mux: http.NewServeMux()}
	if opts.Tars != nil {
		a.links = newStreamLinks()
	}
	if u, err := url.Parse(opts.PublicURL); err == nil && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https") {
		a.public = u
	}
	a.mux.HandleFunc("GET /api/health", a.health)
	// A Lambda serves only its share of the API (and holds only the
	// permissions for it): the routes of a missing part answer 404.
	if opts.Downloads != nil {
		a.mux.HandleFunc("POST /api/downloads", a.jobCreating(a.createDownload))
		// The seed's endpoints answer with the tar itself.
		for _, p := range []string{"/api/download", "/api/download-stream"} {
			a.mux.HandleFunc("POST "+p, a.jobCreating(a.seedDownload))
		}
		a.mux.HandleFunc("GET /api/downloads/{id}", a.downloadStatus)
		a.mux.HandleFunc("POST /api/compose", a.limited(a.composeImages))
		a.mux.HandleFunc("GET /api/pull/{image...}", a.jobCreating(a.pull))
		// GET patterns answer HEAD too; a HEAD (a link checker) must not
		// start a download.
		a.mux.HandleFunc("HEAD /api/pull/{image...}", a.getOnly)
		if opts.Tars != nil {
			a.mux.HandleFunc("GET "+StreamLinkPrefix+"{id}", a.streamLink)
			a.mux.HandleFunc("HEAD "+StreamLinkPrefix+"{id}", a.getOnly)
		}
	}
	if opts.Discovery != nil {
		// GET, and POST as the seed's UI sent it.
		for _, m := range []string{"GET ", "POST "} {
			a.mux.HandleFunc(m+"/api/search", a.limited(a.search))
			a.mux.HandleFunc(m+"/api/image-details", a.limited(a.details))
		}
		a.mux.HandleFunc("GET /api/popular", a.popular)
	}
	a.mux.HandleFunc("/api/", a.notFound)
	return a
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	w = rec
	// An id per request, in the answer and in the log lines about it.
	w.Header().Set("X-Request-Id", newRequestID())
	defer func() {
		// The router's pattern, once it matched: a bounded set of routes.
		route := r.Pattern
		if route == "" || route == "/api/" {
			route = "other"
		}
		a.opts.Metrics.Request(route, rec.status())
	}()
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			a.log.Error("panic serving request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			writeError(w, r, a.log, tarport.Errorf(tarport.CodeInternal, "internal error"))
		}
	}()
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !CanonicalPath(r.URL.Path) || r.URL.Path == "/api" {
		// ServeMux would redirect (with an HTML body) to the cleaned path.
		writeError(w, r, a.log, tarport.Errorf(tarport.CodeNotFound, "no such endpoint: %s", r.URL.Path))
		return
	}
	if err := a.admitted(r); err != nil {
		writeError(w, r, a.log, err)
		return
	}
	a.bodyDeadline(w, r)
	a.mux.ServeHTTP(w, r)
}

func (a *API) getOnly(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodGet)
	writeError(w, r, a.log, tarport.Errorf(tarport.CodeMethodNotAllowed, "%s is not allowed on %s: use GET", r.Method, r.URL.Path))
}

func (a *API) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// notFound answers unknown paths, and known paths with a wrong method
// (ServeMux sends those here only when no pattern matches the path).
func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if _, pattern := a.mux.Handler(&http.Request{Method: m, URL: r.URL, Host: r.Host}); pattern != "/api/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, r, a.log, tarport.Errorf(tarport.CodeMethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
		return
	}
	writeError(w, r, a.log, tarport.Errorf(tarport.CodeNotFound, "no such endpoint: %s", r.URL.Path))
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ReadFrom keeps the connection's own ReadFrom: a streamed tar's local
// files go out through sendfile rather than user space.
func (s *statusRecorder) ReadFrom(r io.Reader) (int64, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return io.Copy(s.ResponseWriter, r)
}

func (s *statusRecorder) status() int {
	if s.code == 0 {
		return http.StatusOK
	}
	return s.code
}

// newRequestID names a request in its answer and log lines: unique in
// practice, not secret, so the runtime's cheap generator (no syscall on
// the hot path of every request).
func newRequestID() string {
	var b [16]byte
	id := strconv.AppendUint(b[:0], rand.Uint64()|1<<63, 16)
	return string(id)
}
