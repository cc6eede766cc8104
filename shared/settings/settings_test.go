package settings

import (
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// env is a fake environment for Parse.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	// The defaults of DESIGN.md's configuration table, and the
	// undocumented knobs at their built-in values.
	want := Settings{
		Addr:               "127.0.0.1:8080",
		ReadTimeout:        20 * time.Second,
		DataDir:            "./.data",
		HubAPI:             "https://hub.docker.com",
		DockerHubRegistry:  "https://registry-1.docker.io",
		PresignTTL:         time.Hour,
		MaxImageBytes:      64 << 30,
		RateLimitPerMinute: 100,
		Workers:            4,
		BlobIdleTimeout:    time.Minute,
		BlobMinRate:        16 << 10,
		WarmEvery:          time.Hour,
		ClientQuotaPerDay:  100 << 30,
		BudgetPerDay:       2 << 40,
		LogLevel:           slog.LevelInfo,
		SplitAbove:         1 << 30,
		RangeSize:          64 << 20,
		SplitPoll:          15 * time.Second,
	}
	for _, tt := range []struct {
		name   string
		getenv func(string) string
	}{
		{"empty environment", env()},
		{"blank values", env(
			"TARPORT_ADDR", " ",
			"TARPORT_DATA_DIR", "\t",
			"TARPORT_HUB_API", "  ",
			"TARPORT_DOCKERHUB_REGISTRY", " ",
			"TARPORT_INSECURE_REGISTRIES", " , ,",
			"TARPORT_PRESIGN_TTL", " ",
			"TARPORT_MAX_IMAGE_BYTES", " ",
			"TARPORT_RATE_LIMIT_PER_MINUTE", " ",
			"TARPORT_CLIENT_QUOTA_PER_DAY", " ",
			"TARPORT_BUDGET_PER_DAY", " ",
			"TARPORT_ACCESS_TOKEN", " ",
		)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.getenv)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("defaults:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestOverrides(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   []string
		check func(s Settings) bool
	}{
		{"addr", []string{"TARPORT_ADDR", "0.0.0.0:9000"}, func(s Settings) bool {
			return s.Addr == "0.0.0.0:9000" && s.PublicURL == "" && s.LocalURL() == "http://127.0.0.1:9000"
		}},
		{"addr trimmed", []string{"TARPORT_ADDR", " :9000\n"}, func(s Settings) bool { return s.Addr == ":9000" && s.LocalURL() == "http://127.0.0.1:9000" }},
		{"addr ipv6", []string{"TARPORT_ADDR", "[::1]:9000"}, func(s Settings) bool { return s.LocalURL() == "http://[::1]:9000" }},
		{"default local url", nil, func(s Settings) bool { return s.LocalURL() == "http://127.0.0.1:8080" }},
		{"public url", []string{"TARPORT_ADDR", "0.0.0.0:8080", "TARPORT_PUBLIC_URL", "https://Tarport.Example.com/"}, func(s Settings) bool {
			return s.PublicURL == "https://Tarport.Example.com" && s.LocalURL() == s.PublicURL
		}},
		{"public url with port", []string{"TARPORT_PUBLIC_URL", "http://192.168.1.5:8080"}, func(s Settings) bool { return s.PublicURL == "http://192.168.1.5:8080" }},
		{"read timeout", []string{"TARPORT_READ_TIMEOUT", "2s"}, func(s Settings) bool { return s.ReadTimeout == 2*time.Second }},
		{"data dir", []string{"TARPORT_DATA_DIR", "/var/lib/tarport"}, func(s Settings) bool { return s.DataDir == "/var/lib/tarport" }},
		{"hub api", []string{"TARPORT_HUB_API", "http://127.0.0.1:5001"}, func(s Settings) bool { return s.HubAPI == "http://127.0.0.1:5001" }},
		{"hub api trailing slash", []string{"TARPORT_HUB_API", "http://hub.test/"}, func(s Settings) bool { return s.HubAPI == "http://hub.test" }},
		{"registry", []string{"TARPORT_DOCKERHUB_REGISTRY", "http://127.0.0.1:5000"}, func(s Settings) bool { return s.DockerHubRegistry == "http://127.0.0.1:5000" }},
		{"registry trailing slash", []string{"TARPORT_DOCKERHUB_REGISTRY", "https://mirror.test//"}, func(s Settings) bool { return s.DockerHubRegistry == "https://mirror.test" }},
		{"aws resources", []string{"TARPORT_BUCKET", "b", "TARPORT_TABLE", "t", "TARPORT_QUEUE_URL", "https://sqs/q"}, func(s Settings) bool {
			return s.Bucket == "b" && s.Table == "t" && s.QueueURL == "https://sqs/q"
		}},
		{"presign ttl", []string{"TARPORT_PRESIGN_TTL", "15m"}, func(s Settings) bool { return s.PresignTTL == 15*time.Minute }},
		{"presign ttl compound", []string{"TARPORT_PRESIGN_TTL", "1h30m"}, func(s Settings) bool { return s.PresignTTL == 90*time.Minute }},
		{"max image bytes", []string{"TARPORT_MAX_IMAGE_BYTES", "500MB"}, func(s Settings) bool { return s.MaxImageBytes == 500_000_000 }},
		{"max image bytes plain", []string{"TARPORT_MAX_IMAGE_BYTES", "1048576"}, func(s Settings) bool { return s.MaxImageBytes == 1<<20 }},
		{"rate limit", []string{"TARPORT_RATE_LIMIT_PER_MINUTE", "7"}, func(s Settings) bool { return s.RateLimitPerMinute == 7 }},
		{"docker hub account", []string{"TARPORT_DOCKERHUB_USERNAME", "svc", "TARPORT_DOCKERHUB_TOKEN", "dckr_pat_x"}, func(s Settings) bool {
			return s.DockerHubUsername == "svc" && s.DockerHubToken == "dckr_pat_x"
		}},
		{"workers", []string{"TARPORT_WORKERS", "64"}, func(s Settings) bool { return s.Workers == 64 }},
		{"blob min rate", []string{"TARPORT_BLOB_MIN_RATE", "1MiB"}, func(s Settings) bool { return s.BlobMinRate == 1<<20 }},
		{"no blob min rate", []string{"TARPORT_BLOB_MIN_RATE", "0"}, func(s Settings) bool { return s.BlobMinRate == 0 }},
		{"log level", []string{"TARPORT_LOG_LEVEL", "debug"}, func(s Settings) bool { return s.LogLevel == slog.LevelDebug }},
		{"aws secrets and dlq", []string{"TARPORT_DLQ_ARN", "arn:aws:sqs:us-east-1:1:dlq", "TARPORT_TASK_KEY_SECRET_ARN", "arn:sm:k", "TARPORT_DOCKERHUB_SECRET_ARN", "arn:sm:h", "TARPORT_TASK_KEY", "k"}, func(s Settings) bool {
			return s.DLQARN == "arn:aws:sqs:us-east-1:1:dlq" && s.TaskKeySecretARN == "arn:sm:k" && s.DockerHubSecretARN == "arn:sm:h" && s.TaskKey == "k"
		}},
		{"quotas", []string{"TARPORT_CLIENT_QUOTA_PER_DAY", "5GB", "TARPORT_BUDGET_PER_DAY", "1TiB"}, func(s Settings) bool {
			return s.ClientQuotaPerDay == 5e9 && s.BudgetPerDay == 1<<40
		}},
		{"no quotas", []string{"TARPORT_CLIENT_QUOTA_PER_DAY", "0", "TARPORT_BUDGET_PER_DAY", "0"}, func(s Settings) bool {
			return s.ClientQuotaPerDay == 0 && s.BudgetPerDay == 0
		}},
		{"no quotas in GiB", []string{"TARPORT_CLIENT_QUOTA_PER_DAY", "0GiB", "TARPORT_BUDGET_PER_DAY", "00GiB"}, func(s Settings) bool {
			return s.ClientQuotaPerDay == 0 && s.BudgetPerDay == 0
		}},
		{"guards", []string{"TARPORT_ACCESS_TOKEN", " tok-en ", "TARPORT_ORIGIN_SECRET", "cf", "TARPORT_ACCESS_TOKEN_SECRET_ARN", "arn:sm:t", "TARPORT_ORIGIN_SECRET_ARN", "arn:sm:o"}, func(s Settings) bool {
			return s.AccessToken == "tok-en" && s.OriginSecret == "cf" && s.AccessTokenARN == "arn:sm:t" && s.OriginSecretARN == "arn:sm:o"
		}},
		{"split", []string{"TARPORT_SPLIT_ABOVE", "8MiB", "TARPORT_RANGE_SIZE", "5MiB", "TARPORT_SPLIT_POLL", "2s"}, func(s Settings) bool {
			return s.SplitAbove == 8<<20 && s.RangeSize == 5<<20 && s.SplitPoll == 2*time.Second
		}},
		{"hot images", []string{"TARPORT_HOT_IMAGES", " nginx:1.27 linux/arm64 ,redis,, ghcr.io/o/r@sha256:abc\tlinux/arm/v7"}, func(s Settings) bool {
			want := []HotImage{{"nginx:1.27", "linux/arm64"}, {"redis", "linux/amd64"}, {"ghcr.io/o/r@sha256:abc", "linux/arm/v7"}}
			return slices.Equal(s.HotImages, want)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(env(tt.env...))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.env, err)
			}
			if !tt.check(got) {
				t.Fatalf("Parse(%q) = %+v", tt.env, got)
			}
		})
	}
}

func TestInsecureRegistries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{",", nil},
		{"localhost:5000", []string{"localhost:5000"}},
		{" Registry.Internal:5000 , 10.0.0.5:443,,LOCALHOST ", []string{"registry.internal:5000", "10.0.0.5:443", "localhost"}},
		{"a:1,\tb:2\n", []string{"a:1", "b:2"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(env("TARPORT_INSECURE_REGISTRIES", tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got.InsecureRegistries, tt.want) {
				t.Fatalf("InsecureRegistries(%q) = %q, want %q", tt.in, got.InsecureRegistries, tt.want)
			}
		})
	}
}

func TestInvalidValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value string
	}{
		{"TARPORT_PRESIGN_TTL", "soon"},
		{"TARPORT_PRESIGN_TTL", "60"}, // a bare number is not a duration
		{"TARPORT_PRESIGN_TTL", "0s"},
		{"TARPORT_PRESIGN_TTL", "-1h"},
		{"TARPORT_MAX_IMAGE_BYTES", "lots"},
		{"TARPORT_MAX_IMAGE_BYTES", "0"},
		{"TARPORT_MAX_IMAGE_BYTES", "-1GiB"},
		{"TARPORT_MAX_IMAGE_BYTES", "1.5GiB"},
		{"TARPORT_MAX_IMAGE_BYTES", "64XB"},
		{"TARPORT_HOT_IMAGES", "nginx linux/amd64 extra"},
		{"TARPORT_SPLIT_ABOVE", "big"},
		{"TARPORT_RANGE_SIZE", "1MiB"},
		{"TARPORT_RANGE_SIZE", "2GiB"},
		{"TARPORT_SPLIT_POLL", "500ms"},
		{"TARPORT_SPLIT_POLL", "16m"},
		{"TARPORT_SPLIT_POLL", "often"},
		{"TARPORT_RATE_LIMIT_PER_MINUTE", "many"},
		{"TARPORT_RATE_LIMIT_PER_MINUTE", "0"},
		{"TARPORT_RATE_LIMIT_PER_MINUTE", "-5"},
		{"TARPORT_RATE_LIMIT_PER_MINUTE", "1.5"},
		{"TARPORT_WORKERS", "0"},
		{"TARPORT_WORKERS", "65"},
		{"TARPORT_WORKERS", "four"},
		{"TARPORT_PRESIGN_TTL", "169h"}, // over S3's 7 days
		{"TARPORT_BLOB_IDLE_TIMEOUT", "0s"},
		{"TARPORT_BLOB_MIN_RATE", "slow"},
		{"TARPORT_PUBLIC_URL", "tarport.example.com"},
		{"TARPORT_PUBLIC_URL", "ftp://tarport.example.com"},
		{"TARPORT_PUBLIC_URL", "https://tarport.example.com/prefix"},
		{"TARPORT_PUBLIC_URL", "https://user:pw@tarport.example.com"},
		{"TARPORT_PUBLIC_URL", "https://tarport.example.com/?x=1"},
		{"TARPORT_READ_TIMEOUT", "0s"},
		{"TARPORT_READ_TIMEOUT", "soon"},
		{"TARPORT_ADDR", "8080"},
		{"TARPORT_BLOB_MIN_RATE", "-1KiB"},
		{"TARPORT_DOCKERHUB_REGISTRY", "mirror.example.com"},
		{"TARPORT_DOCKERHUB_REGISTRY", "ftp://mirror.example.com"},
		{"TARPORT_DOCKERHUB_REGISTRY", "https://user:pw@mirror.example.com"},
		{"TARPORT_INSECURE_REGISTRIES", "http://127.0.0.1:5000"},
		{"TARPORT_LOG_LEVEL", "loud"},
		{"TARPORT_CLIENT_QUOTA_PER_DAY", "-1GiB"},
		{"TARPORT_CLIENT_QUOTA_PER_DAY", "lots"},
		{"TARPORT_BUDGET_PER_DAY", "2PB"},
		{"TARPORT_BUDGET_PER_DAY", "0PB"},
		{"TARPORT_CLIENT_QUOTA_PER_DAY", "0.5GiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(env(tt.name, tt.value))
			if err == nil {
				t.Fatalf("Parse(%s=%q) = %+v, want an error", tt.name, tt.value, got)
			}
			if !strings.Contains(err.Error(), tt.name) {
				t.Errorf("error %q does not name %s", err, tt.name)
			}
			if !strings.Contains(err.Error(), tt.value) {
				t.Errorf("error %q does not quote the bad value %q", err, tt.value)
			}
			if !reflect.DeepEqual(got, Settings{}) {
				t.Errorf("Parse returned settings %+v along with its error", got)
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	// t.Setenv forbids t.Parallel: this one test reads the real environment.
	t.Setenv("TARPORT_ADDR", "127.0.0.1:9999")
	t.Setenv("TARPORT_INSECURE_REGISTRIES", "Reg:5000")
	s, err := FromEnv()
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	if s.Addr != "127.0.0.1:9999" || !reflect.DeepEqual(s.InsecureRegistries, []string{"reg:5000"}) {
		t.Fatalf("FromEnv = %+v", s)
	}
}

func TestParseBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{in: "64GiB", want: 64 << 30},
		{in: "1TiB", want: 1 << 40},
		{in: "3MiB", want: 3 << 20},
		{in: "4KiB", want: 4096},
		{in: "2TB", want: 2e12},
		{in: "500MB", want: 500_000_000},
		{in: "1GB", want: 1e9},
		{in: "7KB", want: 7000},
		{in: "12B", want: 12},
		{in: "1048576", want: 1 << 20},
		{in: " 8 GiB ", want: 8 << 30},
		{in: "1", want: 1},
		{in: "8388607TiB", want: 8388607 << 40}, // the largest TiB count that fits
		{in: "9223372036854775807", want: 1<<63 - 1},
		{in: "", wantErr: true},
		{in: "GiB", wantErr: true},
		{in: "0", wantErr: true},
		{in: "0GiB", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "-64GiB", wantErr: true},
		{in: "1.5GiB", wantErr: true},
		{in: "64gib", wantErr: true},
		{in: "64G", wantErr: true},
		{in: "64 GiB extra", wantErr: true},
		{in: "9223372036854775808", wantErr: true},
		// Overflowing int64 is an error, not a cap that wraps negative or
		// to zero and refuses every image.
		{in: "8388608TiB", wantErr: true},
		{in: "16777216TiB", wantErr: true},
		{in: "9223372036854775807KB", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseBytes(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseBytes(%q) = %d, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseBytes(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestOverflowingMaxImageBytes is the same overflow seen through Parse.
func TestOverflowingMaxImageBytes(t *testing.T) {
	t.Parallel()
	s, err := Parse(env("TARPORT_MAX_IMAGE_BYTES", "8388608TiB"))
	// An overflowing cap must not become a negative one.
	if err == nil {
		t.Fatalf("Parse(TARPORT_MAX_IMAGE_BYTES=8388608TiB) = MaxImageBytes %d, want an error naming TARPORT_MAX_IMAGE_BYTES", s.MaxImageBytes)
	}
	if !strings.Contains(err.Error(), "TARPORT_MAX_IMAGE_BYTES") {
		t.Fatalf("error %q does not name TARPORT_MAX_IMAGE_BYTES", err)
	}
}
