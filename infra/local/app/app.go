// Package app wires the local all-in-one tarport: the shared handlers on
// one HTTP server, a data directory for objects, bbolt for job records and
// a goroutine pool for workers. The same planning and assembly code runs on
// AWS; only these adapters differ.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tarport/tarport/shared/boltdb"
	"github.com/tarport/tarport/shared/dirstore"
	"github.com/tarport/tarport/shared/discovery"
	"github.com/tarport/tarport/shared/dockerhub"
	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/httpapi"
	"github.com/tarport/tarport/shared/limits"
	"github.com/tarport/tarport/shared/metrics"
	"github.com/tarport/tarport/shared/metrics/promsink"
	"github.com/tarport/tarport/shared/registry"
	"github.com/tarport/tarport/shared/settings"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/workpool"
	"github.com/tarport/tarport/web"
)

// The adapters satisfy the ports they are wired to (those that do not
// say so in their own package).
var (
	_ download.Registry  = (*registry.Client)(nil)
	_ download.Jobs      = (*boltdb.Jobs)(nil)
	_ registry.MetaCache = (*dirstore.Store)(nil)
	_ httpapi.Downloads  = (*download.Service)(nil)
	_ httpapi.Tars       = (*download.Service)(nil)
	// Without it, streams would silently wait for stored layers: the
	// feature is an optional port.
	_ download.WatchedObjects = (*dirstore.Store)(nil)
	_ httpapi.Discovery       = (*discovery.Service)(nil)
	_ discovery.Hub           = (*dockerhub.Client)(nil)
	_ discovery.Registry      = (*registry.Client)(nil)
)

// App is a running local tarport.
type App struct {
	Store     *dirstore.Store
	Jobs      *boltdb.Jobs
	Service   *download.Service
	Discovery *discovery.Service
	cache     *boltdb.Cache
	pool      *workpool.Pool
	handler   http.Handler
	settings  settings.Settings
	log       *slog.Logger
	stopGC    context.CancelFunc
	gcDone    chan struct{}
	warmDone  chan struct{}
	warmKick  chan struct{}
}

// New opens the data directory and starts the workers; unfinished jobs of
// an earlier run resume.
func New(ctx context.Context, s settings.Settings, log *slog.Logger) (*App, error) {
	if err := os.MkdirAll(s.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating data directory %s: %w", s.DataDir, err)
	}
	store, err := dirstore.Open(s.DataDir)
	if err != nil {
		return nil, err
	}
	jobs, err := boltdb.Open(filepath.Join(s.DataDir, "jobs.db"))
	if err != nil {
		return nil, err
	}
	prom := promsink.New() // served at /metrics
	m := metrics.New(prom)
	reg := newRegistry(s, store, m, log)
	svc := download.New(reg, store, store, jobs, store, download.Config{LinkTTL: s.PresignTTL, MaxImageBytes: s.MaxImageBytes}, log)
	pool := workpool.New(s.Workers, svc.RunTask, svc.Abandon, log)
	svc.SetQueue(pool)
	lim := limits.New(limits.NewMemory(), limits.Rules{
		RatePerMinute: s.RateLimitPerMinute,
		ClientPerDay:  s.ClientQuotaPerDay,
		BudgetPerDay:  s.BudgetPerDay,
	}, nil)
	svc.SetQuota(lim)
	svc.SetMetrics(m)
	lim.WithMetrics(m)

	cache, err := boltdb.OpenCache(filepath.Join(s.DataDir, "cache.db"))
	if err != nil {
		jobs.Close()
		return nil, err
	}
	dcfg := discovery.DefaultConfig()
	dcfg.Logger = log
	dcfg.Registry = reg
	disc := discovery.New(dockerhub.New(s.HubAPI, &http.Client{Timeout: 20 * time.Second}), cache, dcfg)

	api := httpapi.New(httpapi.Options{
		Downloads:    svc,
		Tars:         svc, // the tar streams while it is built
		Discovery:    disc,
		Limits:       lim,
		AccessToken:  s.AccessToken,
		OriginSecret: s.OriginSecret,
		PublicURL:    s.LocalURL(),
		BodyTimeout:  s.ReadTimeout,
		RebindGuard:  true,
		Metrics:      m,
		Logger:       log,
	})
	a := &App{Store: store, Jobs: jobs, Service: svc, Discovery: disc, cache: cache, pool: pool, handler: routes(api, store, prom, s.ReadTimeout, log), settings: s, log: log, gcDone: make(chan struct{})}
	unfinished, err := jobs.Unfinished(ctx)
	if err != nil {
		a.Close()
		return nil, err
	}
	if err := svc.Resume(ctx, unfinished); err != nil {
		a.Close()
		return nil, err
	}
	gcCtx, stop := context.WithCancel(context.Background())
	a.stopGC = stop
	go a.collect(gcCtx, time.Hour)
	a.warmKick, a.warmDone = make(chan struct{}, 1), make(chan struct{})
	go a.warm(gcCtx, s.WarmEvery)
	return a, nil
}

// newRegistry is the registry adapter as the settings say, caching
// manifests and configs in store.
func newRegistry(s settings.Settings, store *dirstore.Store, m *metrics.Metrics, log *slog.Logger) *registry.Client {
	return registry.New(registry.Options{
		DockerHubRegistry: s.DockerHubRegistry,
		Insecure:          s.InsecureRegistries,
		DockerHubUsername: s.DockerHubUsername,
		DockerHubToken:    s.DockerHubToken,
		MaxImageBytes:     s.MaxImageBytes,
		IdleTimeout:       s.BlobIdleTimeout,
		MinRate:           s.BlobMinRate,
		Cache:             store,
		Metrics:           m,
		Logger:            log,
	})
}

// routes is the server's one handler: the API, the local download links,
// /metrics and the UI, every error answered through the one table.
func routes(api http.Handler, store *dirstore.Store, prom *promsink.Sink, readTimeout time.Duration, log *slog.Logger) http.Handler {
	writeErr := func(w http.ResponseWriter, r *http.Request, err error) { httpapi.WriteError(w, r, log, err) }
	store.SetErrorWriter(writeErr)
	mux := http.NewServeMux()
	mux.Handle("/api/", api)
	mux.Handle("/api", api)
	mux.Handle(dirstore.LinkPrefix, store)
	mux.Handle("GET /metrics", prom.Handler())
	mux.Handle("/", ui())
	return jsonPaths(mux, readTimeout, writeErr)
}

// Handler serves the API, the download links and the UI.
func (a *App) Handler() http.Handler { return a.handler }

// Server is the HTTP server of the local tarport, around Handler. Headers
// must arrive within TARPORT_READ_TIMEOUT (and a body within as long
// again, which the API sets per request); a slow client's connection is
// closed, not held. There is no WriteTimeout: a 20 GB tar takes as long as
// the client's link.
func (a *App) Server() *http.Server {
	return &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: a.settings.ReadTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
}

// jsonPaths answers the API's and the links' paths that ServeMux would
// redirect (to a cleaned path, or /api to /api/) with a JSON 404 instead
// of an HTML redirect, and bounds the time to send a body nothing reads.
func jsonPaths(next http.Handler, readTimeout time.Duration, writeErr func(http.ResponseWriter, *http.Request, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		ours := p == "/files" || strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, dirstore.LinkPrefix)
		if p == "/files" || (ours && !httpapi.CanonicalPath(p)) {
			writeErr(w, r, tarport.Errorf(tarport.CodeNotFound, "no such endpoint: %s", p))
			return
		}
		if !strings.HasPrefix(p, "/api/") && r.ContentLength != 0 {
			// Only the API reads bodies (within its read timeout), but
			// net/http drains up to 256 KiB of an unread one when the
			// request ends: bound that too.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(readTimeout))
		}
		next.ServeHTTP(w, r)
	})
}

// Close stops the workers (their jobs resume at the next start) and closes
// the job database.
func (a *App) Close() error {
	if a.stopGC != nil {
		a.stopGC()
		<-a.gcDone
		<-a.warmDone
	}
	a.pool.Close()
	return errors.Join(a.cache.Close(), a.Jobs.Close())
}

// collect deletes expired jobs and their tars, as S3 lifecycle rules and
// DynamoDB TTL do on AWS.
func (a *App) collect(ctx context.Context, every time.Duration) {
	defer close(a.gcDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		expired, err := a.Jobs.Expired(ctx)
		if err != nil {
			a.log.Warn("listing expired jobs", "err", err)
		}
		for _, job := range expired {
			if err := a.Store.Delete(ctx, job.TarKey); err != nil {
				a.log.Warn("deleting expired tar", "job", job.ID, "err", err)
				continue
			}
			if err := a.Jobs.Delete(ctx, job); err != nil {
				a.log.Warn("deleting expired job", "job", job.ID, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// WarmNow asks for one warm of the discovery caches as soon as the
// running one (if any) ends; asks made meanwhile fold into that one.
// `kill -USR1` of the local server calls it.
func (a *App) WarmNow() {
	select {
	case a.warmKick <- struct{}{}:
	default:
	}
}

// warm refreshes the discovery caches (popular images and their details)
// soon after start and then every period, as the EventBridge schedule does
// on AWS, and whenever WarmNow asks. every 0 warms only when asked.
func (a *App) warm(ctx context.Context, every time.Duration) {
	defer close(a.warmDone)
	// A stopped timer never fires: with every 0 only asks wake the loop.
	next := time.NewTimer(5 * time.Second)
	defer next.Stop()
	if every <= 0 {
		next.Stop()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-next.C:
		case <-a.warmKick:
		}
		start := time.Now()
		if err := a.Discovery.Warm(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("warming the discovery cache", "err", err)
		} else if ctx.Err() == nil {
			a.log.Info("warmed the discovery cache", "took", time.Since(start).Round(time.Millisecond))
		}
		if every > 0 {
			next.Reset(every)
		}
	}
}

// ui serves the web UI's files with the strict Content-Security-Policy
// the CloudFront distribution also sends.
func ui() http.Handler {
	files := http.FileServerFS(web.Files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", web.CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// The files change with the server: revalidate, never serve stale.
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
