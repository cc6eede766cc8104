// Package tarcheck owns the independent checks that an image tar produced by
// tarport is correct: its structure read with archive/tar alone, and loads by
// real readers and runtimes (go-containerregistry, skopeo, containerd,
// podman). Every check takes a testing.TB, fails the test with a precise
// message, and returns what the reader saw so tests can compare readers.
//
// The tar is the Docker 25+ `docker save` layout described in
// shared/DESIGN.md ("The tar"): oci-layout, index.json, manifest.json and
// blobs/sha256/<hex> for the manifest, the config and every layer.
package tarcheck

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Descriptor is a content descriptor as the tar's manifest lists it.
type Descriptor struct {
	MediaType string
	Digest    string
	Size      int64
}

// Platform is the os/architecture[/variant] an image config declares.
type Platform struct {
	OS           string
	Architecture string
	Variant      string
}

// String renders the platform as os/arch[/variant], the form the tools take.
func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// requireToolsEnv makes a missing tool a failure instead of a skip, so CI
// can never pass by silently skipping the runtime checks.
const requireToolsEnv = "TARPORT_REQUIRE_TOOLS"

// aptPackage names the Debian package that installs each binary we run.
var aptPackage = map[string]string{
	"skopeo":     "skopeo",
	"containerd": "containerd",
	"ctr":        "containerd",
	"podman":     "podman",
}

// requireBinary returns the path of the named binary, or ends the test: a
// failure when TARPORT_REQUIRE_TOOLS=1 (CI), a skip otherwise.
func requireBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	pkg := aptPackage[name]
	if pkg == "" {
		pkg = name
	}
	if os.Getenv(requireToolsEnv) == "1" {
		t.Fatalf("%s not found in PATH and %s=1: install it with `apt-get install -y %s`", name, requireToolsEnv, pkg)
	} else {
		t.Skipf("%s not found in PATH (install it with `apt-get install -y %s`; set %s=1 to fail instead of skipping)", name, pkg, requireToolsEnv)
	}
	return ""
}

// requireRoot ends the test unless it runs as root, with the same
// fail-or-skip rule as requireBinary: containerd and podman with a private
// storage root are only verified to work as root on these machines.
func requireRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(requireToolsEnv) == "1" {
		t.Fatalf("%s needs root here and %s=1: run the tests as root", what, requireToolsEnv)
	} else {
		t.Skipf("%s needs root here (set %s=1 to fail instead of skipping)", what, requireToolsEnv)
	}
}

// cmdResult is what one external command printed.
type cmdResult struct {
	stdout, stderr string
	err            error
	took           time.Duration
}

// runCmd runs a command with extra environment entries appended to ours.
func runCmd(env []string, name string, args ...string) cmdResult {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	return cmdResult{stdout: stdout.String(), stderr: stderr.String(), err: err, took: time.Since(start)}
}

// describe renders a failed command for a test message.
// The first line carries the last line of stderr, where the tools put the
// reason.
func (r cmdResult) describe(name string, args []string) string {
	return fmt.Sprintf("`%s %s`: %v: %s\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), r.err, lastLine(r.stderr), indent(r.stdout), indent(r.stderr))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}

// mustRun runs a command and fails the test with its output if it fails.
func mustRun(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	r := runCmd(env, name, args...)
	if r.err != nil {
		t.Fatalf("%s", r.describe(name, args))
	}
	return r.stdout
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "    (empty)"
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

// toolTempDir makes a private temp dir for one tool run and removes it when
// the test ends. Tools get it as TMPDIR: skopeo and podman unpack whole
// archives there, so it must not be a small tmpfs or shared with others.
func toolTempDir(t testing.TB, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatalf("creating temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("removing %s: %v", dir, err)
		}
	})
	return dir
}
