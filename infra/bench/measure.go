package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// usage is what GNU time reports for one command, plus the wall time seen here.
type usage struct {
	wall   time.Duration
	cpu    time.Duration // user+sys
	maxRSS int64         // bytes
	out    string        // what the command printed
}

// timed runs argv under GNU time. Not os.ProcessState.SysUsage: Go starts
// children with vfork (CLONE_VM), and Linux carries the parent's peak RSS into
// the child's ru_maxrss at exec, so every child would look at least as big as
// this program. GNU time forks a small process instead.
func (e *environment) timed(ctx context.Context, argv ...string) (usage, error) {
	f, err := os.CreateTemp(filepath.Join(e.work, "tmp"), "time-*")
	if err != nil {
		return usage{}, err
	}
	f.Close()
	defer os.Remove(f.Name())
	args := append([]string{"-f", "%e %U %S %M", "-o", f.Name(), "--"}, argv...)
	cmd := exec.CommandContext(ctx, e.timeBin, args...)
	cmd.Env = e.toolEnv
	cmd.Dir = e.work
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return usage{}, fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, tail(out.String(), 4000))
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return usage{}, err
	}
	// The last line holds the figures; a failing command adds one before it.
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	fields := strings.Fields(lines[len(lines)-1])
	if len(fields) != 4 {
		return usage{}, fmt.Errorf("unexpected GNU time output %q", b)
	}
	user, err1 := strconv.ParseFloat(fields[1], 64)
	sys, err2 := strconv.ParseFloat(fields[2], 64)
	rss, err3 := strconv.ParseInt(fields[3], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return usage{}, fmt.Errorf("parsing GNU time output %q: %w", b, err)
	}
	return usage{
		wall:   wall,
		cpu:    time.Duration((user + sys) * float64(time.Second)),
		maxRSS: rss << 10,
		out:    out.String(),
	}, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// verifyTar checks that the tar at p is a docker-load-able image of c: a
// manifest.json naming one image whose layer entries exist with the sizes the
// registry serves (layers are uncompressed tars, which no tool should change),
// and for an OCI layout also index.json and oci-layout. Blob contents are not
// hashed: every tool verifies digests as it downloads. It returns the tar's size.
func verifyTar(p string, c *benchCase, oci bool) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size() == 0 {
		return 0, errors.New("the tar is empty")
	}
	sizes := map[string]int64{}
	var manifest []byte
	tr := tar.NewReader(f) // *os.File seeks over entry data: listing a 2 GiB tar is quick
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("reading the tar: %w", err)
		}
		name := path.Clean(h.Name)
		sizes[name] = h.Size
		if name == "manifest.json" {
			if manifest, err = io.ReadAll(io.LimitReader(tr, 1<<20)); err != nil {
				return 0, err
			}
		}
	}
	if manifest == nil {
		return 0, errors.New("the tar has no manifest.json")
	}
	var m []struct {
		Config string
		Layers []string
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return 0, fmt.Errorf("decoding manifest.json: %w", err)
	}
	if len(m) != 1 {
		return 0, fmt.Errorf("manifest.json lists %d images, want 1", len(m))
	}
	if _, ok := sizes[path.Clean(m[0].Config)]; !ok {
		return 0, fmt.Errorf("manifest.json names config %s, not in the tar", m[0].Config)
	}
	want := c.image.Layers
	if len(m[0].Layers) != len(want) {
		return 0, fmt.Errorf("manifest.json lists %d layers, the image has %d", len(m[0].Layers), len(want))
	}
	for i, l := range m[0].Layers {
		got, ok := sizes[path.Clean(l)]
		if !ok {
			return 0, fmt.Errorf("manifest.json names layer %s, not in the tar", l)
		}
		if got != want[i].Size {
			return 0, fmt.Errorf("layer %d (%s) has %d bytes, the registry serves %d", i, l, got, want[i].Size)
		}
	}
	if oci {
		for _, n := range []string{"index.json", "oci-layout"} {
			if _, ok := sizes[n]; !ok {
				return 0, fmt.Errorf("the tar has no %s", n)
			}
		}
	}
	return fi.Size(), nil
}
