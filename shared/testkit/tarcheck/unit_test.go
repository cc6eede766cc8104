package tarcheck

import "testing"

func TestContainerdMajor(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		version string
		major   int
		config  int
	}{
		{"containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3", 1, 2},
		{"containerd github.com/containerd/containerd v1.7.24 88bf19b2105c8b17560993bee28a01ddc2f97182", 1, 2},
		{"containerd github.com/containerd/containerd/v2 v2.0.0 207ad711eabd375a01713109a8a197d197ff6542", 2, 3},
	} {
		if got := containerdMajor(tt.version); got != tt.major {
			t.Errorf("containerdMajor(%q) = %d, want %d", tt.version, got, tt.major)
		}
		if got := containerdConfigVersion(tt.major); got != tt.config {
			t.Errorf("containerdConfigVersion(%d) = %d, want %d", tt.major, got, tt.config)
		}
	}
}

func TestHasPlatform(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		have []string
		want string
		ok   bool
	}{
		{[]string{"linux/amd64"}, "linux/amd64", true},
		{[]string{"linux/arm64/v8"}, "linux/arm64", true},
		{[]string{"linux/arm64"}, "linux/arm64/v8", true},
		{[]string{"linux/arm/v7"}, "linux/arm", true},
		{[]string{"linux/arm/v6"}, "linux/arm", false},
		{[]string{"linux/amd64"}, "linux/arm64", false},
		{[]string{"linux/amd64", "linux/arm64"}, "linux/arm64", true},
	} {
		if got := hasPlatform(tt.have, tt.want); got != tt.ok {
			t.Errorf("hasPlatform(%v, %q) = %v, want %v", tt.have, tt.want, got, tt.ok)
		}
	}
}

func TestHasExplicitTag(t *testing.T) {
	t.Parallel()
	for ref, want := range map[string]bool{
		"nginx:1.27":                  true,
		"nginx":                       false,
		"localhost:5000/nginx":        false,
		"localhost:5000/nginx:1.27":   true,
		"docker.io/library/nginx:1.2": true,
	} {
		if got := hasExplicitTag(ref); got != want {
			t.Errorf("hasExplicitTag(%q) = %v, want %v", ref, got, want)
		}
	}
}
