package tarport_test

import (
	"testing"

	"github.com/regclient/regclient/types/platform"

	"github.com/tarport/tarport/shared/tarport"
)

func TestParsePlatform(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want string
		code     tarport.Code
	}{
		{"", "linux/amd64", ""},
		{"linux/amd64", "linux/amd64", ""},
		{"Linux/AMD64", "linux/amd64", ""},
		{"linux/x86_64", "linux/amd64", ""},
		{"linux/arm64", "linux/arm64", ""},
		{"linux/arm64/v8", "linux/arm64", ""},
		{"linux/aarch64", "linux/arm64", ""},
		{"linux/arm", "linux/arm/v7", ""},
		{"linux/arm/v6", "linux/arm/v6", ""},
		{"linux/arm/7", "linux/arm/v7", ""},
		{"linux/armhf", "linux/arm/v7", ""},
		{"linux/armel", "linux/arm/v6", ""},
		{"linux/i386", "linux/386", ""},
		{"windows/amd64", "windows/amd64", ""},
		{"linux", "", tarport.CodeInvalidPlatform},
		{"arm64", "", tarport.CodeInvalidPlatform},
		{"linux/arm/v7/x", "", tarport.CodeInvalidPlatform},
		{"linux//v7", "", tarport.CodeInvalidPlatform},
		{"linux/$(id)", "", tarport.CodeInvalidPlatform},
	} {
		p, err := tarport.ParsePlatform(tc.in)
		if tc.code != "" {
			if tarport.ErrorCode(err) != tc.code {
				t.Errorf("ParsePlatform(%q) = %v, %v; want %s", tc.in, p, err, tc.code)
			}
			continue
		}
		if err != nil || p.String() != tc.want {
			t.Errorf("ParsePlatform(%q) = %q, %v; want %q", tc.in, p, err, tc.want)
		}
	}
}

// TestPlatformMatchesExactly: normalized spellings match, neighbours never.
func TestPlatformMatchesExactly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		want  string
		entry platform.Platform
		match bool
	}{
		{"linux/arm64", platform.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, true},
		{"linux/arm64", platform.Platform{OS: "linux", Architecture: "arm64"}, true},
		{"linux/arm/v7", platform.Platform{OS: "linux", Architecture: "arm"}, true},
		{"linux/arm/v6", platform.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, false},
		{"linux/arm/v7", platform.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, false},
		{"linux/arm/v7", platform.Platform{OS: "linux", Architecture: "arm", Variant: "v8"}, false},
		{"linux/amd64", platform.Platform{OS: "linux", Architecture: "amd64", Variant: "v3"}, false},
		{"linux/amd64", platform.Platform{OS: "windows", Architecture: "amd64"}, false},
		{"windows/amd64", platform.Platform{OS: "windows", Architecture: "amd64", OSVersion: "10.0.20348.2031"}, true},
		{"linux/386", platform.Platform{OS: "linux", Architecture: "amd64"}, false},
	} {
		p, err := tarport.ParsePlatform(tc.want)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Matches(tc.entry); got != tc.match {
			t.Errorf("%s matches %s: %v, want %v", tc.want, tc.entry, got, tc.match)
		}
	}
}

func TestParseReference(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in                  string
		registry, repo, tag string
		short               string
		bad                 bool
	}{
		{in: "nginx", registry: "docker.io", repo: "library/nginx", tag: "latest", short: "nginx"},
		{in: "nginx:1.27", registry: "docker.io", repo: "library/nginx", tag: "1.27", short: "nginx"},
		{in: "bitnami/redis:7", registry: "docker.io", repo: "bitnami/redis", tag: "7", short: "bitnami/redis"},
		{in: "docker.io/library/alpine:3", registry: "docker.io", repo: "library/alpine", tag: "3", short: "alpine"},
		{in: "ghcr.io/o/r:tag", registry: "ghcr.io", repo: "o/r", tag: "tag", short: "ghcr.io/o/r"},
		{in: "localhost:5000/x", registry: "localhost:5000", repo: "x", tag: "latest", short: "localhost:5000/x"},
		{in: "quay.io/a/b@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", registry: "quay.io", repo: "a/b", short: "quay.io/a/b"},
		{in: "", bad: true},
		{in: "team/UPPER", bad: true},
		{in: "ocidir://tmp/x", bad: true},
		{in: "https://ghcr.io/o/r", bad: true},
		{in: "nginx:", bad: true},
		{in: "a b", bad: true},
	} {
		r, err := tarport.ParseReference(tc.in)
		if tc.bad {
			if tarport.ErrorCode(err) != tarport.CodeInvalidReference {
				t.Errorf("ParseReference(%q) = %+v, %v; want invalid_reference", tc.in, r, err)
			}
			continue
		}
		if err != nil || r.Registry != tc.registry || r.Repository != tc.repo || r.Tag != tc.tag || tarport.ShortName(r) != tc.short {
			t.Errorf("ParseReference(%q) = %s %s %s (%s), %v", tc.in, r.Registry, r.Repository, r.Tag, tarport.ShortName(r), err)
		}
	}
}
