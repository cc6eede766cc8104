// Package daemon is the test kits' one way to run a server process: on a
// free loopback port (or an address of its own), with its output kept for
// failure messages, killed with the test (or with the test binary, should
// that die first) and waited for until it answers. It also finds the
// external tools the kits run (Binary).
//
// Every server kit is a thin spec over this (the registry, dynalite,
// versitygw, moto, the Lambda emulator, containerd, and the bench's
// tarport), so each gets the same port retry, startup wait and cleanup.
package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spec says how to run and probe one server.
type Spec struct {
	Name string // for messages
	Bin  string
	// Args returns the command line for a server listening on addr ("127.0.0.1:PORT").
	Args func(addr string) []string
	// Addr, when set, is the address (or socket path) the server listens
	// on, instead of a free loopback port: a restart on the same address,
	// or a unix socket.
	Addr string
	Env  []string // the whole environment; nil inherits the test's
	Dir  string
	// Ready returns nil once the server on addr answers; it is polled.
	Ready func(ctx context.Context, addr string) error
	// StartTimeout bounds the wait for Ready (default 30 s).
	StartTimeout time.Duration
	// KillGroup kills the server's children with it on Stop, for servers
	// that start processes of their own (the Lambda emulator runs the
	// function's bootstrap).
	KillGroup bool
	// Term, when set, makes Stop ask the server to end with SIGTERM, as an
	// operator would, and kill it only after Term has passed.
	Term time.Duration
	// Output, when set, also receives everything the server prints.
	Output io.Writer
	// OwnGroup runs the server in a process group of its own, so a ^C to
	// go test reaches it only through the test's cleanup (which stops
	// servers in order), not all at once.
	OwnGroup bool
}

// Daemon is one running server.
type Daemon struct {
	Addr string
	log  SyncBuffer

	pid    int
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done closes
}

// Start runs spec on a free port (or on spec.Addr) and waits until it is
// ready. A free port taken between finding it and the server binding it
// costs one more try, not a flaky test. The process lives until Stop or
// until ctx is done.
func Start(ctx context.Context, spec Spec) (*Daemon, error) {
	if spec.StartTimeout == 0 {
		spec.StartTimeout = 30 * time.Second
	}
	if spec.KillGroup && spec.Term > 0 {
		return nil, fmt.Errorf("starting %s: KillGroup kills at once, Term asks first: choose one", spec.Name)
	}
	if spec.Addr != "" {
		d := &Daemon{Addr: spec.Addr}
		return d, d.run(ctx, spec)
	}
	var lastErr error
	for range 3 {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		d := &Daemon{Addr: addr}
		if lastErr = d.run(ctx, spec); lastErr == nil {
			return d, nil
		}
		if !strings.Contains(strings.ToLower(d.Log()), "address already in use") &&
			!strings.Contains(d.Log(), "EADDRINUSE") {
			break
		}
	}
	return nil, lastErr
}

// Log is what the server printed so far.
func (d *Daemon) Log() string { return d.log.String() }

// Pid is the server's process id, for reading its /proc entries.
func (d *Daemon) Pid() int { return d.pid }

// Stop kills the server and waits for it. Stopping twice is fine.
func (d *Daemon) Stop() {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.cancel = nil
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (d *Daemon) run(ctx context.Context, spec Spec) error {
	pctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(pctx, spec.Bin, spec.Args(d.Addr)...)
	cmd.Env, cmd.Dir = spec.Env, spec.Dir
	var out io.Writer = &d.log
	if spec.Output != nil {
		out = io.MultiWriter(&d.log, spec.Output)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if spec.Term > 0 {
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = spec.Term
	}
	dieWithParent(cmd, spec.OwnGroup)
	if spec.KillGroup {
		killGroup(cmd)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return fmt.Errorf("running %s: %w", spec.Bin, err)
	}
	d.pid, d.cancel, d.done = cmd.Process.Pid, cancel, make(chan struct{})
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()

	deadline := time.Now().Add(spec.StartTimeout)
	for {
		probeCtx, stop := context.WithTimeout(ctx, 2*time.Second)
		err := spec.Ready(probeCtx, d.Addr)
		stop()
		if err == nil {
			return nil
		}
		select {
		case <-d.done:
			d.Stop()
			return fmt.Errorf("%s on %s exited during startup: %v\n%s output:\n%s", spec.Name, d.Addr, d.err, spec.Name, d.Log())
		case <-ctx.Done():
			d.Stop()
			return fmt.Errorf("waiting for %s on %s: %w", spec.Name, d.Addr, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			d.Stop()
			return fmt.Errorf("%s on %s not ready after %s (last probe: %v)\n%s output:\n%s", spec.Name, d.Addr, spec.StartTimeout, err, spec.Name, d.Log())
		}
	}
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// SyncBuffer is a bytes.Buffer safe for one writer goroutine and concurrent
// readers: a child process's or a logger's output that a test reads.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// HTTPReady is a Ready probe: a GET of scheme://addr+path through client
// (nil: http.DefaultClient) that answers with one of statuses (none
// given: any answer will do).
func HTTPReady(client *http.Client, scheme, path string, statuses ...int) func(ctx context.Context, addr string) error {
	if client == nil {
		client = http.DefaultClient
	}
	return func(ctx context.Context, addr string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if len(statuses) > 0 && !slices.Contains(statuses, resp.StatusCode) {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return nil
	}
}
