package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tarport/tarport/shared/testkit/daemon"
)

// tarportTool runs the local server (built once) as its own process, so its CPU
// and peak RSS are its own. Every cold case gets a fresh server and data
// directory; a cached case runs on the server its cold case left behind.
type tarportTool struct {
	env     *environment
	bin     string
	serial  int
	needed  map[string]bool    // cold cases whose server a cached case reuses
	waiting map[string]*server // those servers, until their cached case has run
	client  *http.Client
}

func newTarport(e *environment, cases []*benchCase) (*tarportTool, error) {
	t := &tarportTool{
		env:     e,
		bin:     filepath.Join(e.work, "tarport"),
		needed:  map[string]bool{},
		waiting: map[string]*server{},
		client:  &http.Client{Timeout: 30 * time.Second},
	}
	for _, c := range cases {
		if c.cachedOf != "" {
			t.needed[c.cachedOf] = true
		}
	}
	logf("building tarport (./infra/local)")
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", t.bin, "./infra/local")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building tarport: %w\n%s", err, out)
	}
	return t, nil
}

func (t *tarportTool) name() string { return "tarport" }
func (t *tarportTool) oci() bool    { return true }

// endRound stops servers kept for a cached case that was not run.
func (t *tarportTool) endRound() {
	for k, s := range t.waiting {
		s.stop()
		delete(t.waiting, k)
	}
}

func (t *tarportTool) close() { t.endRound() }

func (t *tarportTool) download(ctx context.Context, c *benchCase, out string) (result, error) {
	var srv *server
	if c.cachedOf != "" {
		srv = t.waiting[c.cachedOf]
		delete(t.waiting, c.cachedOf)
		if srv == nil {
			return result{}, fmt.Errorf("no server has downloaded %s yet", c.cachedOf)
		}
		// The peak of this case alone, not of the cold download before it.
		if err := srv.resetPeak(); err != nil {
			srv.stop()
			return result{}, err
		}
	} else {
		t.serial++
		var err error
		if srv, err = startServer(ctx, t.bin, filepath.Join(t.env.work, fmt.Sprintf("tarport-%d", t.serial)), t.env.registry.Host); err != nil {
			return result{}, err
		}
	}
	keep := false
	defer func() {
		if !keep {
			srv.stop()
		}
	}()

	r, err := t.measure(ctx, srv, c, out)
	if err != nil {
		return r, fmt.Errorf("%w\nserver log:\n%s", err, srv.logTail())
	}
	if t.needed[c.name] {
		keep = true
		t.waiting[c.name] = srv
	}
	return r, nil
}

// job is the part of the job JSON the benchmark reads.
type job struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	URL        string `json:"url"`
	TotalBytes int64  `json:"total_bytes"`
	Error      *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// measure downloads c as a user does, with the curl one-liner: the tar
// streams from /api/pull while it is built. Beside it, the job (joined by
// the same request as JSON) is polled for its ready time.
func (t *tarportTool) measure(ctx context.Context, srv *server, c *benchCase, out string) (result, error) {
	cpu0, err := srv.cpu()
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	readyc := make(chan error, 1)
	var j job
	var ready time.Duration
	go func() {
		var err error
		j, err = t.untilReady(ctx, srv, c)
		ready = time.Since(start)
		readyc <- err
	}()
	u, err := t.env.timed(ctx, "curl", "-q", "-fsS", "--no-progress-meter", "-w", "\nfirst-byte=%{time_starttransfer} job=%header{x-tarport-job}\n", "-o", out, srv.base+"/api/pull/"+c.ref+"?platform=linux/amd64")
	wall := time.Since(start)
	if err != nil {
		return result{}, err
	}
	if err := <-readyc; err != nil {
		return result{}, err
	}
	var first float64
	var pulled string
	if _, err := fmt.Sscanf(strings.TrimSpace(u.out), "first-byte=%f job=%s", &first, &pulled); err != nil {
		return result{}, fmt.Errorf("curl's report %q: %w", u.out, err)
	}
	// The pull and the poll must be one job, or the work was done twice.
	if pulled != j.ID {
		return result{}, fmt.Errorf("the pull streamed job %q, the poll watched %q", pulled, j.ID)
	}
	cpu1, err := srv.cpu()
	if err != nil {
		return result{}, err
	}
	peak, err := srv.peak()
	if err != nil {
		return result{}, err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return result{}, fmt.Errorf("downloaded tar: %w", err)
	}
	if fi.Size() != j.TotalBytes {
		return result{}, fmt.Errorf("downloaded tar has %d bytes, the job says %d", fi.Size(), j.TotalBytes)
	}
	return result{wall: wall, ready: ready, first: time.Duration(first * float64(time.Second)), cpu: cpu1 - cpu0, client: u.cpu, peakRSS: peak}, nil
}

// untilReady joins c's job through the JSON API and polls it until ready.
func (t *tarportTool) untilReady(ctx context.Context, srv *server, c *benchCase) (job, error) {
	body, _ := json.Marshal(map[string]string{"image": c.ref, "platform": "linux/amd64"})
	j, err := t.call(ctx, http.MethodPost, srv.base+"/api/downloads", body)
	if err != nil {
		return j, err
	}
	// Poll often: the small and cached cases take a fraction of a second.
	for j.Status != "ready" {
		if j.Status == "failed" {
			if j.Error != nil {
				return j, fmt.Errorf("job %s failed: %s: %s", j.ID, j.Error.Code, j.Error.Message)
			}
			return j, fmt.Errorf("job %s failed", j.ID)
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if j, err = t.call(ctx, http.MethodGet, srv.base+"/api/downloads/"+j.ID, nil); err != nil {
			return j, err
		}
	}
	return j, nil
}

func (t *tarportTool) call(ctx context.Context, method, url string, body []byte) (job, error) {
	var j job
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return j, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	raw, _, err := roundTripClient(t.client, req)
	if err != nil {
		return j, err
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return j, fmt.Errorf("%s %s: decoding %q: %w", method, url, raw, err)
	}
	return j, nil
}

func roundTripClient(c *http.Client, req *http.Request) ([]byte, int, error) {
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return nil, resp.StatusCode, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(buf.Bytes()))
	}
	return buf.Bytes(), resp.StatusCode, nil
}

// server is one running tarport local process.
type server struct {
	d       *daemon.Daemon
	base    string
	dataDir string
	logPath string
	logFile *os.File
}

func startServer(ctx context.Context, bin, dataDir, registryHost string, extraEnv ...string) (*server, error) {
	var lastErr error
	for range 3 {
		s, err := spawnServer(ctx, bin, dataDir, registryHost, extraEnv...)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func spawnServer(ctx context.Context, bin, dataDir, registryHost string, extraEnv ...string) (*server, error) {
	os.RemoveAll(dataDir)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	addr, err := daemon.FreeAddr()
	if err != nil {
		return nil, err
	}
	s := &server{base: "http://" + addr, dataDir: dataDir, logPath: dataDir + ".log"}
	if s.logFile, err = os.Create(s.logPath); err != nil {
		return nil, err
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dataDir,
		"TARPORT_ADDR=" + addr,
		"TARPORT_DATA_DIR=" + dataDir,
		"TARPORT_INSECURE_REGISTRIES=" + registryHost,
		"TARPORT_LOG_LEVEL=warn",
	}
	// Stopped with SIGTERM, as an operator would (killed after 15 s), by
	// stop only: a server outlives the case that started it when the next
	// case (a new tag of the same image) reuses its cache.
	s.d, err = daemon.Start(context.WithoutCancel(ctx), daemon.Spec{
		Name:         "tarport",
		Bin:          bin,
		Addr:         addr,
		Args:         func(string) []string { return nil },
		Env:          append(env, extraEnv...),
		Output:       s.logFile,
		Term:         15 * time.Second,
		StartTimeout: 20 * time.Second,
		Ready:        daemon.HTTPReady(nil, "http", "/api/health", http.StatusOK),
	})
	if err != nil {
		s.logFile.Close()
		return nil, err
	}
	return s, nil
}

func (s *server) stop() {
	s.d.Stop()
	s.logFile.Close()
	os.RemoveAll(s.dataDir)
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// cpu is the server's user+sys time so far: the server lives across
// cases, so a case's CPU is the difference around it.
func (s *server) cpu() (time.Duration, error) { return procCPU(s.d.Pid()) }

// peak is the server's peak resident set (VmHWM) in bytes.
func (s *server) peak() (int64, error) { return procPeak(s.d.Pid()) }

// resetPeak sets the server's VmHWM back to its current RSS.
func (s *server) resetPeak() error { return resetPeak(s.d.Pid()) }

// procCPU is a process's user+sys time so far, from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the CPU time of %d: %w", pid, err)
	}
	// The command name may hold spaces: fields count from after its ")".
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("reading the CPU time of %d: no ')' in stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("reading the CPU time of %d: short stat", pid)
	}
	// Fields 14 and 15 of stat (utime, stime) in clock ticks of 1/100 s
	// (USER_HZ is 100 on every Linux architecture Go supports here).
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("reading the CPU time of %d: %w", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// procPeak is a process's peak resident set (VmHWM) in bytes.
func procPeak(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the peak RSS of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("reading the peak RSS of %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("reading the peak RSS of %d: no VmHWM", pid)
}

// resetPeak sets a process's VmHWM back to its current RSS (proc(5),
// clear_refs "5").
func resetPeak(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("resetting the peak RSS of %d: %w", pid, err)
	}
	return nil
}
