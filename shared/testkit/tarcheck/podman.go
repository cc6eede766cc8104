package tarcheck

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// PodmanImage is the image podman loaded.
type PodmanImage struct {
	// Names are the image's names, e.g. docker.io/library/nginx:1.27.
	// podman 4.3 loads the tar as an oci-archive and takes the name from
	// index.json's io.containerd.image.name; with only
	// org.opencontainers.image.ref.name it would be localhost/<ref>:latest,
	// with no annotation the image is untagged (manifest.json's RepoTags are
	// not read when the oci-archive load succeeds).
	Names []string
	// ID is podman's image ID (the config digest's hex).
	ID string
	// ManifestDigest is the manifest podman stored.
	ManifestDigest string
	// DiffIDs are the layers as podman's storage holds them.
	DiffIDs []string
	// Platform is os/architecture[/variant] as podman read it.
	Platform Platform
}

// Podman loads the tar with `podman load` into a private, throwaway storage
// and returns the names of the images podman then lists.
func Podman(t testing.TB, tarPath string) []string {
	t.Helper()
	return PodmanLoad(t, tarPath).Names
}

// PodmanLoad is Podman returning everything podman saw.
//
// podman runs as `podman --root R --runroot R2 --storage-driver=vfs
// --tmpdir T --events-backend=file --cgroup-manager=cgroupfs`, all under a
// temp dir, with TMPDIR and XDG_RUNTIME_DIR there too: vfs needs no
// overlay or fuse, and with no systemd here the journald events backend and
// systemd cgroup manager are not available. The load decompresses and
// verifies every layer (a corrupt one fails it). podman tries oci-archive
// first, then docker-archive: the tar must load as an oci-archive.
func PodmanLoad(t testing.TB, tarPath string) PodmanImage {
	t.Helper()
	images := PodmanLoadAll(t, tarPath)
	if len(images) != 1 {
		t.Fatalf("tarcheck.Podman: loading %s gave %d images, want 1: %+v", tarPath, len(images), images)
	}
	return images[0]
}

// PodmanLoadAll is PodmanLoad for a tar of several images (a bundle): it
// returns every image podman then lists.
func PodmanLoadAll(t testing.TB, tarPath string) []PodmanImage {
	t.Helper()
	requireRoot(t, "podman with a private storage root")
	bin := requireBinary(t, "podman")
	dir := toolTempDir(t, "tarcheck-podman-")
	for _, d := range []string{"tmp", "xdg"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatalf("tarcheck.Podman: %v", err)
		}
	}
	env := []string{"TMPDIR=" + filepath.Join(dir, "tmp"), "XDG_RUNTIME_DIR=" + filepath.Join(dir, "xdg")}
	global := []string{
		"--root", filepath.Join(dir, "root"),
		"--runroot", filepath.Join(dir, "runroot"),
		"--storage-driver=vfs",
		"--tmpdir", filepath.Join(dir, "libpod"),
		"--events-backend=file",
		"--cgroup-manager=cgroupfs",
	}
	podman := func(args ...string) string {
		t.Helper()
		return mustRun(t, env, bin, append(append([]string{}, global...), args...)...)
	}

	// podman tries oci-archive, docker-archive, then dir, and reports each
	// failure on its own line; the oci-archive one is the reason that counts.
	loadArgs := append(append([]string{}, global...), "load", "--quiet", "--input", tarPath)
	if r := runCmd(env, bin, loadArgs...); r.err != nil {
		reason := lastLine(r.stderr)
		for _, line := range strings.Split(r.stderr, "\n") {
			if strings.Contains(line, "* oci-archive:") {
				reason = strings.TrimSpace(line)
				break
			}
		}
		t.Fatalf("tarcheck.Podman: podman load rejected %s: %s\n%s", tarPath, reason, r.describe(bin, loadArgs))
	}

	return podmanImages(t, podman)
}

// podmanImages lists the images in a podman storage, inspected.
func podmanImages(t testing.TB, podman func(args ...string) string) []PodmanImage {
	t.Helper()
	var listed []struct {
		ID    string `json:"Id"`
		Names []string
	}
	out := podman("images", "--format", "json")
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("tarcheck.Podman: parsing `podman images --format json`: %v\n%s", err, out)
	}
	var images []PodmanImage
	for _, l := range listed {
		var inspected []struct {
			ID           string `json:"Id"`
			Digest       string
			Os           string
			Architecture string
			Variant      string
			RootFS       struct{ Layers []string }
		}
		out = podman("image", "inspect", l.ID)
		if err := json.Unmarshal([]byte(out), &inspected); err != nil || len(inspected) != 1 {
			t.Fatalf("tarcheck.Podman: parsing `podman image inspect`: %v\n%s", err, out)
		}
		in := inspected[0]
		names := append([]string{}, l.Names...)
		sort.Strings(names)
		images = append(images, PodmanImage{
			Names:          names,
			ID:             in.ID,
			ManifestDigest: in.Digest,
			DiffIDs:        in.RootFS.Layers,
			Platform:       Platform{OS: in.Os, Architecture: in.Architecture, Variant: in.Variant},
		})
	}
	return images
}
