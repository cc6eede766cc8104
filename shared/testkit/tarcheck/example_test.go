package tarcheck_test

import (
	"testing"

	"github.com/tarport/tarport/shared/testkit/tarcheck"
)

// An integration test checks a tar tarport produced with every reader.
func Example() {
	_ = func(t *testing.T, tarPath string) {
		c := tarcheck.Structure(t, tarPath) // layout, headers, digests
		tarcheck.GGCR(t, tarPath)           // go-containerregistry, both views
		tarcheck.Skopeo(t, tarPath)         // skopeo, docker-archive and oci-archive

		ctrd := tarcheck.StartContainerd(t) // private daemon, stopped at cleanup
		ctrd.Import(t, tarPath, c.Platform.String())
		ctrd.AssertImage(t, c.ImageName) // e.g. docker.io/library/nginx:1.27

		names := tarcheck.Podman(t, tarPath)
		if len(names) != 1 || names[0] != c.ImageName {
			t.Fatalf("podman loaded %v, want %s", names, c.ImageName)
		}
	}
}
