package workpool

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// syncBuffer is a log sink safe for the pool's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records decodes the JSON log lines written so far.
func (b *syncBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	dec := json.NewDecoder(bytes.NewReader(b.buf.Bytes()))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("decoding log: %v", err)
		}
		out = append(out, m)
	}
	return out
}

func noDeadLetter(t *testing.T) DeadLetter {
	return func(_ context.Context, task download.Task, err error) error {
		t.Errorf("unexpected dead letter for %+v: %v", task, err)
		return nil
	}
}

func tasks(n int) []download.Task {
	out := make([]download.Task, n)
	for i := range out {
		out[i] = download.Task{JobID: "job", Layer: i}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConcurrencyBoundedByWorkers(t *testing.T) {
	t.Parallel()
	for _, workers := range []int{1, 3, 8} {
		t.Run(fmt.Sprint(workers, " workers"), func(t *testing.T) {
			t.Parallel()
			const n = 24
			var active, maxActive, done atomic.Int32
			gate := make(chan struct{})
			var seen sync.Map
			p := New(workers, func(ctx context.Context, task download.Task) error {
				now := active.Add(1)
				for {
					m := maxActive.Load()
					if now <= m || maxActive.CompareAndSwap(m, now) {
						break
					}
				}
				if _, dup := seen.LoadOrStore(task.Layer, true); dup {
					t.Errorf("task %d ran twice", task.Layer)
				}
				select {
				case <-gate:
				case <-ctx.Done():
				}
				active.Add(-1)
				done.Add(1)
				return nil
			}, noDeadLetter(t), discardLog())
			defer p.Close()
			if err := p.Enqueue(context.Background(), tasks(n)); err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
			// Every worker picks a task and blocks on the gate ...
			waitFor(t, "all workers busy", 5*time.Second, func() bool { return active.Load() == int32(workers) })
			// ... and no more start while they are busy.
			time.Sleep(50 * time.Millisecond)
			if got := active.Load(); got != int32(workers) {
				t.Fatalf("%d tasks running with %d workers", got, workers)
			}
			close(gate)
			waitFor(t, "all tasks done", 5*time.Second, func() bool { return done.Load() == n })
			if got := maxActive.Load(); got != int32(workers) {
				t.Fatalf("max concurrency %d, want %d", got, workers)
			}
		})
	}
}

// TestRedelivery: a task whose handler fails is delivered again, with a
// growing attempt number, until it succeeds.
func TestRedelivery(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	var calls atomic.Int32
	var times [2]time.Time
	done := make(chan struct{})
	p := New(2, func(_ context.Context, task download.Task) error {
		n := calls.Add(1)
		if n <= 2 {
			times[n-1] = time.Now()
		}
		if n == 1 {
			return errors.New("registry hiccup")
		}
		close(done)
		return nil
	}, noDeadLetter(t), slog.New(slog.NewJSONHandler(&logs, nil)))
	defer p.Close()
	if err := p.Enqueue(context.Background(), []download.Task{{JobID: "j1", Layer: 3}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("task not redelivered within 5s (%d calls)", calls.Load())
	}
	// The second delivery is the second attempt, delayed by its number
	// of seconds.
	if gap := times[1].Sub(times[0]); gap < 2*time.Second-50*time.Millisecond {
		t.Errorf("redelivered after %v, want about 2s", gap)
	}
	time.Sleep(100 * time.Millisecond)
	if got := calls.Load(); got != 2 {
		t.Fatalf("handler called %d times, want 2 (fail, then succeed)", got)
	}
	var attempts []float64
	for _, r := range logs.records(t) {
		if r["msg"] == "task failed, redelivering" {
			attempts = append(attempts, r["attempt"].(float64))
			if r["job"] != "j1" || r["layer"] != float64(3) {
				t.Errorf("redelivery log names the wrong task: %v", r)
			}
		}
	}
	if len(attempts) != 1 || attempts[0] != 1 {
		t.Fatalf("redelivery log attempts = %v, want [1]", attempts)
	}
}

// TestDeadLetter: a task that fails every delivery goes to the dead letter
// func exactly once, with the task and its last error. The pool's own
// limit is 5 deliveries (2+3+4+5 = 14 s of backoff); the test lowers it
// to 3 (5 s) to stay fast.
func TestDeadLetter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		attempts  int
		wantGrown []float64 // attempt numbers logged on redelivery
	}{
		{name: "one delivery", attempts: 1, wantGrown: nil},
		{name: "three deliveries", attempts: 3, wantGrown: []float64{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var logs syncBuffer
			var calls atomic.Int32
			type letter struct {
				task download.Task
				err  error
				ctx  error
			}
			letters := make(chan letter, 10)
			failure := errors.New("digest mismatch")
			task := download.Task{JobID: "j2", Layer: 1, Ref: "docker.io/library/x:1"}
			p := New(2, func(_ context.Context, got download.Task) error {
				calls.Add(1)
				if got.JobID != task.JobID || got.Layer != task.Layer || got.Ref != task.Ref {
					t.Errorf("handler got %+v, want %+v", got, task)
				}
				return fmt.Errorf("fetching: %w", failure)
			}, func(ctx context.Context, got download.Task, err error) error {
				letters <- letter{got, err, ctx.Err()}
				return nil
			}, slog.New(slog.NewJSONHandler(&logs, nil)))
			defer p.Close()
			p.attempts = tt.attempts // published to the workers by Enqueue's channel send
			if err := p.Enqueue(context.Background(), []download.Task{task}); err != nil {
				t.Fatal(err)
			}
			var l letter
			select {
			case l = <-letters:
			case <-time.After(time.Duration(tt.attempts*(tt.attempts+1)/2+3) * time.Second):
				t.Fatalf("no dead letter (%d calls)", calls.Load())
			}
			if l.task.JobID != task.JobID || l.task.Layer != task.Layer || !errors.Is(l.err, failure) || l.ctx != nil {
				t.Fatalf("dead letter = %+v, err %v, ctx err %v; want the task, its error, a live context", l.task, l.err, l.ctx)
			}
			// Exactly once, and nothing scheduled after it: a redelivery
			// is logged before it is scheduled, so after Close (which waits
			// for the workers) the log is complete without sleeping.
			p.Close()
			if n := len(letters); n != 0 {
				t.Fatalf("%d more dead letters, want exactly one", n)
			}
			if got := calls.Load(); got != int32(tt.attempts) {
				t.Fatalf("handler called %d times, want %d", got, tt.attempts)
			}
			var grown []float64
			gaveUp := 0
			for _, r := range logs.records(t) {
				switch r["msg"] {
				case "task failed, redelivering":
					grown = append(grown, r["attempt"].(float64))
				case "task failed every delivery":
					gaveUp++
				}
			}
			if fmt.Sprint(grown) != fmt.Sprint(tt.wantGrown) || gaveUp != 1 {
				t.Fatalf("logged redelivery attempts %v and %d give-ups, want %v and 1", grown, gaveUp, tt.wantGrown)
			}
		})
	}
}

func TestDefaultAttempts(t *testing.T) {
	t.Parallel()
	p := New(1, func(context.Context, download.Task) error { return nil }, noDeadLetter(t), discardLog())
	defer p.Close()
	if p.attempts != tarport.PoolDeliveries {
		t.Fatalf("default deliveries = %d, want tarport.PoolDeliveries = %d", p.attempts, tarport.PoolDeliveries)
	}
}

// TestCloseCancelsRunningHandlers: Close cancels the context of handlers
// in flight, waits for them, and neither redelivers nor dead-letters the
// canceled tasks.
func TestCloseCancelsRunningHandlers(t *testing.T) {
	t.Parallel()
	const workers = 3
	var started, canceled, calls atomic.Int32
	p := New(workers, func(ctx context.Context, _ download.Task) error {
		calls.Add(1)
		started.Add(1)
		<-ctx.Done()
		if errors.Is(ctx.Err(), context.Canceled) {
			canceled.Add(1)
		}
		return ctx.Err()
	}, noDeadLetter(t), discardLog())
	if err := p.Enqueue(context.Background(), tasks(10)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "workers busy", 5*time.Second, func() bool { return started.Load() == workers })

	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	// Close waited for the handlers: all of them saw the cancellation.
	if got := canceled.Load(); got < workers {
		t.Fatalf("%d handlers saw their context canceled before Close returned, want at least %d", got, workers)
	}
	n := calls.Load()
	time.Sleep(100 * time.Millisecond)
	if calls.Load() != n {
		t.Fatal("handlers ran after Close returned")
	}
}

// TestCloseIdle: closing a pool with nothing to do returns at once.
func TestCloseIdle(t *testing.T) {
	t.Parallel()
	p := New(4, func(context.Context, download.Task) error { return nil }, noDeadLetter(t), discardLog())
	start := time.Now()
	p.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
}

// TestCloseStopsPendingRedelivery: a task waiting for its redelivery is
// dropped by Close (its job resumes from the store at the next start).
func TestCloseStopsPendingRedelivery(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	p := New(1, func(context.Context, download.Task) error {
		calls.Add(1)
		return errors.New("fail")
	}, noDeadLetter(t), discardLog())
	if err := p.Enqueue(context.Background(), tasks(1)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first delivery", 5*time.Second, func() bool { return calls.Load() == 1 })
	p.Close()
	time.Sleep(2500 * time.Millisecond) // past the 2 s redelivery delay
	if got := calls.Load(); got != 1 {
		t.Fatalf("handler called %d times after Close, want 1", got)
	}
}

// TestEnqueueRefusesBeyondItsBounds: a full queue refuses at once, with a
// coded error, instead of holding the request until there is room (a
// client filling the queue would hold everyone's requests): past a
// client's own bound that client gets 429, past the server's everyone
// gets 503; a refused batch adds nothing, and other clients go on.
func TestEnqueueRefusesBeyondItsBounds(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	p := New(1, func(context.Context, download.Task) error { <-block; return nil }, noDeadLetter(t), discardLog())
	defer func() {
		close(block)
		p.Close()
	}()
	of := func(client string, n int) []download.Task {
		out := tasks(n)
		for i := range out {
			out[i].Client = client
		}
		return out
	}
	queued := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.queued
	}
	if err := p.Enqueue(context.Background(), of("198.51.100.1", clientCap)); err != nil {
		t.Fatalf("a client's first %d tasks: %v", clientCap, err)
	}
	before := queued()
	start := time.Now()
	err := p.Enqueue(context.Background(), of("198.51.100.1", 2))
	var coded *tarport.Error
	if !errors.As(err, &coded) || coded.Code != tarport.CodeRateLimited || coded.RetryAfter <= 0 {
		t.Fatalf("past the client's bound: %v, want rate_limited with a Retry-After", err)
	}
	if time.Since(start) > time.Second || queued() != before {
		t.Fatalf("the refusal took %v and queued %d tasks; want at once, none", time.Since(start), queued()-before)
	}
	if err := p.Enqueue(context.Background(), of("198.51.100.2", 10)); err != nil {
		t.Fatalf("another client: %v", err)
	}
	// Tasks of no client (a resumed job, the warm) count only to the
	// server's bound, which then refuses everyone.
	if err := p.Enqueue(context.Background(), of("", queueCap-queued())); err != nil {
		t.Fatalf("filling the queue: %v", err)
	}
	err = p.Enqueue(context.Background(), of("198.51.100.3", 1))
	if !errors.As(err, &coded) || coded.Code != tarport.CodeUnavailable || coded.RetryAfter <= 0 {
		t.Fatalf("a full queue: %v, want service_unavailable with a Retry-After", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Enqueue(ctx, of("198.51.100.4", 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Enqueue with a canceled context: %v", err)
	}
}

// TestEnqueueAfterClose: a closed pool runs nothing, so Enqueue must say
// so instead of accepting tasks that will never run.
func TestEnqueueAfterClose(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	accepted := 0
	const tries = 50
	for range tries {
		p := New(1, func(context.Context, download.Task) error { calls.Add(1); return nil }, noDeadLetter(t), discardLog())
		p.Close()
		// A closed pool refuses every task: one accepted here would be
		// dropped silently (never run, never dead-lettered).
		if err := p.Enqueue(context.Background(), tasks(1)); err == nil {
			accepted++
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("Enqueue after Close: %v, want context.Canceled", err)
		}
	}
	if accepted > 0 {
		t.Fatalf("Enqueue after Close returned nil in %d of %d tries (%d tasks ran); want an error every time", accepted, tries, calls.Load())
	}
}

// TestSpareSlotForAFlowWithNothingRunning: with every worker held by one
// slow flow, a task of another flow (registry and client) starts at once
// on a spare slot; a flow that already runs a task waits its turn, and the
// spare slots are bounded.
func TestSpareSlotForAFlowWithNothingRunning(t *testing.T) {
	t.Parallel()
	const workers = 2
	release := make(chan struct{})
	var mu sync.Mutex
	started := map[string]int{}
	p := New(workers, func(ctx context.Context, task download.Task) error {
		mu.Lock()
		started[task.Ref]++
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, noDeadLetter(t), discardLog())
	defer p.Close()
	count := func(ref string) int {
		mu.Lock()
		defer mu.Unlock()
		return started[ref]
	}
	slow := []download.Task{{JobID: "s", Ref: "slow.example/x:1"}, {JobID: "s", Ref: "slow.example/x:1"}, {JobID: "s", Ref: "slow.example/x:1"}}
	if err := p.Enqueue(context.Background(), slow); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the slow flow on every worker", 5*time.Second, func() bool { return count("slow.example/x:1") == workers })
	fast := download.Task{JobID: "f", Ref: "fast.example/y:1", Client: "203.0.113.9"}
	if err := p.Enqueue(context.Background(), []download.Task{fast, fast}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new flow's first task", 5*time.Second, func() bool { return count(fast.Ref) == 1 })
	// A client holds one spare slot at a time, whatever registries it
	// names: this client's next registry waits.
	sameClient := download.Task{JobID: "f2", Ref: "fast2.example/y:1", Client: "203.0.113.9"}
	if err := p.Enqueue(context.Background(), []download.Task{sameClient}); err != nil {
		t.Fatal(err)
	}
	// The same registry for another client is another flow; a third flow
	// then finds the spare slots taken.
	other := download.Task{JobID: "o", Ref: "fast.example/y:1", Client: "198.51.100.4"}
	third := download.Task{JobID: "t", Ref: "third.example/z:1"}
	if err := p.Enqueue(context.Background(), []download.Task{other, third}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "another client's task", 5*time.Second, func() bool { return count(fast.Ref) == 2 })
	time.Sleep(50 * time.Millisecond)
	if n, m, k := count("third.example/z:1"), count("slow.example/x:1"), count(sameClient.Ref); n != 0 || m != workers || k != 0 {
		t.Fatalf("third flow started %d, slow flow %d, the first client's second registry %d; want 0 (no spare slot left), %d, 0 (one spare per client)", n, m, k, workers)
	}
	close(release)
	waitFor(t, "everything", 5*time.Second, func() bool {
		return count("slow.example/x:1") == 3 && count(fast.Ref) == 3 && count("third.example/z:1") == 1 && count(sameClient.Ref) == 1
	})
}

// TestRoundRobinAcrossFlows: waiting tasks start one flow at a time, in
// turn, not in the order they were queued.
func TestRoundRobinAcrossFlows(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	var mu sync.Mutex
	var order []string
	p := New(1, func(_ context.Context, task download.Task) error {
		mu.Lock()
		order = append(order, task.JobID)
		first := len(order) == 1
		mu.Unlock()
		if first {
			<-gate
		}
		return nil
	}, noDeadLetter(t), discardLog())
	defer p.Close()
	p.mu.Lock()
	p.spare = 0 // the order of worker slots alone
	p.mu.Unlock()
	var all []download.Task
	for _, id := range []string{"a1", "a2", "a3", "b1", "b2", "c1", "c2"} {
		all = append(all, download.Task{JobID: id, Ref: id[:1] + ".example/r:1"})
	}
	if err := p.Enqueue(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	close(gate)
	waitFor(t, "every task", 5*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == len(all)
	})
	if got, want := fmt.Sprint(order), "[a1 b1 c1 a2 b2 c2 a3]"; got != want {
		t.Fatalf("start order %s, want %s", got, want)
	}
}
