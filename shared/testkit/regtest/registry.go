// Package regtest runs the real CNCF distribution registry on loopback and pushes test
// images to it: multi-platform indexes with attestations, Docker manifest lists, images
// with gzip/zstd/uncompressed/duplicated/empty layers, Windows images with foreign
// layers, and multi-GiB images generated as a stream. Integration tests and benchmarks
// elsewhere in tarport use it as the registry their code downloads from.
//
// Every push returns a Pushed listing the digests, sizes and media types the registry
// now serves, so a test can check what it downloaded against it:
//
//	reg := regtest.Start(t) // skips the test if the registry binary is missing
//	p := regtest.PushMultiArch(t, reg, "library/demo", "v1")
//	want, _ := p.Platform("linux/arm/v7")
//	// download reg.Ref("library/demo", "v1") for linux/arm/v7 with the code under test
//	// (registry "http://"+reg.Host), then compare with want.Manifest, want.Config, want.Layers
//
// Content is deterministic: the same fixture pushed to the same repo:tag has the same
// digests in every run. Each PushX(t, ...) is a thin wrapper of a WriteX(ctx, Dest, ...)
// that returns errors, for use outside tests.
package regtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/tarport/tarport/shared/testkit/daemon"
)

// Realm is the basic-auth realm of a registry started WithHtpasswd.
const Realm = "tarport-test"

// Registry is a running distribution registry serving plain HTTP on 127.0.0.1.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of image references.
	Host string
	// Username and Password are the credentials set by WithHtpasswd; empty when
	// the registry is anonymous.
	Username, Password string

	bin    string
	config string
	log    *daemon.SyncBuffer // every run's output

	mu   sync.Mutex
	proc *daemon.Daemon
}

// Option configures a registry before it starts.
type Option func(*settings)

type settings struct {
	user, pass string
}

// WithHtpasswd makes every repository of the registry private: requests need HTTP basic
// auth with user and pass (realm "tarport-test").
func WithHtpasswd(user, pass string) Option {
	return func(s *settings) { s.user, s.pass = user, pass }
}

// Start runs a fresh registry for t, with its storage in t.TempDir(), and kills it when
// the test ends. The test is skipped when the registry binary is missing (see Binary).
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	bin := daemon.Binary(t, "registry", "docker-registry")
	// Not t.Context(): it is cancelled before cleanups run, and a test's own cleanups
	// may still talk to the registry.
	r, err := Launch(context.Background(), bin, t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("starting registry: %v", err)
	}
	t.Cleanup(r.Stop)
	return r
}

// Launch is Start without a testing.TB, for benchmarks and tools: it runs the registry
// binary bin with its config and storage under dir. The process lives until Stop is
// called or ctx is done.
func Launch(ctx context.Context, bin, dir string, opts ...Option) (*Registry, error) {
	var s settings
	for _, o := range opts {
		o(&s)
	}
	r := &Registry{
		Username: s.user,
		Password: s.pass,
		bin:      bin,
		config:   filepath.Join(dir, "config.yml"),
		log:      &daemon.SyncBuffer{},
	}
	var htpasswd string
	if s.user != "" {
		htpasswd = filepath.Join(dir, "htpasswd")
		if err := writeHtpasswd(htpasswd, s.user, s.pass); err != nil {
			return nil, err
		}
	}
	// A free port found by listening can be taken again before the registry binds it;
	// another port is cheaper than a flaky test.
	var err error
	for range 3 {
		var addr string
		if addr, err = daemon.FreeAddr(); err != nil {
			return nil, err
		}
		if err = writeConfig(r.config, addr, filepath.Join(dir, "data"), htpasswd); err != nil {
			return nil, err
		}
		r.Host = addr
		if err = r.spawn(ctx); err == nil {
			return r, nil
		}
		if !strings.Contains(r.log.String(), "address already in use") {
			break
		}
	}
	return nil, err
}

// URL is the registry's base URL, "http://127.0.0.1:PORT".
func (r *Registry) URL() string { return "http://" + r.Host }

// Ref is the reference of repo:tag on this registry, "127.0.0.1:PORT/repo:tag".
func (r *Registry) Ref(repo, tag string) string { return r.Host + "/" + repo + ":" + tag }

// Dest says where a Write* function pushes repo:tag, with the registry's credentials.
func (r *Registry) Dest(repo, tag string) Dest {
	return Dest{Ref: r.Ref(repo, tag), Username: r.Username, Password: r.Password}
}

// Log returns what the registry printed so far, over all its runs.
func (r *Registry) Log() string { return r.log.String() }

// Stop kills the registry and waits for it to exit. Its storage stays, so Restart brings
// the same content back. Stopping twice is fine.
func (r *Registry) Stop() {
	r.mu.Lock()
	d := r.proc
	r.proc = nil
	r.mu.Unlock()
	if d != nil {
		d.Stop()
	}
}

// Restart stops the registry and starts it again on the same address and storage, for
// tests of a registry that goes away mid-download. The new process lives until Stop or
// until ctx is done.
func (r *Registry) Restart(ctx context.Context) error {
	r.Stop()
	return r.spawn(ctx)
}

// spawn runs the registry on r.config (which names r.Host) and waits until it answers
// /v2/: 200 when anonymous, 401 with auth.
func (r *Registry) spawn(ctx context.Context) error {
	d, err := daemon.Start(ctx, daemon.Spec{
		Name:         "registry",
		Bin:          r.bin,
		Addr:         r.Host,
		Args:         func(string) []string { return []string{"serve", r.config} },
		Env:          registryEnv(),
		Output:       r.log,
		StartTimeout: 20 * time.Second,
		Ready:        daemon.HTTPReady(nil, "http", "/v2/", http.StatusOK, http.StatusUnauthorized),
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.proc = d
	r.mu.Unlock()
	return nil
}

// registryEnv is the test's environment without REGISTRY_* variables, which would
// override the config file, and with OpenTelemetry export off: distribution v3
// otherwise sends traces to localhost:4318 and logs every failure.
func registryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") && !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return append(env, "OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true")
}

func writeConfig(path, addr, dataDir, htpasswd string) error {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  secret: %q
validation:
  manifests:
    urls:
      allow:
        - '^https?://'
`, dataDir, addr, hex.EncodeToString(secret))
	if htpasswd != "" {
		fmt.Fprintf(&b, `auth:
  htpasswd:
    realm: %q
    path: %q
`, Realm, htpasswd)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing registry config: %w", err)
	}
	return nil
}

func writeHtpasswd(path, user, pass string) error {
	// MinCost: the registry checks the hash on every request; the default cost would
	// add tens of milliseconds to each one.
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		return fmt.Errorf("hashing password: %w", err)
	}
	if err := os.WriteFile(path, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
		return fmt.Errorf("writing htpasswd: %w", err)
	}
	return nil
}
