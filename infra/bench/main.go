// Command bench compares tarport's local server with crane, skopeo and regctl on
// the same local registry and images: wall time from the request to a complete
// tar file on disk, CPU and peak RSS, for a small, a 1 GiB, a 2 GiB and a cached
// (same image, new tag) download. `make bench` runs it; it prints a markdown
// table and writes it into docs/BENCHMARKS.md between the bench markers.
// With -aws (the default) it also runs the 1 GiB image through the AWS
// path on loopback (aws.go) and writes that section between its markers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tarport/tarport/shared/settings"
	"github.com/tarport/tarport/shared/testkit/daemon"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	runs    int
	cases   []string
	tools   []string
	doc     string
	keep    bool
	workDir string
	search  bool
	aws     bool
	workers int
	verify  string
}

func parseFlags() (options, error) {
	var o options
	var cases, tools string
	flag.IntVar(&o.runs, "runs", 3, "runs of every tool on every case (median and best are reported)")
	flag.StringVar(&cases, "cases", strings.Join(caseNames(), ","), "comma list of cases to run")
	flag.StringVar(&tools, "tools", strings.Join(toolNames, ","), "comma list of tools to run")
	flag.StringVar(&o.doc, "doc", "docs/BENCHMARKS.md", "markdown file whose bench section is rewritten (empty: print only)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (registry storage, tars, server logs)")
	flag.StringVar(&o.workDir, "dir", "", "work directory (default: a new one under $TMPDIR)")
	flag.BoolVar(&o.search, "search", true, "also measure cached search latency (2,000 requests at concurrency 32)")
	flag.BoolVar(&o.aws, "aws", true, "also measure the AWS path on loopback (functions under the Lambda emulator, versitygw, dynalite, fake SQS) for the 1 GiB image")
	flag.IntVar(&o.workers, "aws-workers", 4, "assemble function instances polling the task queue in parallel (-aws)")
	flag.StringVar(&o.verify, "verify", "", "also measure checking a split layer of this size in S3 (versitygw), e.g. 4GiB: one stream against ranged reads ahead")
	flag.Parse()
	if o.runs < 1 {
		return o, errors.New("-runs must be at least 1")
	}
	if o.workers < 1 {
		return o, errors.New("-aws-workers must be at least 1")
	}
	o.cases = splitList(cases)
	o.tools = splitList(tools)
	for _, c := range o.cases {
		if !slices.Contains(caseNames(), c) {
			return o, fmt.Errorf("unknown case %q (have %s)", c, strings.Join(caseNames(), ", "))
		}
	}
	for _, t := range o.tools {
		if !slices.Contains(toolNames, t) {
			return o, fmt.Errorf("unknown tool %q (have %s)", t, strings.Join(toolNames, ", "))
		}
	}
	// The cached case reuses the tarport server of its cold case.
	for _, c := range allCases() {
		if c.cachedOf != "" && slices.Contains(o.cases, c.name) && !slices.Contains(o.cases, c.cachedOf) {
			return o, fmt.Errorf("case %s needs case %s before it", c.name, c.cachedOf)
		}
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	work, err := workDir(o)
	if err != nil {
		return err
	}
	if o.keep {
		logf("work directory %s (kept)", work)
	} else {
		defer os.RemoveAll(work)
	}
	env, err := newEnvironment(ctx, work)
	if err != nil {
		return err
	}
	defer env.close()

	cases := selectCases(o.cases)
	started := time.Now()
	machine := describeMachine(work)
	if err := env.push(ctx, cases); err != nil {
		return err
	}
	tools, err := env.tools(o.tools, cases)
	if err != nil {
		return err
	}
	defer func() {
		for _, t := range tools {
			t.close()
		}
	}()
	results, err := rounds(ctx, env, cases, tools, o.runs)
	if err != nil {
		return err
	}
	machine.loadEnd = loadAverage()
	machine.duration = time.Since(started)

	section := report(machine, env.versions(ctx, tools), cases, tools, results, o.runs)
	fmt.Println(section)
	if o.doc != "" && len(cases) > 0 {
		if err := writeSection(o.doc, section); err != nil {
			return err
		}
		logf("wrote %s", o.doc)
	}
	return extraSections(ctx, o, env, tools, cases, results)
}

// workDir makes the work directory (from the repository root, where the
// bench runs), checking it has room for the images and tars.
func workDir(o options) (string, error) {
	root, err := daemon.RepoRoot()
	if err != nil {
		return "", err
	}
	if err := os.Chdir(root); err != nil {
		return "", err
	}
	work := o.workDir
	if work == "" {
		if work, err = os.MkdirTemp("", "tarport-bench-"); err != nil {
			return "", err
		}
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return "", err
	}
	if work, err = filepath.Abs(work); err != nil {
		return "", err
	}
	// Registry storage (~3.1 GiB), tarport's entries and one output tar (2 GiB each).
	if free := diskFree(work); free < 10<<30 {
		if o.workDir == "" {
			os.RemoveAll(work) // made here, and empty
		}
		return "", fmt.Errorf("%s has %s free; the benchmark needs about 10 GiB", work, formatBytes(free))
	}
	return work, nil
}

// rounds measures every tool on every case, runs times, the tools taking
// turns within a round.
func rounds(ctx context.Context, env *environment, cases []*benchCase, tools []tool, runs int) (*results, error) {
	res := newResults()
	for round := 1; round <= runs; round++ {
		for _, c := range cases {
			for _, t := range tools {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				r, err := env.measure(ctx, t, c)
				if err != nil {
					return nil, fmt.Errorf("round %d, %s, %s: %w", round, c.name, t.name(), err)
				}
				res.add(c.name, t.name(), r)
				logf("round %d/%d  %-10s %-8s %s", round, runs, c.name, t.name(), r.summary())
			}
		}
		for _, t := range tools {
			t.endRound()
		}
	}
	return res, nil
}

// extraSections measures and reports what -search and -aws ask for.
func extraSections(ctx context.Context, o options, env *environment, tools []tool, cases []*benchCase, res *results) error {
	if o.search {
		var bin string
		for _, t := range tools {
			if tt, ok := t.(*tarportTool); ok {
				bin = tt.bin
			}
		}
		if bin == "" {
			return errors.New("-search needs the tarport tool")
		}
		s, err := searchBench(ctx, bin, env.work)
		if err != nil {
			return fmt.Errorf("search latency: %w", err)
		}
		fmt.Println(s)
		if o.doc != "" {
			if err := writeMarked(o.doc, searchBegin, searchEnd, s); err != nil {
				return err
			}
		}
	}
	if o.verify != "" {
		size, err := settings.ParseBytes(o.verify)
		if err != nil {
			return fmt.Errorf("-verify: %w", err)
		}
		s, err := verifyBench(ctx, env.work, size)
		if err != nil {
			return fmt.Errorf("verify: %w", err)
		}
		fmt.Println(s)
		if o.doc != "" {
			if err := writeMarked(o.doc, verifyBegin, verifyEnd, s); err != nil {
				return err
			}
		}
	}
	if o.aws {
		s, err := awsBench(ctx, env, cases, res, o.runs, o.workers)
		if err != nil {
			return fmt.Errorf("aws path: %w", err)
		}
		fmt.Println(s)
		if o.doc != "" {
			if err := writeMarked(o.doc, awsBegin, awsEnd, s); err != nil {
				return err
			}
			logf("wrote %s", o.doc)
		}
	}
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// commandOutput runs a short command (a version query) and returns its first line.
func commandOutput(ctx context.Context, env []string, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}
