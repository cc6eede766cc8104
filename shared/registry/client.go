// Package registry is the adapter to OCI registries (through regclient):
// it resolves a reference and platform to one image manifest and config,
// and opens layer blobs as streams that verify their digest and size.
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/scheme/reg"

	"github.com/tarport/tarport/shared/netguard"
	"github.com/tarport/tarport/shared/tarport"
)

// MetaCache keeps small content-addressed blobs (manifests, configs) so a
// repeated request costs one HEAD instead of a chain of GETs. Docker Hub
// counts manifest GETs against its pull limit, not HEADs.
type MetaCache interface {
	GetMeta(ctx context.Context, d digest.Digest) ([]byte, error)
	PutMeta(ctx context.Context, d digest.Digest, b []byte) error
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
	Cache       MetaCache
	Logger      *slog.Logger
}

// Client talks to registries. It is safe for concurrent use.
type Client struct {
	opts       Options
	dockerHost config.Host
	http       *http.Client

	mu         sync.Mutex
	sessions   map[string]*session
	transports map[string]*cachedTransport
}

// session is a regclient bound to one set of credentials; it keeps the
// bearer tokens that regclient refreshes on its own when they expire.
type session struct {
	rc       *regclient.RegClient
	lastUsed time.Time
}

const sessionIdle = 15 * time.Minute

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
			// The operator chose this host; it may be a private mirror.
			trusted = append(trusted, u.Host)
		}
	}
	return &Client{
		opts:       opts,
		dockerHost: *hub,
		http: &http.Client{
			Transport: netguard.Policy{Trusted: trusted}.Transport(opts.IdleTimeout),
		},
		sessions:   map[string]*session{},
		transports: map[string]*cachedTransport{},
	}
}

// session returns the regclient for registry host and creds, reusing one
// made for the same (host, creds) so tokens are not fetched per request.
// The key is a hash: credentials never sit in a map key or a log line.
func (c *Client) session(host string, creds tarport.Credentials) *regclient.RegClient {
	h := sha256.Sum256([]byte(host + "\x00" + creds.Username + "\x00" + creds.Password))
	key := hex.EncodeToString(h[:])
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for k, s := range c.sessions {
		if now.Sub(s.lastUsed) > sessionIdle {
			delete(c.sessions, k)
		}
	}
	for k, t := range c.transports {
		if now.Sub(t.lastUsed) > sessionIdle {
			delete(c.transports, k)
		}
	}
	if s, ok := c.sessions[key]; ok {
		s.lastUsed = now
		return s.rc
	}
	rc := regclient.New(
		regclient.WithConfigHost(c.hostConfigs(host, creds)...),
		regclient.WithRegOpts(reg.WithHTTPClient(c.http)),
		regclient.WithRetryLimit(8),
		regclient.WithRetryDelay(200*time.Millisecond, 30*time.Second),
		regclient.WithUserAgent("tarport"),
		regclient.WithSlog(c.opts.Logger),
	)
	c.sessions[key] = &session{rc: rc, lastUsed: now}
	return rc
}

func (c *Client) hostConfigs(host string, creds tarport.Credentials) []config.Host {
	hub := c.dockerHost
	hub.ReqConcurrent = 8
	if host == "docker.io" && !creds.Anonymous() {
		hub.User, hub.Pass = creds.Username, creds.Password
	} else if c.opts.DockerHubUsername != "" {
		hub.User, hub.Pass = c.opts.DockerHubUsername, c.opts.DockerHubToken
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
