// Package settings reads tarport's configuration from the environment,
// with the names and defaults of DESIGN.md, the same everywhere.
package settings

import (
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Settings is the whole configuration.
type Settings struct {
	Addr               string        // TARPORT_ADDR
	PublicURL          string        // TARPORT_PUBLIC_URL: the address clients use, "" if unset (see LocalURL)
	ReadTimeout        time.Duration // TARPORT_READ_TIMEOUT: a client's time to send a request's headers, and again its body
	DataDir            string        // TARPORT_DATA_DIR
	HubAPI             string        // TARPORT_HUB_API
	DockerHubRegistry  string        // TARPORT_DOCKERHUB_REGISTRY
	InsecureRegistries []string      // TARPORT_INSECURE_REGISTRIES
	Bucket             string        // TARPORT_BUCKET
	Table              string        // TARPORT_TABLE
	QueueURL           string        // TARPORT_QUEUE_URL
	PresignTTL         time.Duration // TARPORT_PRESIGN_TTL
	MaxImageBytes      int64         // TARPORT_MAX_IMAGE_BYTES
	RateLimitPerMinute int           // TARPORT_RATE_LIMIT_PER_MINUTE
	DockerHubUsername  string        // TARPORT_DOCKERHUB_USERNAME
	DockerHubToken     string        // TARPORT_DOCKERHUB_TOKEN
	Workers            int           // TARPORT_WORKERS: layers fetched at once (local)
	BlobIdleTimeout    time.Duration // TARPORT_BLOB_IDLE_TIMEOUT: a silent blob body is cut and resumed
	BlobMinRate        int64         // TARPORT_BLOB_MIN_RATE: bytes/s a blob body must bring per idle window, 0 = no floor
	WarmEvery          time.Duration // TARPORT_WARM_EVERY: local cache warming period, 0 = off
	AccessToken        string        // TARPORT_ACCESS_TOKEN: what every API request must carry in X-Tarport-Token, "" = open
	ClientQuotaPerDay  int64         // TARPORT_CLIENT_QUOTA_PER_DAY: tar bytes per client per rolling day, 0 = no quota
	BudgetPerDay       int64         // TARPORT_BUDGET_PER_DAY: tar bytes for all clients per rolling day, 0 = no budget
	OriginSecret       string        // TARPORT_ORIGIN_SECRET: the header value CloudFront adds; set, the viewer address is the client
	LogLevel           slog.Level    // TARPORT_LOG_LEVEL: debug, info, warn, error

	// On AWS (set by template.yaml):
	DLQARN             string        // TARPORT_DLQ_ARN: the task queue's dead-letter queue
	TaskKeySecretARN   string        // TARPORT_TASK_KEY_SECRET_ARN: seals private jobs' credentials in queue messages
	TaskKey            string        // TARPORT_TASK_KEY: that key given directly (tests, setups without Secrets Manager)
	DockerHubSecretARN string        // TARPORT_DOCKERHUB_SECRET_ARN: {"username","token"} of the service's Docker Hub account
	AccessTokenARN     string        // TARPORT_ACCESS_TOKEN_SECRET_ARN: the access token, kept in Secrets Manager
	OriginSecretARN    string        // TARPORT_ORIGIN_SECRET_ARN: the origin secret, kept in Secrets Manager
	LinkSignerRoleARN  string        // TARPORT_LINK_SIGNER_ROLE_ARN: a role assumed to sign links with credentials whose expiry is known
	HotImages          []HotImage    // TARPORT_HOT_IMAGES: "image platform" entries, comma-separated, pre-fetched by the warm
	SplitAbove         int64         // TARPORT_SPLIT_ABOVE: layers bigger than this are fetched by range tasks
	RangeSize          int64         // TARPORT_RANGE_SIZE: the bytes of one range task (a buffered S3 part)
	SplitPoll          time.Duration // TARPORT_SPLIT_POLL: how often a job waiting for another job's split layer looks again
}

// HotImage is an image whose layers the warm keeps in the layer cache.
type HotImage struct {
	Image    string
	Platform string
}

// FromEnv reads the settings from the process environment.
func FromEnv() (Settings, error) { return Parse(os.Getenv) }

// Parse reads the settings through getenv, so tests need no environment.
func Parse(getenv func(string) string) (Settings, error) {
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	s := Settings{
		Addr:               get("TARPORT_ADDR", "127.0.0.1:8080"),
		DataDir:            get("TARPORT_DATA_DIR", "./.data"),
		HubAPI:             strings.TrimRight(get("TARPORT_HUB_API", "https://hub.docker.com"), "/"),
		DockerHubRegistry:  strings.TrimRight(get("TARPORT_DOCKERHUB_REGISTRY", "https://registry-1.docker.io"), "/"),
		Bucket:             get("TARPORT_BUCKET", ""),
		Table:              get("TARPORT_TABLE", ""),
		QueueURL:           get("TARPORT_QUEUE_URL", ""),
		DockerHubUsername:  get("TARPORT_DOCKERHUB_USERNAME", ""),
		DockerHubToken:     get("TARPORT_DOCKERHUB_TOKEN", ""),
		DLQARN:             get("TARPORT_DLQ_ARN", ""),
		TaskKeySecretARN:   get("TARPORT_TASK_KEY_SECRET_ARN", ""),
		TaskKey:            get("TARPORT_TASK_KEY", ""),
		DockerHubSecretARN: get("TARPORT_DOCKERHUB_SECRET_ARN", ""),
		AccessToken:        get("TARPORT_ACCESS_TOKEN", ""),
		AccessTokenARN:     get("TARPORT_ACCESS_TOKEN_SECRET_ARN", ""),
		OriginSecret:       get("TARPORT_ORIGIN_SECRET", ""),
		OriginSecretARN:    get("TARPORT_ORIGIN_SECRET_ARN", ""),
		LinkSignerRoleARN:  get("TARPORT_LINK_SIGNER_ROLE_ARN", ""),
	}
	if err := s.parseLists(getenv); err != nil {
		return Settings{}, err
	}
	if u, err := url.Parse(s.DockerHubRegistry); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return Settings{}, fmt.Errorf("TARPORT_DOCKERHUB_REGISTRY: want a URL like https://mirror.example.com (no credentials), got %q", s.DockerHubRegistry)
	}
	if err := s.parseTunables(get, getenv); err != nil {
		return Settings{}, err
	}
	return s, nil
}

// parseLists reads the comma-separated settings.
func (s *Settings) parseLists(getenv func(string) string) error {
	for _, entry := range strings.Split(getenv("TARPORT_HOT_IMAGES"), ",") {
		fields := strings.Fields(entry)
		switch len(fields) {
		case 0:
		case 1:
			s.HotImages = append(s.HotImages, HotImage{Image: fields[0], Platform: "linux/amd64"})
		case 2:
			s.HotImages = append(s.HotImages, HotImage{Image: fields[0], Platform: fields[1]})
		default:
			return fmt.Errorf("TARPORT_HOT_IMAGES: want comma-separated \"image [platform]\" entries like \"nginx:1.27 linux/arm64\", got %q", entry)
		}
	}
	for _, h := range strings.Split(getenv("TARPORT_INSECURE_REGISTRIES"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			if strings.Contains(h, "/") {
				return fmt.Errorf("TARPORT_INSECURE_REGISTRIES: want host:port entries without a scheme or path, got %q", h)
			}
			s.InsecureRegistries = append(s.InsecureRegistries, strings.ToLower(h))
		}
	}
	return nil
}

// parseTunables reads the log level, public URL, durations, sizes and
// counts, each checked against the range the code can use.
func (s *Settings) parseTunables(get func(name, def string) string, getenv func(string) string) error {
	var err error
	if err = s.LogLevel.UnmarshalText([]byte(get("TARPORT_LOG_LEVEL", "info"))); err != nil {
		return fmt.Errorf("TARPORT_LOG_LEVEL: want debug, info, warn or error, got %q", getenv("TARPORT_LOG_LEVEL"))
	}
	if s.PublicURL, err = publicURL(get("TARPORT_PUBLIC_URL", ""), s.Addr); err != nil {
		return err
	}
	if s.ReadTimeout, err = time.ParseDuration(get("TARPORT_READ_TIMEOUT", "20s")); err != nil || s.ReadTimeout <= 0 {
		return fmt.Errorf("TARPORT_READ_TIMEOUT: want a positive duration like 20s, got %q", getenv("TARPORT_READ_TIMEOUT"))
	}
	// S3 presigned links live at most 7 days.
	if s.PresignTTL, err = time.ParseDuration(get("TARPORT_PRESIGN_TTL", "1h")); err != nil || s.PresignTTL <= 0 || s.PresignTTL > 7*24*time.Hour {
		return fmt.Errorf("TARPORT_PRESIGN_TTL: want a duration from 1s to 168h, like 1h, got %q", getenv("TARPORT_PRESIGN_TTL"))
	}
	if s.MaxImageBytes, err = ParseBytes(get("TARPORT_MAX_IMAGE_BYTES", "64GiB")); err != nil {
		return fmt.Errorf("TARPORT_MAX_IMAGE_BYTES: %w", err)
	}
	if s.RateLimitPerMinute, err = strconv.Atoi(get("TARPORT_RATE_LIMIT_PER_MINUTE", "100")); err != nil || s.RateLimitPerMinute <= 0 {
		return fmt.Errorf("TARPORT_RATE_LIMIT_PER_MINUTE: want a positive integer, got %q", getenv("TARPORT_RATE_LIMIT_PER_MINUTE"))
	}
	if s.BlobIdleTimeout, err = time.ParseDuration(get("TARPORT_BLOB_IDLE_TIMEOUT", "60s")); err != nil || s.BlobIdleTimeout <= 0 {
		return fmt.Errorf("TARPORT_BLOB_IDLE_TIMEOUT: want a positive duration like 60s, got %q", getenv("TARPORT_BLOB_IDLE_TIMEOUT"))
	}
	if s.BlobMinRate, err = bytesOrOff(get("TARPORT_BLOB_MIN_RATE", "16KiB")); err != nil {
		return fmt.Errorf("TARPORT_BLOB_MIN_RATE: bytes per second, like 16KiB, or 0 for no floor: %w", err)
	}
	if s.ClientQuotaPerDay, err = bytesOrOff(get("TARPORT_CLIENT_QUOTA_PER_DAY", "100GiB")); err != nil {
		return fmt.Errorf("TARPORT_CLIENT_QUOTA_PER_DAY: bytes per day, like 100GiB, or 0 for no quota: %w", err)
	}
	if s.BudgetPerDay, err = bytesOrOff(get("TARPORT_BUDGET_PER_DAY", "2TiB")); err != nil {
		return fmt.Errorf("TARPORT_BUDGET_PER_DAY: bytes per day, like 2TiB, or 0 for no budget: %w", err)
	}
	if s.WarmEvery, err = time.ParseDuration(get("TARPORT_WARM_EVERY", "1h")); err != nil || s.WarmEvery < 0 {
		return fmt.Errorf("TARPORT_WARM_EVERY: want a duration like 1h, or 0 to turn warming off, got %q", getenv("TARPORT_WARM_EVERY"))
	}
	if s.SplitAbove, err = ParseBytes(get("TARPORT_SPLIT_ABOVE", "1GiB")); err != nil {
		return fmt.Errorf("TARPORT_SPLIT_ABOVE: %w", err)
	}
	// S3 parts are 5 MiB to 5 GiB; a range is held in memory while it uploads.
	if s.RangeSize, err = ParseBytes(get("TARPORT_RANGE_SIZE", "64MiB")); err != nil || s.RangeSize < 5<<20 || s.RangeSize > 1<<30 {
		return fmt.Errorf("TARPORT_RANGE_SIZE: want a size from 5MiB to 1GiB, got %q", getenv("TARPORT_RANGE_SIZE"))
	}
	// A queue delay: SQS holds a message at most 15 minutes.
	if s.SplitPoll, err = time.ParseDuration(get("TARPORT_SPLIT_POLL", "15s")); err != nil || s.SplitPoll < time.Second || s.SplitPoll > 15*time.Minute {
		return fmt.Errorf("TARPORT_SPLIT_POLL: want a duration from 1s to 15m, got %q", getenv("TARPORT_SPLIT_POLL"))
	}
	if s.Workers, err = strconv.Atoi(get("TARPORT_WORKERS", "4")); err != nil || s.Workers <= 0 || s.Workers > 64 {
		return fmt.Errorf("TARPORT_WORKERS: want 1..64, got %q", getenv("TARPORT_WORKERS"))
	}
	return nil
}

// LocalURL is the address clients reach the local server by, on which
// its links and Location headers are built: TARPORT_PUBLIC_URL, else the
// listen address (127.0.0.1 for an unspecified host: 0.0.0.0, ::, none;
// a LAN address must be configured).
func (s Settings) LocalURL() string {
	if s.PublicURL != "" {
		return s.PublicURL
	}
	host, port, _ := net.SplitHostPort(s.Addr) // checked by Parse
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// publicURL checks TARPORT_PUBLIC_URL (and the listen address, which
// makes the default).
func publicURL(v, addr string) (string, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("TARPORT_ADDR: want host:port like 127.0.0.1:8080, got %q", addr)
	}
	if v == "" {
		return "", nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("TARPORT_PUBLIC_URL: want the address clients use, like https://tarport.example.com or http://192.168.1.5:8080 (no path), got %q", v)
	}
	return u.Scheme + "://" + u.Host, nil
}

// bytesOrOff is ParseBytes, or 0 for a zero size ("0", "0GiB": a limit
// turned off; the template writes its GiB parameters as "<n>GiB").
func bytesOrOff(v string) (int64, error) {
	if strings.TrimRight(strings.TrimRight(v, "BKMGTi"), "0") == "" && strings.HasPrefix(v, "0") {
		return 0, nil
	}
	return ParseBytes(v)
}

// ParseBytes reads sizes like 64GiB, 500MB, 1048576.
func ParseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{
		{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1},
	}
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), 10, 64)
			if err != nil || n <= 0 || n > math.MaxInt64/u.mult {
				return 0, fmt.Errorf("want a size like 64GiB, got %q", s)
			}
			return n * u.mult, nil
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a size like 64GiB, got %q", s)
	}
	return n, nil
}
