package app_test

import (
	"slices"
	"testing"

	"github.com/tarport/tarport/shared/testkit/regtest"
	"github.com/tarport/tarport/shared/testkit/tarcheck"
)

// TestRuntimesLoadTheTar: containerd (ctr import, which unpacks and checks
// diff ids, as Docker 25+ does through it) and podman load tarport's tars,
// keep the image's name and tag, and see the registry's layers.
func TestRuntimesLoadTheTar(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	srv := startServer(t, registryEnv(reg.Host))
	ctrd := tarcheck.StartContainerd(t)

	mixed := regtest.PushImage(t, reg, "rt/mixed", "1.0", regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 6 << 20, Random: true, Seed: "base"},
		{Empty: true},
		{Size: 300 << 10, Compression: regtest.Zstd},
		{Size: 200 << 10, Compression: regtest.Uncompressed},
		{Size: 6 << 20, Random: true, Seed: "base"},
	}})
	multi := regtest.PushMultiArch(t, reg, "rt/multi", "2.0")
	docker := regtest.PushDockerList(t, reg, "rt/docker", "3.0")
	many := regtest.PushImage(t, reg, "rt/many", "4.0", regtest.ImageSpec{Layers: make([]regtest.LayerSpec, 110)})
	armV7, _ := multi.Platform("linux/arm/v7")
	arm64, _ := docker.Platform("linux/arm64")

	for _, tc := range []struct {
		repo, tag, platform string
		want                regtest.Image
	}{
		{"rt/mixed", "1.0", "linux/amd64", mixed.Images[0]},
		{"rt/multi", "2.0", "linux/arm/v7", armV7},
		{"rt/docker", "3.0", "linux/arm64", arm64},
		{"rt/many", "4.0", "linux/amd64", many.Images[0]},
	} {
		t.Run(tc.repo, func(t *testing.T) {
			t.Parallel()
			path, _ := srv.download(t, request{Image: reg.Ref(tc.repo, tc.tag), Platform: tc.platform})
			name := reg.Host + "/" + tc.repo + ":" + tc.tag

			c := tarcheck.Structure(t, path)
			if got := descriptorDigests(c.Layers); !slices.Equal(got, layerDigests(tc.want.Layers)) {
				t.Fatalf("tar layers %v, registry's %v", got, layerDigests(tc.want.Layers))
			}

			names := ctrd.Import(t, path, tc.platform)
			if !slices.Contains(names, name) {
				t.Fatalf("containerd lists %v, want %s", names, name)
			}
			ctrd.AssertImage(t, name)

			p := tarcheck.PodmanLoad(t, path)
			if !slices.Contains(p.Names, name) {
				t.Fatalf("podman lists %v, want %s", p.Names, name)
			}
			if p.ManifestDigest != tc.want.Manifest.Digest || !slices.Equal(p.DiffIDs, tc.want.DiffIDs) {
				t.Fatalf("podman: manifest %s diff ids %v; want %s %v", p.ManifestDigest, p.DiffIDs, tc.want.Manifest.Digest, tc.want.DiffIDs)
			}
		})
	}
}

func descriptorDigests(ds []tarcheck.Descriptor) []string {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.Digest)
	}
	return out
}
