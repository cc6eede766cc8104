// Package discovery owns the browsing side of tarport: Docker Hub search,
// the popular list and an image's details, each cached with a TTL, served
// stale when Docker Hub fails, and warmed on a schedule. Docker Hub and the
// cache are ports (Hub, Cache) that adapters implement.
package discovery

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarport"
)

// Hub is Docker Hub's web API. Implementations return coded errors
// (tarport.CodeNotFound, CodeRateLimited with RetryAfter, CodeUpstream,
// CodeUpstreamTimeout).
type Hub interface {
	Search(ctx context.Context, query string, page, limit int) (tarport.SearchPage, error)
	// Repository returns the repository's facts without tags.
	Repository(ctx context.Context, namespace, name string) (tarport.RepoDetails, error)
	Tags(ctx context.Context, namespace, name string, limit int) ([]tarport.TagInfo, error)
	// Popular lists official images then the notable repositories, best first.
	Popular(ctx context.Context, limit int, notable []string) ([]tarport.RepoSummary, error)
}

// Entry is one cached value. The service sets every time, so the store
// needs no clock of its own and tests need one fake clock only.
type Entry struct {
	// Value is JSON, gzip-compressed when it was large (it then starts
	// with the gzip magic bytes). The service keeps it under MaxValueSize.
	Value     []byte
	StoredAt  time.Time
	ExpiresAt time.Time // fresh until then, then only served when upstream fails
	DeleteAt  time.Time // the store may drop the entry from then on (DynamoDB TTL)
}

// Cache stores entries by key. Get reports found=false for a missing
// entry; it may return an entry past its ExpiresAt (and past DeleteAt, as
// DynamoDB TTL deletes late): the service checks the times itself.
type Cache interface {
	Get(ctx context.Context, key string) (e Entry, found bool, err error)
	Set(ctx context.Context, key string, e Entry) error
}

// Result is a value and where it came from, for the HTTP layer's headers.
type Result[T any] struct {
	Value T
	// Cached: served from the cache rather than by an upstream call.
	Cached bool
	// Stale: served from an expired entry because upstream failed.
	Stale bool
	// StoredAt is when the value was fetched from upstream (for Age).
	StoredAt time.Time
}

// Size limits of cached values: a DynamoDB item holds at most 400 KB
// with its key and attributes.
const (
	CompressAbove = 64 << 10  // JSON larger than this is gzipped
	MaxValueSize  = 350 << 10 // values larger than this, even gzipped, are not cached
)

// Config tunes the service. Zero fields take the values of DefaultConfig.
type Config struct {
	SearchTTL  time.Duration
	DetailsTTL time.Duration
	PopularTTL time.Duration
	// Retention is how long an entry is kept after it expires, to be
	// served stale while upstream fails.
	Retention time.Duration
	// UpstreamTimeout bounds one upstream fetch. Fetches run detached from
	// the caller that started them, since other callers share their result.
	UpstreamTimeout time.Duration

	// PopularNotable are non-official repositories listed with the
	// official images in the popular list.
	PopularNotable []string
	// PopularSize is how many popular repositories are fetched and cached
	// (once, whatever limit a caller asks for).
	PopularSize int
	// DetailsTags is how many tags the details show, newest first.
	DetailsTags int

	// WarmTop is how many of the popular repositories Warm refreshes the
	// details of; WarmBudget and WarmMaxCalls bound one Warm run in time
	// and in upstream calls (popular counts 1, each details 2).
	WarmTop      int
	WarmBudget   time.Duration
	WarmMaxCalls int

	// Registry answers details of images outside Docker Hub; nil leaves
	// them unsupported. RegistryPlatformTags is how many of their tags get
	// platforms (each costs manifest reads).
	Registry             Registry
	RegistryPlatformTags int

	Now    func() time.Time
	Logger *slog.Logger
}

// DefaultNotable are popular non-official repositories on Docker Hub.
var DefaultNotable = []string{
	"bitnami/redis", "bitnami/postgresql", "bitnami/mysql", "bitnami/mongodb",
	"bitnami/nginx", "bitnami/kafka", "grafana/grafana", "grafana/loki",
	"prom/prometheus", "prom/node-exporter", "prom/alertmanager",
	"hashicorp/terraform", "hashicorp/vault", "hashicorp/consul",
	"jenkins/jenkins", "gitlab/gitlab-ce", "portainer/portainer-ce",
	"minio/minio", "elastic/elasticsearch", "confluentinc/cp-kafka",
	"localstack/localstack", "curlimages/curl", "amazon/aws-cli",
	"linuxserver/nextcloud",
}

// DefaultConfig is the seed's behaviour (DESIGN.md, "Caches").
func DefaultConfig() Config {
	return Config{
		SearchTTL:       5 * time.Minute,
		DetailsTTL:      30 * time.Minute,
		PopularTTL:      time.Hour,
		Retention:       7 * 24 * time.Hour,
		UpstreamTimeout: 20 * time.Second,
		PopularNotable:  DefaultNotable,
		PopularSize:     100,
		DetailsTags:     100,
		WarmTop:         20,
		WarmBudget:      2 * time.Minute,
		WarmMaxCalls:    41,
		// Each costs a HEAD and a GET per platform (up to 80 reads).
		RegistryPlatformTags: 10,
		Now:                  time.Now,
		Logger:               slog.Default(),
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	setInt := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&c.SearchTTL, d.SearchTTL)
	set(&c.DetailsTTL, d.DetailsTTL)
	set(&c.PopularTTL, d.PopularTTL)
	set(&c.Retention, d.Retention)
	set(&c.UpstreamTimeout, d.UpstreamTimeout)
	set(&c.WarmBudget, d.WarmBudget)
	setInt(&c.PopularSize, d.PopularSize)
	setInt(&c.DetailsTags, d.DetailsTags)
	setInt(&c.WarmTop, d.WarmTop)
	setInt(&c.WarmMaxCalls, d.WarmMaxCalls)
	setInt(&c.RegistryPlatformTags, d.RegistryPlatformTags)
	if c.PopularNotable == nil {
		c.PopularNotable = d.PopularNotable
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Registry lists a repository's tags and platforms from the registry.
type Registry interface {
	Details(ctx context.Context, r ref.Ref, withPlatforms int) (tarport.RepoDetails, error)
}

// Service answers search, popular and details from the cache or Docker Hub.
type Service struct {
	hub     Hub
	cache   Cache
	cfg     Config
	flights singleflight.Group
}

// New builds a service; zero fields of cfg take their defaults.
func New(hub Hub, cache Cache, cfg Config) *Service {
	return &Service{hub: hub, cache: cache, cfg: cfg.withDefaults()}
}
