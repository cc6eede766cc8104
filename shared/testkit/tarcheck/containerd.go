package tarcheck

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/testkit/daemon"
)

// Containerd is a private containerd daemon: its root, state, temp dir and
// sockets all live in one temp dir, so it shares nothing with a system
// containerd and leaves nothing behind.
type Containerd struct {
	// Address is the gRPC socket to pass to `ctr -a`.
	Address string
	// Namespace is the containerd namespace Import and AssertImage use.
	Namespace string
	// Snapshotter is where images are unpacked: overlayfs when this kernel
	// and file system can mount it, else native.
	Snapshotter string
	// Version is the output of `containerd --version`.
	Version string

	dir   string
	ctr   string
	log   string
	major int
}

// containerdStartTimeout bounds the wait for the socket. A cold start here
// usually takes well under a second; the first bolt database on a slow disk
// has taken a few.
const containerdStartTimeout = 30 * time.Second

// StartContainerd starts containerd with a generated config and stops it
// when the test ends. Start one per test, or share one between the subtests
// of a test: the daemon starts in well under a second.
//
// The config keeps unix socket paths short (they are limited to 108 bytes)
// by living under /tmp/tc-XXXX, and disables the plugins an import does not
// need (CRI, runtimes and tasks, btrfs/zfs/devmapper/aufs snapshotters,
// tracing, the /opt plugin dir) so it starts fast and touches nothing
// outside its dir.
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	requireRoot(t, "containerd")
	bin := requireBinary(t, "containerd")
	ctr := requireBinary(t, "ctr")
	version := strings.TrimSpace(mustRun(t, nil, bin, "--version"))

	dir, err := os.MkdirTemp("/tmp", "tc-")
	if err != nil {
		t.Fatalf("tarcheck.StartContainerd: creating its dir: %v", err)
	}
	// Registered first, so it runs last: after the daemon has stopped.
	t.Cleanup(func() { removeDir(t, dir) })
	c := &Containerd{
		Address:   filepath.Join(dir, "c.sock"),
		Namespace: "tarport",
		Version:   version,
		dir:       dir,
		ctr:       ctr,
		log:       filepath.Join(dir, "containerd.log"),
	}
	c.Snapshotter = pickSnapshotter(t, dir)
	c.major = containerdMajor(version)
	cfg := containerdConfig(containerdConfigVersion(c.major), dir)
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatalf("tarcheck.StartContainerd: %v", err)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatalf("tarcheck.StartContainerd: writing config: %v", err)
	}
	logf, err := os.Create(c.log)
	if err != nil {
		t.Fatalf("tarcheck.StartContainerd: %v", err)
	}
	// Stopped with SIGTERM (killed if it ignores it for 10 s), in its own
	// process group so a ^C to go test reaches it only through the
	// cleanup; killed with the test binary should that die first.
	d, err := daemon.Start(context.Background(), daemon.Spec{
		Name:         "containerd",
		Bin:          bin,
		Addr:         c.Address,
		Args:         func(string) []string { return []string{"--config", cfgPath} },
		Output:       logf,
		Term:         10 * time.Second,
		OwnGroup:     true,
		StartTimeout: containerdStartTimeout,
		Ready: func(ctx context.Context, addr string) error {
			conn, err := (&net.Dialer{}).DialContext(ctx, "unix", addr)
			if err == nil {
				conn.Close()
			}
			return err
		},
	})
	if err != nil {
		logf.Close()
		t.Fatalf("tarcheck.StartContainerd: %v", err)
	}
	t.Cleanup(func() { d.Stop(); logf.Close() })
	t.Logf("tarcheck: %s serving at %s (snapshotter %s)", version, c.Address, c.Snapshotter)
	return c
}

// removeDir unmounts whatever containerd left mounted under dir (normally
// nothing: unpacking mounts only for the time of one layer) and removes it.
func removeDir(t testing.TB, dir string) {
	for _, m := range mountsUnder(dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("tarcheck: unmounting %s: %v", m, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Logf("tarcheck: removing %s: %v", dir, err)
	}
}

// WithNamespace returns a handle on the same daemon that imports into and
// checks another namespace, to keep tests sharing a daemon apart.
func (c *Containerd) WithNamespace(ns string) *Containerd {
	cp := *c
	cp.Namespace = ns
	return &cp
}

// ctrArgs prefixes a ctr command with the address and namespace.
func (c *Containerd) ctrArgs(args ...string) []string {
	return append([]string{"-a", c.Address, "-n", c.Namespace}, args...)
}

func (c *Containerd) run(t testing.TB, args ...string) string {
	t.Helper()
	args = c.ctrArgs(args...)
	r := runCmd(nil, c.ctr, args...)
	if r.err != nil {
		t.Fatalf("tarcheck.Containerd: %s\ncontainerd log (tail):\n%s", r.describe(c.ctr, args), indent(c.logTail()))
	}
	return r.stdout
}

var unpackedRE = regexp.MustCompile(`unpacking (\S+) \((sha256:[0-9a-f]{64})\)\.\.\.done`)

// Import runs `ctr images import --platform P --snapshotter S TAR`, which
// writes every blob to the content store and unpacks the image into the
// snapshotter, and returns the names of all images in the namespace.
//
// Unpacking is what makes this a check: without it (--no-unpack) ctr
// 1.6 silently drops a blob whose content does not match its name and
// reports success, leaving an incomplete image. Unpacking reads every layer
// through its digest and diff_id. Import also fails when ctr unpacked
// nothing, or when an image it unpacked is not for platform P (ctr imports
// an image of another platform without complaint), and asserts every
// unpacked image with AssertImage.
func (c *Containerd) Import(t testing.TB, tarPath, platform string) []string {
	t.Helper()
	args := []string{"images", "import", "--platform", platform, "--snapshotter", c.Snapshotter}
	if c.major >= 2 {
		// containerd 2 imports through the transfer service by default,
		// which prints no "unpacking ... done" lines; --local keeps the
		// 1.x code path. (Only 1.6 is verified on these machines.)
		args = append(args, "--local")
	}
	out := c.run(t, append(args, tarPath)...)
	matches := unpackedRE.FindAllStringSubmatch(out, -1)
	if len(matches) == 0 {
		t.Fatalf("tarcheck.Containerd: `ctr images import --platform %s %s` unpacked no image; it printed:\n%s", platform, tarPath, indent(out))
	}
	images := c.Images(t)
	for _, m := range matches {
		img, ok := images[m[1]]
		if !ok {
			t.Fatalf("tarcheck.Containerd: ctr unpacked %s but `ctr images ls` does not list it", m[1])
		}
		if img.Digest != m[2] {
			t.Fatalf("tarcheck.Containerd: ctr unpacked %s at %s but lists it at %s", m[1], m[2], img.Digest)
		}
		if !hasPlatform(img.Platforms, platform) {
			t.Fatalf("tarcheck.Containerd: imported %s for platform %s, but containerd says its platforms are %v", m[1], platform, img.Platforms)
		}
		c.AssertImage(t, m[1])
	}
	names := make([]string, 0, len(images))
	for n := range images {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ContainerdImage is one row of `ctr images ls`.
type ContainerdImage struct {
	Name      string
	MediaType string
	Digest    string
	Platforms []string
}

// Images returns the images in the namespace, by name.
func (c *Containerd) Images(t testing.TB) map[string]ContainerdImage {
	t.Helper()
	out := c.run(t, "images", "ls")
	images := map[string]ContainerdImage{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for i := 0; sc.Scan(); i++ {
		f := strings.Fields(sc.Text())
		if i == 0 || len(f) == 0 {
			continue // the header
		}
		// REF TYPE DIGEST SIZE(2 fields, "4.4 KiB") PLATFORMS LABELS
		if len(f) < 6 {
			t.Fatalf("tarcheck.Containerd: unexpected `ctr images ls` line %q", sc.Text())
		}
		images[f[0]] = ContainerdImage{Name: f[0], MediaType: f[1], Digest: f[2], Platforms: strings.Split(f[len(f)-2], ",")}
	}
	return images
}

// AssertImage fails the test unless the namespace has an image of that name
// (e.g. docker.io/library/nginx:1.27) whose content is complete and which is
// unpacked in the snapshotter (`ctr images check -q` lists only those).
func (c *Containerd) AssertImage(t testing.TB, name string) {
	t.Helper()
	out := c.run(t, "images", "check", "-q", "--snapshotter", c.Snapshotter)
	for _, n := range strings.Fields(out) {
		if n == name {
			return
		}
	}
	all := c.run(t, "images", "check", "--snapshotter", c.Snapshotter)
	t.Fatalf("tarcheck.Containerd: no complete, unpacked image %q in namespace %s; `ctr images check` says:\n%s", name, c.Namespace, indent(all))
}

// hasPlatform compares platforms the way containerd normalizes them
// (arm64 is arm64/v8, arm is arm/v7, amd64 is amd64 or amd64/v1).
func hasPlatform(have []string, want string) bool {
	for _, h := range have {
		if normalizePlatform(h) == normalizePlatform(want) {
			return true
		}
	}
	return false
}

func normalizePlatform(p string) string {
	parts := strings.Split(p, "/")
	if len(parts) == 2 {
		switch parts[1] {
		case "arm64":
			parts = append(parts, "v8")
		case "arm":
			parts = append(parts, "v7")
		case "amd64":
			parts = append(parts, "v1")
		}
	}
	return strings.Join(parts, "/")
}

func (c *Containerd) logTail() string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return err.Error()
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// containerdMajor is the major version in `containerd --version` output:
// "containerd github.com/containerd/containerd 1.6.20~ds1 ..." or
// "containerd github.com/containerd/containerd/v2 v2.0.0 ...".
func containerdMajor(version string) int {
	m := regexp.MustCompile(`\sv?(\d+)\.\d+\.\d+`).FindStringSubmatch(version)
	if m == nil {
		return 1
	}
	major, _ := strconv.Atoi(m[1])
	return major
}

// containerdConfigVersion is 2 for containerd 1.x, 3 for 2.x.
func containerdConfigVersion(major int) int {
	if major >= 2 {
		return 3
	}
	return 2
}

// containerdConfig is a minimal config for image import only. Unknown names
// in disabled_plugins are ignored, so one list serves 1.x and 2.x.
func containerdConfig(version int, dir string) string {
	disabled := []string{
		"io.containerd.grpc.v1.cri",
		"io.containerd.cri.v1.images",
		"io.containerd.cri.v1.runtime",
		"io.containerd.snapshotter.v1.btrfs",
		"io.containerd.snapshotter.v1.zfs",
		"io.containerd.snapshotter.v1.devmapper",
		"io.containerd.snapshotter.v1.aufs",
		"io.containerd.snapshotter.v1.blockfile",
		"io.containerd.snapshotter.v1.erofs",
		"io.containerd.internal.v1.opt",
		"io.containerd.internal.v1.tracing",
		"io.containerd.tracing.processor.v1.otlp",
		"io.containerd.runtime.v1.linux",
		"io.containerd.runtime.v2.task",
		"io.containerd.runtime.v2.shim",
		"io.containerd.service.v1.tasks-service",
		"io.containerd.grpc.v1.tasks",
		"io.containerd.internal.v1.restart",
		"io.containerd.monitor.v1.cgroups",
		"io.containerd.monitor.task.v1.cgroups",
		"io.containerd.nri.v1.nri",
	}
	q := make([]string, len(disabled))
	for i, d := range disabled {
		q[i] = strconv.Quote(d)
	}
	return fmt.Sprintf(`version = %d
root = %q
state = %q
temp = %q
disabled_plugins = [%s]

[grpc]
  address = %q

[ttrpc]
  address = %q
`, version, filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "tmp"),
		strings.Join(q, ", "), filepath.Join(dir, "c.sock"), filepath.Join(dir, "c.sock.ttrpc"))
}

// snapshotterEnv overrides the snapshotter choice (overlayfs or native).
const snapshotterEnv = "TARCHECK_CONTAINERD_SNAPSHOTTER"

// pickSnapshotter returns overlayfs if an overlay mount works in dir (it
// does on these machines: ext4 under /tmp, running as root), else native,
// which copies instead of mounting and works anywhere, e.g. inside an
// unprivileged container. Both unpack every layer.
func pickSnapshotter(t testing.TB, dir string) string {
	t.Helper()
	if s := os.Getenv(snapshotterEnv); s != "" {
		return s
	}
	probe := filepath.Join(dir, "overlay-probe")
	var paths []string
	for _, p := range []string{"lower", "upper", "work", "merged"} {
		paths = append(paths, filepath.Join(probe, p))
		if err := os.MkdirAll(paths[len(paths)-1], 0o700); err != nil {
			t.Fatalf("tarcheck.StartContainerd: %v", err)
		}
	}
	defer os.RemoveAll(probe)
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", paths[0], paths[1], paths[2])
	if err := syscall.Mount("overlay", paths[3], "overlay", 0, opts); err != nil {
		t.Logf("tarcheck: overlay mount unavailable (%v); containerd unpacks with the native snapshotter", err)
		return "native"
	}
	if err := syscall.Unmount(paths[3], 0); err != nil {
		t.Fatalf("tarcheck.StartContainerd: unmounting the overlay probe: %v", err)
	}
	return "overlayfs"
}

// mountsUnder lists mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}
