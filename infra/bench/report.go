package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// results holds every measurement by case and tool.
type results struct {
	runs map[[2]string][]result
}

func newResults() *results { return &results{runs: map[[2]string][]result{}} }

func (r *results) add(c, t string, x result) {
	r.runs[[2]string{c, t}] = append(r.runs[[2]string{c, t}], x)
}

func (r *results) get(c, t string) []result { return r.runs[[2]string{c, t}] }

func median(xs []time.Duration) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// pick is f of each of rs.
func pick[T any](rs []T, f func(T) time.Duration) []time.Duration {
	out := make([]time.Duration, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

// maxOf is the largest f of rs (0 for none).
func maxOf[T any](rs []T, f func(T) int64) int64 {
	var m int64
	for _, r := range rs {
		m = max(m, f(r))
	}
	return m
}

// machine describes where the figures come from.
type machine struct {
	date      time.Time
	cpus      int
	cpuModel  string
	memory    string
	kernel    string
	goVersion string
	diskFree  string
	loadStart string
	loadEnd   string
	duration  time.Duration
	balloon   bool // a virtio balloon that reports free pages to the host
}

func describeMachine(work string) machine {
	m := machine{
		date:      time.Now().UTC(),
		cpus:      runtime.NumCPU(),
		cpuModel:  procField("/proc/cpuinfo", "model name"),
		kernel:    strings.TrimSpace(readFile("/proc/sys/kernel/osrelease")),
		goVersion: runtime.Version(),
		diskFree:  formatBytes(diskFree(work)),
		loadStart: loadAverage(),
		balloon:   freePageReporting(),
	}
	if kb := procField("/proc/meminfo", "MemTotal"); kb != "" {
		var n int64
		fmt.Sscanf(kb, "%d", &n)
		m.memory = formatBytes(n << 10)
	}
	return m
}

// freePageReporting says whether a virtio balloon device offers free page
// reporting (feature bit 5): the host then discards the memory of freed pages,
// so writing a file into fresh page cache costs host page faults, and how much
// depends on what was freed before. That makes file writes slow and noisy.
func freePageReporting() bool {
	devs, _ := filepath.Glob("/sys/bus/virtio/devices/*")
	for _, d := range devs {
		if strings.TrimSpace(readFile(filepath.Join(d, "device"))) != "0x0005" {
			continue
		}
		if f := readFile(filepath.Join(d, "features")); len(f) > 5 && f[5] == '1' {
			return true
		}
	}
	return false
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// procField returns the value of the first "key: value" line of a /proc file.
func procField(p, key string) string {
	for _, line := range strings.Split(readFile(p), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func loadAverage() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// versions names what was measured: tarport's commit and every peer's version.
func (e *environment) versions(ctx context.Context, tools []tool) []string {
	out := []string{tarportVersion(ctx)}
	for _, t := range tools {
		p, ok := t.(*peer)
		if !ok {
			continue
		}
		var v string
		switch p.tool {
		case "crane":
			v = "crane " + commandOutput(ctx, e.toolEnv, p.bin, "version")
		case "skopeo":
			v = commandOutput(ctx, e.toolEnv, p.bin, "--version")
		case "regctl":
			v = "regctl " + commandOutput(ctx, e.toolEnv, p.bin, "version", "--format", "{{.VCSTag}}")
		}
		out = append(out, v)
	}
	out = append(out, "registry "+strings.TrimPrefix(commandOutput(ctx, e.toolEnv, e.regBin, "--version"), e.regBin+" "))
	return out
}

// tarportVersion names the commit measured, and whether the tree differs.
func tarportVersion(ctx context.Context) string {
	commit := commandOutput(ctx, os.Environ(), "git", "rev-parse", "--short", "HEAD")
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		commit += " + uncommitted changes"
	}
	return "tarport " + commit
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

// writeMachine describes m in a paragraph or two.
func writeMachine(b *strings.Builder, m machine) {
	fmt.Fprintf(b, "Machine: %d CPUs (%s), %s RAM, Linux %s, %s, %s free on the work disk; load average %s at the start, %s at the end (the machine is shared).\n\n",
		m.cpus, m.cpuModel, m.memory, m.kernel, m.goVersion, m.diskFree, m.loadStart, m.loadEnd)
	if m.balloon {
		b.WriteString("The machine is a VM whose virtio balloon reports free pages to the host: writing a file into fresh page cache costs host page faults, so file writes are slower and noisier than on bare metal (see Reading the figures).\n\n")
	}
}

// report renders the generated part of BENCHMARKS.md.
func report(m machine, versions []string, cases []*benchCase, tools []tool, res *results, runs int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s by `make bench` in %s: %d runs of every tool on every case, taking turns.\n\n",
		m.date.Format("2006-01-02 15:04 UTC"), m.duration.Round(time.Second), runs)
	writeMachine(&b, m)
	fmt.Fprintf(&b, "Versions: %s.\n\n", strings.Join(versions, ", "))

	b.WriteString("| image | tool | request → tar on disk, median (best) | tarport: job ready, median (best); first byte, median | CPU user+sys, median | peak RSS, max | tar |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, c := range cases {
		for _, t := range tools {
			rs := res.get(c.name, t.name())
			if len(rs) == 0 {
				continue
			}
			walls := pick(rs, func(r result) time.Duration { return r.wall })
			ready := "–"
			cpu := secs(median(pick(rs, func(r result) time.Duration { return r.cpu })))
			if t.name() == "tarport" {
				readies := pick(rs, func(r result) time.Duration { return r.ready })
				firsts := pick(rs, func(r result) time.Duration { return r.first })
				ready = fmt.Sprintf("%s (%s); first byte %s", secs(median(readies)), secs(slices.Min(readies)), secs(median(firsts)))
				total := median(pick(rs, func(r result) time.Duration { return r.cpu + r.client }))
				cpu = fmt.Sprintf("%s server + %s curl = %s", cpu, secs(median(pick(rs, func(r result) time.Duration { return r.client }))), secs(total))
			}
			fmt.Fprintf(&b, "| %s | %s | %s (%s) | %s | %s | %s | %s |\n",
				c.title, t.name(), secs(median(walls)), secs(slices.Min(walls)), ready, cpu, mib(maxOf(rs, func(r result) int64 { return r.peakRSS })), formatBytes(rs[0].tarSize))
		}
	}
	b.WriteString("\n")
	for _, v := range verdicts(cases, tools, res) {
		fmt.Fprintf(&b, "- %s\n", v)
	}
	return strings.TrimRight(b.String(), "\n")
}

// verdicts checks the figures against the targets of the benchmark issue.
func verdicts(cases []*benchCase, tools []tool, res *results) []string {
	has := func(c string) bool { return len(res.get(c, "tarport")) > 0 }
	medianOf := func(c, t string, f func(result) time.Duration) time.Duration {
		return median(pick(res.get(c, t), f))
	}
	wall := func(r result) time.Duration { return r.wall }
	met := func(ok bool) string {
		if ok {
			return "**met**"
		}
		return "**not met**"
	}
	// fastest is the fastest peer's median on case c.
	fastest := func(c string) (time.Duration, string) {
		best, bestTool := time.Duration(0), ""
		for _, t := range tools {
			if t.name() == "tarport" || len(res.get(c, t.name())) == 0 {
				continue
			}
			if w := medianOf(c, t.name(), wall); bestTool == "" || w < best {
				best, bestTool = w, t.name()
			}
		}
		return best, bestTool
	}
	var out []string
	if best, bestTool := fastest("1g"); has("1g") && bestTool != "" {
		total := medianOf("1g", "tarport", wall)
		first := medianOf("1g", "tarport", func(r result) time.Duration { return r.first })
		rd := medianOf("1g", "tarport", func(r result) time.Duration { return r.ready })
		out = append(out,
			fmt.Sprintf("Target \"a cold 1 GiB download takes no longer than the fastest peer\" (%s, %s): %s, %s to the tar on the client's disk (%+.0f%%).",
				bestTool, secs(best), met(total <= best), secs(total), percent(total, best)-100),
			fmt.Sprintf("Target \"the first byte within a quarter of the fastest peer's whole pull\" (%s): %s, %s.",
				secs(best/4), met(first <= best/4), secs(first)),
			fmt.Sprintf("Goal \"the job ready in 0.8x the fastest peer's pull\" (%s): %s, %s (%.2fx).",
				secs(best*8/10), met(rd*10 <= best*8), secs(rd), float64(rd)/float64(best)))
	}
	if best, bestTool := fastest("1g-cached"); has("1g-cached") && bestTool != "" {
		warm := medianOf("1g-cached", "tarport", wall)
		out = append(out, fmt.Sprintf("Target \"a new tag of a cached image in at most 0.8x the fastest peer\" (%s, %s; 0.8x is %s): %s, %s (%.2fx).",
			bestTool, secs(best), secs(best*8/10), met(warm*10 <= best*8), secs(warm), float64(warm)/float64(best)))
	}
	var parts []string
	var peak int64
	for _, c := range cases {
		if has(c.name) {
			p := maxOf(res.get(c.name, "tarport"), func(r result) int64 { return r.peakRSS })
			peak = max(peak, p)
			parts = append(parts, fmt.Sprintf("%s %s", c.name, mib(p)))
		}
	}
	if len(parts) > 0 {
		out = append(out, fmt.Sprintf("Target \"the server's peak RSS at most 64 MiB\": %s (%s; by case: %s).",
			met(peak <= 64<<20), mib(peak), strings.Join(parts, ", ")))
	}
	return out
}

func percent(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

const (
	beginMarker = "<!-- bench:begin -->"
	endMarker   = "<!-- bench:end -->"
)

// writeSection replaces what lies between the bench markers of doc with section,
// creating the file (or the markers, at its end) when missing.
func writeSection(doc, section string) error {
	return writeMarked(doc, beginMarker, endMarker, section)
}

// writeMarked replaces what lies between beginMarker and endMarker in doc.
func writeMarked(doc, beginMarker, endMarker, section string) error {
	old, err := os.ReadFile(doc)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	s := string(old)
	block := beginMarker + "\n" + section + "\n" + endMarker
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + s[j+len(endMarker):]
	case s == "":
		s = "# Benchmarks\n\n" + block + "\n"
	default:
		s = strings.TrimRight(s, "\n") + "\n\n" + block + "\n"
	}
	return os.WriteFile(doc, []byte(s), 0o644)
}
