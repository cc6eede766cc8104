// Package registry is the adapter to OCI registries: it resolves a
// reference and platform to one image manifest and config (through
// regclient), and streams layer blobs with our own resumable reader that
// verifies digest and size (over go-containerregistry's auth transport).
package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/scheme/reg"
	"github.com/regclient/regclient/types/errs"

	"github.com/tarport/tarport/shared/metrics"
	"github.com/tarport/tarport/shared/netguard"
	"github.com/tarport/tarport/shared/tarport"
)

// MetaCache keeps small content-addressed blobs (manifests, configs) so a
// repeated request costs one HEAD instead of a chain of GETs. Docker Hub
// counts manifest GETs against its pull limit, not HEADs. Blobs are kept
// per origin (the registry host they came from): a registry that names a
// digest it cannot serve never reads another registry's copy.
type MetaCache interface {
	GetMeta(ctx context.Context, o tarport.Origin, d digest.Digest) ([]byte, error)
	PutMeta(ctx context.Context, o tarport.Origin, d digest.Digest, b []byte) error
}

// Options configure a Client.
type Options struct {
	// DockerHubRegistry is where docker.io images are pulled from, e.g.
	// https://registry-1.docker.io or http://127.0.0.1:5000 in tests.
	DockerHubRegistry string
	// Insecure lists host:port entries reached over plain HTTP and allowed
	// on private addresses.
	Insecure []string
	// DockerHubUsername/Token is the service's own account, used for
	// anonymous requesters' docker.io pulls (a higher pull limit).
	DockerHubUsername string
	DockerHubToken    string
	// MaxImageBytes refuses images whose layers add up to more.
	MaxImageBytes int64
	// IdleTimeout ends a blob body that delivers nothing for this long; the
	// read then resumes with a Range request.
	IdleTimeout time.Duration
	// MinRate (bytes per second), when set, also cuts a blob body that
	// brings fewer than MinRate*IdleTimeout bytes in a window of
	// IdleTimeout; after slowCutsAllowed such bodies in a row, none
	// averaging MinRate, the read fails.
	MinRate int64
	// Metrics counts retried blob requests (nil: none).
	Metrics *metrics.Metrics
	Cache   MetaCache
	Logger  *slog.Logger
	// Resolver looks registry hosts up (nil: the system's); for tests.
	Resolver *net.Resolver
}

// DefaultDockerHubRegistry is where docker.io images come from unless
// TARPORT_DOCKERHUB_REGISTRY says otherwise.
const DefaultDockerHubRegistry = "https://registry-1.docker.io"

// hostPort is u's host with its port, the scheme's default if none.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "http" {
		return u.Host + ":80"
	}
	return u.Host + ":443"
}

// Client talks to registries. It is safe for concurrent use.
type Client struct {
	opts        Options
	dockerHost  config.Host
	http        *http.Client
	regHTTP     *http.Client  // http for regclient, whose DNS failures it does not retry
	blobBackoff time.Duration // half the first wait of a blob read after a failure

	mu         sync.Mutex
	sessions   map[string]*regclient.RegClient // anonymous and service-account logins
	transports map[string]http.RoundTripper    // the same, for blob reads
}

// New builds a Client.
func New(opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	trusted := append([]string(nil), opts.Insecure...)
	hub := config.HostNewName("docker.io")
	if opts.DockerHubRegistry != "" {
		if u, err := url.Parse(opts.DockerHubRegistry); err == nil && u.Host != "" {
			hub.Hostname = u.Host
			if u.Scheme == "http" {
				hub.TLS = config.TLSDisabled
			}
			// A mirror the operator configured may be on a private
			// address; the default Docker Hub stays under the guard.
			if opts.DockerHubRegistry != DefaultDockerHubRegistry {
				trusted = append(trusted, hostPort(u))
			}
		}
	}
	c := &Client{
		opts:        opts,
		dockerHost:  *hub,
		blobBackoff: 250 * time.Millisecond,
		http: &http.Client{
			Transport: netguard.Policy{Trusted: trusted, Resolver: opts.Resolver}.Transport(netguard.Watch{Idle: opts.IdleTimeout, MinRate: opts.MinRate}),
		},
		sessions:   map[string]*regclient.RegClient{},
		transports: map[string]http.RoundTripper{},
	}
	c.regHTTP = &http.Client{Transport: finalDNS{c.http.Transport}}
	return c
}

// finalDNS marks a failed name lookup not retryable for regclient, which
// otherwise retries every transport error with backoff: a host that does
// not resolve now will not in the next seconds, and a request must answer
// within API Gateway's 30 s.
type finalDNS struct{ base http.RoundTripper }

func (t finalDNS) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	var dnsErr *net.DNSError
	if err != nil && errors.As(err, &dnsErr) {
		return nil, fmt.Errorf("%w: %w", errs.ErrNotRetryable, err)
	}
	return resp, err
}

// session returns a regclient for registry host that logs in with
// exactly creds. Anonymous and service-account sessions are kept and
// reused (regclient keeps their tokens); a requester's own credentials are
// used for one call and dropped, never kept beyond their request.
func (c *Client) session(host string, creds tarport.Credentials) *regclient.RegClient {
	build := func() *regclient.RegClient {
		return regclient.New(
			regclient.WithConfigHost(c.hostConfigs(host, creds)...),
			// DNS failures are final (see finalDNS); manifests over
			// maxManifestBytes are refused before they are read whole.
			regclient.WithRegOpts(reg.WithHTTPClient(c.regHTTP), reg.WithManifestMax(maxManifestBytes, maxManifestBytes)),
			// Few, short retries: a Resolve runs inside an API request
			// (API Gateway answers within ~30 s); Resolve retries too.
			regclient.WithRetryLimit(3),
			regclient.WithRetryDelay(200*time.Millisecond, 2*time.Second),
			regclient.WithUserAgent("tarport"),
			regclient.WithSlog(c.opts.Logger),
		)
	}
	if !c.keepable(creds) {
		return build()
	}
	key := host + "\x00" + creds.Username
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.sessions[key]; ok {
		return s
	}
	rc := build()
	if len(c.sessions) >= maxCached {
		clear(c.sessions) // hosts come from users: keep the map bounded
	}
	c.sessions[key] = rc
	return rc
}

// maxCached bounds the kept sessions and transports.
const maxCached = 1024

// keepable reports whether a login may be cached: none, or the operator's.
func (c *Client) keepable(creds tarport.Credentials) bool {
	return creds.Anonymous() || (creds.Username == c.opts.DockerHubUsername && creds.Password == c.opts.DockerHubToken)
}

// pullCreds are the credentials for reading after the requester was
// authorized: theirs, or for an anonymous docker.io request the service's
// own Docker Hub account when one is configured.
func (c *Client) pullCreds(host string, creds tarport.Credentials) tarport.Credentials {
	if host == "docker.io" && creds.Anonymous() && c.opts.DockerHubUsername != "" {
		return tarport.Credentials{Username: c.opts.DockerHubUsername, Password: c.opts.DockerHubToken}
	}
	return creds
}

// hostConfigs configures the Docker Hub host (possibly a mirror), every
// insecure host, and host itself, logging in to host with creds only.
func (c *Client) hostConfigs(host string, creds tarport.Credentials) []config.Host {
	hub := c.dockerHost
	hub.ReqConcurrent = 8
	if host == "docker.io" {
		hub.User, hub.Pass = creds.Username, creds.Password
	}
	hosts := []config.Host{hub}
	for _, h := range c.opts.Insecure {
		if h == host || strings.EqualFold(h, "docker.io") {
			continue
		}
		ch := config.HostNewName(h)
		ch.TLS = config.TLSDisabled
		ch.ReqConcurrent = 8
		hosts = append(hosts, *ch)
	}
	if host != "docker.io" {
		ch := config.HostNewName(host)
		ch.ReqConcurrent = 8
		if c.insecure(host) {
			ch.TLS = config.TLSDisabled
		}
		ch.User, ch.Pass = creds.Username, creds.Password
		hosts = append(hosts, *ch)
	}
	return hosts
}

func (c *Client) insecure(host string) bool {
	for _, h := range c.opts.Insecure {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}
