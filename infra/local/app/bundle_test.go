package app_test

import (
	"archive/tar"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/testkit/regtest"
	"github.com/tarport/tarport/shared/testkit/tarcheck"
)

// TestBundleRuntimes: a Compose file's images in one tar. Its build-only
// service is left out, nginx written three ways is one image, and the base
// two images share is one entry. containerd and podman load every image
// with its name and tag, and skopeo reads each by name from
// docker-archive.
func TestBundleRuntimes(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	// docker.io is this registry, so "nginx" is spelled as users write it.
	srv := startServer(t, map[string]string{"TARPORT_INSECURE_REGISTRIES": reg.Host, "TARPORT_DOCKERHUB_REGISTRY": reg.URL()})
	base := regtest.LayerSpec{Size: 6 << 20, Random: true, Seed: "bundle base"}
	nginx := regtest.PushImage(t, reg, "library/nginx", "latest", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 300 << 10}}})
	web := regtest.PushImage(t, reg, "rt/web", "1.0", regtest.ImageSpec{Layers: []regtest.LayerSpec{base, {Size: 200 << 10}}})
	api := regtest.PushImage(t, reg, "rt/api", "2.0", regtest.ImageSpec{Layers: []regtest.LayerSpec{base, {Size: 100 << 10, Compression: regtest.Zstd}}})
	yaml := fmt.Sprintf(`
services:
  app:
    build: .
  proxy: {image: nginx}
  proxy2: {image: "library/nginx:latest"}
  proxy3: {image: docker.io/library/nginx}
  web: {image: "%s"}
  api: {image: "%s"}
  api-again: {image: "%s"}
`, reg.Ref("rt/web", "1.0"), reg.Ref("rt/api", "2.0"), reg.Ref("rt/api", "2.0"))

	// The preview: what the file holds, before anything is fetched.
	var preview struct {
		Services []struct{ Service, Image, Skipped string }
		Images   []string
	}
	if st := post(t, srv.URL+"/api/compose", map[string]string{"compose": yaml}, &preview); st != http.StatusOK || len(preview.Images) != 3 || len(preview.Services) != 7 || preview.Services[2].Service != "app" || preview.Services[2].Skipped == "" {
		t.Fatalf("compose preview: %d %+v", st, preview)
	}

	// An image that does not exist fails the bundle before anything is
	// fetched, named.
	var refused errorBody
	if st := post(t, srv.URL+"/api/downloads", map[string]any{"images": []string{reg.Ref("rt/web", "1.0"), reg.Ref("rt/ghost", "9")}}, &refused); st != http.StatusNotFound || !strings.Contains(refused.Error.Message, "rt/ghost:9") {
		t.Fatalf("a bundle with a missing image: %d %+v", st, refused)
	}

	var j bundleJob
	if st := post(t, srv.URL+"/api/downloads", map[string]string{"compose": yaml}, &j); st != http.StatusAccepted && st != http.StatusOK {
		t.Fatalf("POST compose: %d %+v", st, j)
	}
	if len(j.Images) != 3 {
		t.Fatalf("bundle lists %+v, want 3 images", j.Images)
	}
	done := srv.waitAs(t, j.ID, 2*time.Minute, request{})
	if done.Status != "ready" {
		t.Fatalf("bundle: %+v", done.Error)
	}
	path := fetch(t, done)

	baseDigest := web.Images[0].Layers[0].Digest
	if api.Images[0].Layers[0].Digest != baseDigest {
		t.Fatal("the two images do not share their base")
	}
	entries := 0
	for _, name := range tarEntries(t, path) {
		if name == "blobs/sha256/"+strings.TrimPrefix(baseDigest, "sha256:") {
			entries++
		}
	}
	if entries != 1 {
		t.Fatalf("the shared base is %d entries, want 1", entries)
	}

	want := map[string]regtest.Image{
		"docker.io/library/nginx:latest": nginx.Images[0],
		reg.Host + "/rt/web:1.0":         web.Images[0],
		reg.Host + "/rt/api:2.0":         api.Images[0],
	}
	ctrd := tarcheck.StartContainerd(t)
	names := ctrd.Import(t, path, "linux/amd64")
	for name := range want {
		if !slices.Contains(names, name) {
			t.Fatalf("containerd lists %v, want %s", names, name)
		}
		ctrd.AssertImage(t, name)
	}
	loaded := tarcheck.PodmanLoadAll(t, path)
	if len(loaded) != 3 {
		t.Fatalf("podman loaded %+v, want 3 images", loaded)
	}
	for name, img := range want {
		found := false
		for _, p := range loaded {
			if slices.Contains(p.Names, name) {
				found = true
				// podman loads several images from manifest.json (its
				// oci-archive reader takes one): the manifest is podman's
				// own, the layers are checked against the diff ids.
				if !slices.Equal(p.DiffIDs, img.DiffIDs) {
					t.Fatalf("podman %s: diff ids %v; want %v", name, p.DiffIDs, img.DiffIDs)
				}
			}
		}
		if !found {
			t.Fatalf("podman names no image %s: %+v", name, loaded)
		}
	}
	for name, img := range map[string]regtest.Image{
		"nginx:latest":           nginx.Images[0],
		reg.Host + "/rt/web:1.0": web.Images[0],
		reg.Host + "/rt/api:2.0": api.Images[0],
	} {
		if diffIDs, config := tarcheck.SkopeoNamed(t, path, name); !slices.Equal(diffIDs, img.DiffIDs) || config != img.Config.Digest {
			t.Fatalf("skopeo docker-archive:%s: diff ids %v config %s; want %v %s", name, diffIDs, config, img.DiffIDs, img.Config.Digest)
		}
	}

	// The one-liner: the same images, in the same order (the compose
	// file's services by name), as a comma-separated pull: the same job.
	resp, err := http.Get(srv.URL + "/api/pull/" + reg.Ref("rt/api", "2.0") + ",nginx," + reg.Ref("rt/web", "1.0"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	pulled := filepath.Join(t.TempDir(), "pulled.tar")
	f, err := os.Create(pulled)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pull: %d %v", resp.StatusCode, err)
	}
	f.Close()
	if got, want := tarEntries(t, pulled), tarEntries(t, path); !slices.Equal(got, want) {
		t.Fatalf("pulled tar entries %v, the bundle's %v", got, want)
	}
	if fi, err := os.Stat(pulled); err != nil || fi.Size() != done.TotalBytes {
		t.Fatalf("pulled %v bytes (%v), the bundle has %d", fi, err, done.TotalBytes)
	}
}

// tarEntries lists a tar's file names in order, reading it to the end.
func tarEntries(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		names = append(names, h.Name)
	}
}

// bundleJob is the job shape with a bundle's images.
type bundleJob struct {
	job
	Images []struct {
		Image     string   `json:"image"`
		Ref       string   `json:"ref"`
		Digest    string   `json:"digest"`
		Size      int64    `json:"size"`
		DoneBytes int64    `json:"done_bytes"`
		Layers    []string `json:"layers"`
	} `json:"images"`
}

// TestBundlePlatformFromCompose: a Compose file's platform: is the
// bundle's when the request names none (arm/v6, not the default amd64 and
// not arm/v7), for every image of the file; a request for another platform
// is refused, naming the service, before anything is fetched.
func TestBundlePlatformFromCompose(t *testing.T) {
	t.Parallel()
	reg := regtest.Start(t)
	srv := startServer(t, map[string]string{"TARPORT_INSECURE_REGISTRIES": reg.Host})
	multi := regtest.PushMultiArch(t, reg, "rt/multi", "1")
	list := regtest.PushDockerList(t, reg, "rt/list", "1")
	yaml := fmt.Sprintf("services:\n  pi: {image: %q, platform: linux/arm/v6}\n  sidecar: {image: %q}\n", multi.Ref, list.Ref)

	var preview struct {
		Platform string
		Services []struct{ Service, Image, Platform string }
	}
	if st := post(t, srv.URL+"/api/compose", map[string]string{"compose": yaml}, &preview); st != http.StatusOK || preview.Platform != "linux/arm/v6" || preview.Services[0].Platform != "linux/arm/v6" {
		t.Fatalf("compose preview: %d %+v", st, preview)
	}

	var refused errorBody
	if st := post(t, srv.URL+"/api/downloads", map[string]string{"compose": yaml, "platform": "linux/arm/v7"}, &refused); st != http.StatusBadRequest || !strings.Contains(refused.Error.Message, `linux/arm/v6 for "pi"`) {
		t.Fatalf("compose for another platform: %d %+v", st, refused)
	}

	var j bundleJob
	if st := post(t, srv.URL+"/api/downloads", map[string]string{"compose": yaml}, &j); st != http.StatusAccepted && st != http.StatusOK {
		t.Fatalf("POST compose: %d %+v", st, j)
	}
	if j.Platform != "linux/arm/v6" || len(j.Images) != 2 {
		t.Fatalf("bundle for %q with %d images, want linux/arm/v6 and 2", j.Platform, len(j.Images))
	}
	armv6 := func(p regtest.Pushed) string {
		for _, img := range p.Images {
			if img.Platform == "linux/arm/v6" {
				return img.Manifest.Digest
			}
		}
		t.Fatalf("%s has no linux/arm/v6 image", p.Ref)
		return ""
	}
	if got, want := []string{j.Images[0].Digest, j.Images[1].Digest}, []string{armv6(multi), armv6(list)}; !slices.Equal(got, want) {
		t.Fatalf("bundle image digests %v, want the arm/v6 manifests %v", got, want)
	}
	if done := srv.waitAs(t, j.ID, time.Minute, request{}); done.Status != "ready" {
		t.Fatalf("bundle: %+v", done.Error)
	}
}
