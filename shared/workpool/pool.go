// Package workpool is the queue of local mode: a bounded pool of
// goroutines in place of SQS and the assemble Lambdas. Like SQS it
// redelivers a task whose handler returned an error, a few times.
//
// Work is shared fairly between flows (a flow is one registry host and one
// client): waiting tasks start in round-robin order across flows, and a
// flow with nothing running may start one task on a spare slot when every
// worker is busy, one spare slot per client at a time. So a few slow
// registries (or one client asking for many huge images from many) can
// hold the workers, but never keep a small image of a healthy registry
// waiting: it starts at once, while the slow ones crawl.
package workpool

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// Handler runs one task; an error asks for redelivery.
type Handler func(ctx context.Context, t download.Task) error

// DeadLetter gets a task that failed every delivery, as an SQS dead-letter
// queue would, so its job can be failed instead of hanging.
type DeadLetter func(ctx context.Context, t download.Task, err error) error

// Pool runs tasks on a bounded number of goroutines.
type Pool struct {
	handler  Handler
	dead     DeadLetter
	attempts int
	backoff  func(attempt int) time.Duration
	log      *slog.Logger
	workers  int // slots any flow may take
	spare    int // more slots, each for a flow with nothing running
	wg       sync.WaitGroup
	ctx      context.Context // the pool's life; Close cancels it
	cancel   context.CancelFunc

	mu        sync.Mutex
	waiting   map[string][]delivery // by flow, oldest first
	queued    int                   // tasks waiting
	queuedBy  map[string]int        // tasks waiting, by client
	ring      []string              // flows with waiting tasks, in turn order
	running   map[string]int        // by flow
	spareBy   map[string]bool       // clients with a task on a spare slot
	busy      int                   // tasks on worker slots
	spareBusy int                   // tasks on spare slots
}

type delivery struct {
	task    download.Task
	attempt int
	spare   bool // running on a spare slot
}

var _ download.Queue = (*Pool)(nil)

// Bounds of the waiting tasks: Enqueue refuses (never waits for room: a
// request waiting on a full queue is one more thing a client could hold)
// tasks beyond queueCap in all, or beyond clientCap of one client, which
// is four images of MaxLayers.
const (
	queueCap  = 16_384
	clientCap = 4 * download.MaxLayers
)

// New starts a pool of workers slots (and as many spare ones) running
// handler.
func New(workers int, handler Handler, dead DeadLetter, log *slog.Logger) *Pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{
		handler: handler, dead: dead, attempts: tarport.PoolDeliveries, log: log,
		backoff: func(attempt int) time.Duration { return time.Duration(attempt) * time.Second },
		workers: workers, spare: workers,
		ctx: ctx, cancel: cancel,
		waiting: map[string][]delivery{}, queuedBy: map[string]int{}, running: map[string]int{}, spareBy: map[string]bool{},
	}
}

// flow is who a task's work is shared out by: its registry host and the
// client that asked for its job.
func flow(t download.Task) string {
	host, _, _ := strings.Cut(t.Ref, "/")
	return host + "\x00" + t.Client
}

// Enqueue hands tasks to the pool without waiting for them to run: all of
// them, or, past the queue's bounds, none (a coded error: 429 for a
// client's own bound, 503 for the server's).
func (p *Pool) Enqueue(ctx context.Context, tasks []download.Task) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return context.Canceled // a closed pool runs nothing
	}
	byClient := map[string]int{}
	for _, t := range tasks {
		byClient[t.Client]++
	}
	for c, n := range byClient {
		if c != "" && p.queuedBy[c]+n > clientCap {
			e := tarport.Errorf(tarport.CodeRateLimited, "%d layers of your downloads are waiting to start; ask again when some are done", p.queuedBy[c])
			e.RetryAfter = 60
			return e
		}
	}
	if p.queued+len(tasks) > queueCap {
		e := tarport.Errorf(tarport.CodeUnavailable, "the server has %d layers waiting to download; try again later", p.queued)
		e.RetryAfter = 60
		return e
	}
	for _, t := range tasks {
		p.push(delivery{task: t, attempt: 1})
	}
	p.dispatch()
	return nil
}

// push queues d. Called with p.mu held.
func (p *Pool) push(d delivery) {
	f := flow(d.task)
	if len(p.waiting[f]) == 0 {
		p.ring = append(p.ring, f)
	}
	p.waiting[f] = append(p.waiting[f], d)
	p.queued++
	p.queuedBy[d.task.Client]++
}

// dispatch starts waiting tasks while there are slots for them: a worker
// slot goes to the flow whose turn it is; a spare slot only to a flow with
// nothing running. Called with p.mu held.
func (p *Pool) dispatch() {
	for p.ctx.Err() == nil {
		i := p.next()
		if i < 0 {
			return
		}
		f := p.ring[i]
		q := p.waiting[f]
		d := q[0]
		p.ring = slices.Delete(p.ring, i, i+1)
		if len(q) == 1 {
			delete(p.waiting, f)
		} else {
			p.waiting[f] = q[1:]
			p.ring = append(p.ring, f) // its next task waits for its next turn
		}
		d.spare = p.busy >= p.workers
		if d.spare {
			p.spareBusy++
			p.spareBy[d.task.Client] = true
		} else {
			p.busy++
		}
		p.running[f]++
		p.queued--
		if p.queuedBy[d.task.Client]--; p.queuedBy[d.task.Client] == 0 {
			delete(p.queuedBy, d.task.Client)
		}
		p.wg.Add(1)
		go p.run(d)
	}
}

// next is the ring index of the flow to start a task of, or -1.
func (p *Pool) next() int {
	if len(p.ring) == 0 {
		return -1
	}
	if p.busy < p.workers {
		return 0
	}
	if p.spareBusy >= p.spare {
		return -1
	}
	for i, f := range p.ring {
		if p.running[f] == 0 && !p.spareBy[p.waiting[f][0].task.Client] {
			return i
		}
	}
	return -1
}

// run delivers one task, then frees its slot for the next.
func (p *Pool) run(d delivery) {
	defer p.wg.Done()
	err := p.handler(p.ctx, d.task)
	p.mu.Lock()
	f := flow(d.task)
	if p.running[f]--; p.running[f] == 0 {
		delete(p.running, f)
	}
	if d.spare {
		p.spareBusy--
		delete(p.spareBy, d.task.Client)
	} else {
		p.busy--
	}
	p.dispatch()
	p.mu.Unlock()
	if err == nil || p.ctx.Err() != nil {
		return
	}
	if d.attempt >= p.attempts {
		p.log.Error("task failed every delivery", "job", d.task.JobID, "layer", d.task.Layer, "err", err)
		if derr := p.dead(p.ctx, d.task, err); derr != nil {
			p.log.Error("could not fail the job of a dead task", "job", d.task.JobID, "err", derr)
		}
		return
	}
	p.log.Warn("task failed, redelivering", "job", d.task.JobID, "layer", d.task.Layer, "attempt", d.attempt, "err", err)
	p.wg.Add(1)
	go p.redeliver(delivery{task: d.task, attempt: d.attempt + 1}, p.backoff(d.attempt+1))
}

// redeliver queues d again after a wait; a task already admitted is not
// refused for the queue's bounds.
func (p *Pool) redeliver(d delivery, after time.Duration) {
	defer p.wg.Done()
	select {
	case <-time.After(after):
	case <-p.ctx.Done():
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() == nil {
		p.push(d)
		p.dispatch()
	}
}

// Close stops the pool, canceling tasks in flight and dropping waiting
// ones; unfinished jobs are resumed from the job store at the next start.
func (p *Pool) Close() {
	p.cancel()
	p.wg.Wait()
}
