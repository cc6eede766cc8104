package daemon

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ErrToolNotFound is returned by FindBinary when a tool is installed nowhere it looks.
var ErrToolNotFound = errors.New("tool not found")

// installHints tells a developer how to get each external tool the test kits use, so a
// skipped or failed test says what to run instead of only what is missing.
var installHints = map[string]string{
	"registry":                  "GOBIN=%[1]s/.tools/bin go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2 (or apt-get install docker-registry)",
	"versitygw":                 "GOBIN=%[1]s/.tools/bin go install github.com/versity/versitygw/cmd/versitygw@v1.8.0",
	"aws-lambda-rie":            "GOBIN=%[1]s/.tools/bin go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d",
	"skopeo":                    "apt-get install skopeo",
	"cfn-lint":                  "make test-deps (pip: cfn-lint==1.51.0, into .tools/py)",
	"moto_server":               "make test-deps (pip: moto[server]==5.2.1, into .tools/py)",
	"python-with-samtranslator": "make test-deps (pip: aws-sam-translator==1.110.0, into .tools/py)",
	"containerd":                "apt-get install containerd",
	"ctr":                       "apt-get install containerd",
	"podman":                    "apt-get install podman",
	"chromium":                  "apt-get install chromium",
	"node":                      "apt-get install nodejs",
}

// Binary returns the path of the external tool name for test t.
//
// It looks, in order, at the environment variable TARPORT_<NAME>_BIN (see BinaryEnv),
// at <repo root>/.tools/bin/<name> and .tools/py/bin/<name>, and on PATH for name and then each candidate
// (other names or absolute paths the same tool is installed as, e.g. Debian's
// "docker-registry"). When the tool is missing the test is skipped, so a plain
// `go test ./...` works anywhere; with TARPORT_REQUIRE_TOOLS=1 it fails instead, so a
// CI run cannot pass by skipping. A set but broken override always fails.
func Binary(t testing.TB, name string, candidates ...string) string {
	t.Helper()
	path, err := FindBinary(name, candidates...)
	switch {
	case err == nil:
		return path
	case !errors.Is(err, ErrToolNotFound):
		t.Fatalf("finding %s: %v", name, err)
	case os.Getenv("TARPORT_REQUIRE_TOOLS") == "1":
		t.Fatalf("%v; install it with: %s", err, installHint(name))
	default:
		t.Skipf("%v (install: %s; TARPORT_REQUIRE_TOOLS=1 turns this skip into a failure)", err, installHint(name))
	}
	return ""
}

// FindBinary is Binary without a testing.TB, for benchmarks and tools: it returns
// ErrToolNotFound (wrapped) when the tool is nowhere to be found.
func FindBinary(name string, candidates ...string) (string, error) {
	env := BinaryEnv(name)
	if p := os.Getenv(env); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", env, p, err)
		}
		return p, nil
	}
	if root, err := RepoRoot(); err == nil {
		for _, dir := range []string{"bin", "py/bin"} {
			p := filepath.Join(root, ".tools", dir, name)
			if checkExecutable(p) == nil {
				return p, nil
			}
		}
	}
	for _, n := range append([]string{name}, candidates...) {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not in $%s, .tools/bin, .tools/py/bin or PATH: %w", name, env, ErrToolNotFound)
}

// BinaryEnv names the environment variable that overrides where tool name lives:
// "registry" -> TARPORT_REGISTRY_BIN, "aws-lambda-rie" -> TARPORT_AWS_LAMBDA_RIE_BIN.
func BinaryEnv(name string) string {
	up := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		default:
			return '_'
		}
	}, name)
	return "TARPORT_" + up + "_BIN"
}

// RepoRoot walks up from the working directory (a package directory under
// `go test`) to the directory holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding repo root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding repo root: no go.mod above the working directory")
		}
		dir = parent
	}
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	return nil
}

func installHint(name string) string {
	root, err := RepoRoot()
	if err != nil {
		root = "<repo>"
	}
	if h, ok := installHints[name]; ok {
		return fmt.Sprintf(h, root)
	}
	return fmt.Sprintf("put %s on PATH, in %s/.tools/bin, or point $%s at it", name, root, BinaryEnv(name))
}
