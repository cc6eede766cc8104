// Package daemon runs a server process for a test: on a free loopback port,
// with its output kept for failure messages, killed with the test (or with
// the test binary, should that die first) and waited for until it answers.
//
// The server kits (dynalite now; S3 and the Lambda emulator next) are thin
// specs over this, so each gets the same port-retry and cleanup behaviour.
package daemon

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/tarport/tarport/shared/testkit/regtest"
)

// Spec says how to run and probe one server.
type Spec struct {
	Name string // for messages
	Bin  string
	// Args returns the command line for a server listening on addr ("127.0.0.1:PORT").
	Args func(addr string) []string
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
}

// Daemon is one running server.
type Daemon struct {
	Addr string
	log  regtest.SyncBuffer

	pid    int
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done closes
}

// Start runs spec on a free port and waits until it is ready. A port taken
// between finding it and the server binding it costs one more try, not a
// flaky test. The process lives until Stop or until ctx is done.
func Start(ctx context.Context, spec Spec) (*Daemon, error) {
	if spec.StartTimeout == 0 {
		spec.StartTimeout = 30 * time.Second
	}
	var lastErr error
	for range 3 {
		addr, err := regtest.FreeAddr()
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
	cmd.Stdout, cmd.Stderr = &d.log, &d.log
	cmd.WaitDelay = 5 * time.Second
	dieWithParent(cmd)
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
