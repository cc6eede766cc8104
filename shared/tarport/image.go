package tarport

import (
	"regexp"
	"strings"

	"github.com/regclient/regclient/types/platform"
	"github.com/regclient/regclient/types/ref"
)

// MaxReferenceLength bounds an image reference (Docker's own limit for a
// repository name is 255; a host, tag and digest add the rest).
const MaxReferenceLength = 512

// ParseReference parses a Docker image reference: "nginx" is
// docker.io/library/nginx:latest, "localhost:5000/x", "ghcr.io/o/r@sha256:…".
// Only registry references are accepted: regclient's ocidir:// and
// ocifile:// schemes would read the server's own disk.
func ParseReference(s string) (ref.Ref, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return ref.Ref{}, Errorf(CodeInvalidReference, "image reference is empty")
	}
	if len(s) > MaxReferenceLength {
		return ref.Ref{}, Errorf(CodeInvalidReference, "image reference is longer than %d characters", MaxReferenceLength)
	}
	if strings.Contains(s, "://") {
		return ref.Ref{}, Errorf(CodeInvalidReference, "image reference %q must not have a scheme: write host/name:tag", s)
	}
	r, err := ref.New(s)
	if err != nil || r.Scheme != "reg" {
		return ref.Ref{}, Wrap(err, CodeInvalidReference, "%q is not a valid image reference (expected e.g. nginx:1.27, bitnami/redis:7, ghcr.io/owner/repo@sha256:…)", s)
	}
	return r, nil
}

// ShortName is the name users and runtimes expect to see for r: Docker Hub
// images without the docker.io/library/ prefix, as `docker images` shows.
func ShortName(r ref.Ref) string {
	name := r.Registry + "/" + r.Repository
	if r.Registry == "docker.io" {
		name = strings.TrimPrefix(r.Repository, "library/")
	}
	return name
}

// FullName is the fully qualified repository: docker.io/library/nginx.
func FullName(r ref.Ref) string { return r.Registry + "/" + r.Repository }

// Platform is the os/arch[/variant] a user asked for. Variants are
// normalized the way the OCI spec and containerd do (arm64 = arm64/v8,
// arm = arm/v7) but never widened: arm/v6 is not arm/v7.
type Platform struct {
	OS           string
	Architecture string
	Variant      string
	OSVersion    string
}

// DefaultPlatform is what a request without a platform gets.
var DefaultPlatform = Platform{OS: "linux", Architecture: "amd64"}

var platformPartRE = regexp.MustCompile(`^[a-z0-9_.-]{1,32}$`)

// ParsePlatform parses "os/arch[/variant]". Unlike regclient's platform.Parse
// it never fills gaps from the machine it runs on: a Lambda on arm64 must not
// turn "linux" into linux/arm64.
func ParsePlatform(s string) (Platform, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return DefaultPlatform, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Platform{}, Errorf(CodeInvalidPlatform, "platform %q must be os/arch or os/arch/variant, e.g. linux/arm64 or linux/arm/v7", s)
	}
	for _, p := range parts {
		if !platformPartRE.MatchString(p) {
			return Platform{}, Errorf(CodeInvalidPlatform, "platform %q has an invalid part %q", s, p)
		}
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p.normalized(), nil
}

// normalized applies the canonical spellings of OS, arch and variant.
func (p Platform) normalized() Platform {
	switch p.Architecture {
	case "x86_64", "x86-64":
		p.Architecture = "amd64"
	case "aarch64":
		p.Architecture = "arm64"
	case "i386":
		p.Architecture = "386"
	case "armhf":
		p.Architecture, p.Variant = "arm", "v7"
	case "armel":
		p.Architecture, p.Variant = "arm", "v6"
	}
	switch p.Architecture {
	case "amd64":
		if p.Variant == "v1" {
			p.Variant = ""
		}
	case "arm64":
		if p.Variant == "v8" || p.Variant == "8" {
			p.Variant = ""
		}
	case "arm":
		switch p.Variant {
		case "", "7":
			p.Variant = "v7"
		case "5", "6", "8":
			p.Variant = "v" + p.Variant
		}
	}
	if p.OS == "macos" {
		p.OS = "darwin"
	}
	return p
}

// String is the canonical spelling: linux/arm/v7, linux/arm64, windows/amd64.
func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// Matches reports whether an index entry's platform is exactly p after
// normalization. An OS version is compared only when the user gave one.
func (p Platform) Matches(q platform.Platform) bool {
	other := Platform{OS: q.OS, Architecture: q.Architecture, Variant: q.Variant, OSVersion: q.OSVersion}.normalized()
	want := p.normalized()
	if want.OS != other.OS || want.Architecture != other.Architecture || want.Variant != other.Variant {
		return false
	}
	return want.OSVersion == "" || strings.HasPrefix(other.OSVersion, want.OSVersion)
}

// IsAttestation reports whether an index entry is a BuildKit attestation
// (platform unknown/unknown), which is not an image anyone can run.
func IsAttestation(p *platform.Platform, annotations map[string]string) bool {
	if annotations["vnd.docker.reference.type"] == "attestation-manifest" {
		return true
	}
	return p != nil && p.OS == "unknown" && p.Architecture == "unknown"
}
