package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tarport/tarport/shared/testkit/daemon"
)

// toolNames is the order in which tools take turns on every case, so background
// noise falls on all of them alike.
var toolNames = []string{"tarport", "crane", "skopeo", "regctl"}

// tool downloads one case's image to a tar file and says what it cost.
type tool interface {
	name() string
	// download writes c's image to out and measures it.
	download(ctx context.Context, c *benchCase, out string) (result, error)
	// oci says whether the tar must also be an OCI layout (index.json, oci-layout).
	oci() bool
	endRound()
	close()
}

// result is one measured download.
type result struct {
	wall    time.Duration // request to complete tar on disk
	ready   time.Duration // tarport only: request to job ready
	first   time.Duration // tarport only: request to the tar's first byte
	cpu     time.Duration // user+sys of the tool (tarport: the server)
	client  time.Duration // tarport only: user+sys of the client (curl) fetching the tar
	peakRSS int64         // bytes
	tarSize int64
}

func (r result) summary() string {
	s := fmt.Sprintf("wall %6.2fs  cpu %6.2fs  rss %7s  tar %s", r.wall.Seconds(), r.cpu.Seconds(), formatBytes(r.peakRSS), formatBytes(r.tarSize))
	if r.ready > 0 {
		s += fmt.Sprintf("  (ready %.2fs, first byte %.2fs, curl cpu %.2fs)", r.ready.Seconds(), r.first.Seconds(), r.client.Seconds())
	}
	return s
}

func (e *environment) tools(names []string, cases []*benchCase) ([]tool, error) {
	var out []tool
	for _, n := range names {
		switch n {
		case "tarport":
			t, err := newTarport(e, cases)
			if err != nil {
				return nil, err
			}
			out = append(out, t)
		default:
			bin, err := daemon.FindBinary(n)
			if err != nil {
				return nil, fmt.Errorf("%w (run ./infra/bench/install-peers.sh)", err)
			}
			out = append(out, &peer{tool: n, bin: bin, env: e})
		}
	}
	return out, nil
}

// measure runs one download into the output directory, checks the tar and
// removes it again.
func (e *environment) measure(ctx context.Context, t tool, c *benchCase) (result, error) {
	out := filepath.Join(e.outDir, t.name()+"-"+c.name+".tar")
	os.Remove(out)
	defer os.Remove(out)
	// Flush what earlier runs left dirty, so no run pays for another's writeback.
	syscall.Sync()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	r, err := t.download(ctx, c, out)
	if err != nil {
		return r, err
	}
	if r.tarSize, err = verifyTar(out, c, t.oci()); err != nil {
		return r, fmt.Errorf("checking the tar: %w", err)
	}
	return r, nil
}

// peer is one of the CLI tools tarport is compared with, run under GNU time.
type peer struct {
	tool string
	bin  string
	env  *environment
}

func (p *peer) name() string { return p.tool }
func (p *peer) oci() bool    { return false }
func (p *peer) endRound()    {}
func (p *peer) close()       {}

func (p *peer) args(c *benchCase, out string) []string {
	host := p.env.registry.Host
	switch p.tool {
	case "crane":
		return []string{p.bin, "pull", "--insecure", "--platform", "linux/amd64", "--format", "tarball", c.ref, out}
	case "skopeo":
		return []string{p.bin, "copy", "--quiet", "--insecure-policy", "--src-tls-verify=false",
			"--override-os", "linux", "--override-arch", "amd64",
			"docker://" + c.ref, "docker-archive:" + out + ":" + c.ref}
	case "regctl":
		return []string{p.bin, "--host", "reg=" + host + ",tls=disabled", "image", "export", "--platform", "linux/amd64", c.ref, out}
	}
	panic("unknown peer " + p.tool)
}

func (p *peer) download(ctx context.Context, c *benchCase, out string) (result, error) {
	u, err := p.env.timed(ctx, p.args(c, out)...)
	if err != nil {
		return result{}, err
	}
	return result{wall: u.wall, cpu: u.cpu, peakRSS: u.maxRSS}, nil
}
