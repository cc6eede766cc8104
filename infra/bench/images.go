package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/regtest"
)

// benchCase is one image every tool downloads.
type benchCase struct {
	name   string
	title  string // for the table
	repo   string
	tag    string
	layers []int64 // layer sizes pushed; nil for a retag of cachedOf's image
	// cachedOf names the case whose image this one is under another tag. tarport
	// runs it on the server that has just downloaded that case.
	cachedOf string

	ref   string        // "127.0.0.1:PORT/repo:tag", set by push
	image regtest.Image // what the registry serves, set by push
}

func allCases() []*benchCase {
	return []*benchCase{
		{name: "small", title: "~30 MiB, 3 layers", repo: "bench/small", tag: "v1", layers: []int64{16 << 20, 10 << 20, 4 << 20}},
		{name: "1g", title: "1 GiB, 8 layers", repo: "bench/large", tag: "v1", layers: repeat(128<<20, 8)},
		{name: "1g-cached", title: "1 GiB, new tag of the same image", repo: "bench/large", tag: "v2", cachedOf: "1g"},
		{name: "2g", title: "2 GiB, 1 layer", repo: "bench/huge", tag: "v1", layers: []int64{2 << 30}},
	}
}

func caseNames() []string {
	var out []string
	for _, c := range allCases() {
		out = append(out, c.name)
	}
	return out
}

// selectCases keeps the named cases, in the canonical order (a cached case after
// its cold one).
func selectCases(names []string) []*benchCase {
	var out []*benchCase
	for _, c := range allCases() {
		for _, n := range names {
			if c.name == n {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

func repeat(size int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = size
	}
	return out
}

// environment is what every measurement shares: the registry, the work
// directory and the environment of the peer tools.
type environment struct {
	work     string
	registry *regtest.Registry
	regBin   string
	timeBin  string
	toolEnv  []string // HOME and TMPDIR inside work, so no tool reads or writes the user's config
	outDir   string
}

func newEnvironment(ctx context.Context, work string) (*environment, error) {
	bin, err := daemon.FindBinary("registry", "docker-registry")
	if err != nil {
		return nil, fmt.Errorf("%w (run ./infra/dev/install-deps.sh)", err)
	}
	timeBin := "/usr/bin/time"
	if _, err := os.Stat(timeBin); err != nil {
		return nil, fmt.Errorf("GNU time is missing (run ./infra/bench/install-peers.sh): %w", err)
	}
	e := &environment{work: work, regBin: bin, timeBin: timeBin, outDir: filepath.Join(work, "out")}
	home, tmp := filepath.Join(work, "home"), filepath.Join(work, "tmp")
	for _, d := range []string{home, tmp, e.outDir, filepath.Join(work, "registry")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	e.toolEnv = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"TMPDIR=" + tmp,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_RUNTIME_DIR=" + tmp,
	}
	if e.registry, err = regtest.Launch(ctx, bin, filepath.Join(work, "registry")); err != nil {
		return nil, fmt.Errorf("starting the registry: %w", err)
	}
	logf("registry on %s", e.registry.Host)
	return e, nil
}

func (e *environment) close() {
	if e.registry != nil {
		e.registry.Stop()
	}
}

// push writes every case's image to the registry; a cached case re-tags the image
// of its cold case, so its manifest digest (and every blob) is the same.
func (e *environment) push(ctx context.Context, cases []*benchCase) error {
	byName := map[string]*benchCase{}
	for _, c := range allCases() {
		byName[c.name] = c
	}
	for _, c := range cases {
		byName[c.name] = c
	}
	for _, c := range cases {
		if c.image.Manifest.Digest != "" {
			continue // pushed for an earlier part of the bench
		}
		c.ref = e.registry.Ref(c.repo, c.tag)
		start := time.Now()
		if c.cachedOf != "" {
			cold := byName[c.cachedOf]
			if cold.image.Manifest.Digest == "" {
				return fmt.Errorf("case %s: its cold case %s was not pushed", c.name, cold.name)
			}
			if err := retag(ctx, e.registry.URL(), c.repo, cold.tag, c.tag, cold.image.Manifest); err != nil {
				return err
			}
			c.image = cold.image
			logf("tagged %s as %s (same manifest %s)", cold.ref, c.ref, c.image.Manifest.Digest)
			continue
		}
		p, err := regtest.WriteLarge(ctx, e.registry.Dest(c.repo, c.tag), c.layers)
		if err != nil {
			return fmt.Errorf("pushing %s: %w", c.ref, err)
		}
		c.image = p.Images[0]
		logf("pushed %s: %d layers, %s, in %s", c.ref, len(c.image.Layers), formatBytes(layerBytes(c.image)), time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

func layerBytes(img regtest.Image) int64 {
	var n int64
	for _, l := range img.Layers {
		n += l.Size
	}
	return n
}

// retag puts the manifest of repo:from under repo:to as exact bytes and checks
// that the registry answers with the same digest.
func retag(ctx context.Context, base, repo, from, to string, want regtest.Blob) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/manifests/"+from, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", want.MediaType)
	raw, _, err := roundTrip(req, http.StatusOK)
	if err != nil {
		return fmt.Errorf("reading manifest %s:%s: %w", repo, from, err)
	}
	req, err = http.NewRequestWithContext(ctx, http.MethodPut, base+"/v2/"+repo+"/manifests/"+to, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", want.MediaType)
	_, hdr, err := roundTrip(req, http.StatusCreated)
	if err != nil {
		return fmt.Errorf("tagging %s:%s: %w", repo, to, err)
	}
	if got := hdr.Get("Docker-Content-Digest"); got != want.Digest {
		return fmt.Errorf("tagging %s:%s: the registry stored %s, want %s", repo, to, got, want.Digest)
	}
	return nil
}

func roundTrip(req *http.Request, want int) ([]byte, http.Header, error) {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != want {
		return nil, nil, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(body))
	}
	return body, resp.Header, nil
}

func diskFree(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * st.Bsize
}
