// Package workpool is the queue of local mode: a bounded pool of
// goroutines in place of SQS and the assemble Lambdas. Like SQS it
// redelivers a task whose handler returned an error, a few times.
package workpool

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/tarport/tarport/shared/download"
)

// Handler runs one task; an error asks for redelivery.
type Handler func(ctx context.Context, t download.Task) error

// DeadLetter gets a task that failed every delivery, as an SQS dead-letter
// queue would, so its job can be failed instead of hanging.
type DeadLetter func(ctx context.Context, t download.Task, err error) error

// Pool runs tasks on a fixed number of goroutines.
type Pool struct {
	tasks    chan delivery
	handler  Handler
	dead     DeadLetter
	attempts int
	backoff  func(attempt int) time.Duration
	log      *slog.Logger
	wg       sync.WaitGroup
	closed   <-chan struct{} // closed by Close
	cancel   context.CancelFunc
}

type delivery struct {
	task    download.Task
	attempt int
}

var _ download.Queue = (*Pool)(nil)

// New starts workers goroutines running handler.
func New(workers int, handler Handler, dead DeadLetter, log *slog.Logger) *Pool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{tasks: make(chan delivery, 4096), handler: handler, dead: dead, attempts: 5, log: log, closed: ctx.Done(), cancel: cancel,
		backoff: func(attempt int) time.Duration { return time.Duration(attempt) * time.Second }}
	for range workers {
		p.wg.Add(1)
		go p.work(ctx)
	}
	return p
}

// Enqueue hands tasks to the pool without waiting for them to run.
func (p *Pool) Enqueue(ctx context.Context, tasks []download.Task) error {
	for _, t := range tasks {
		// Checked first: select picks at random among ready cases, and a
		// task queued after Close would never run.
		select {
		case <-p.closed:
			return context.Canceled
		default:
		}
		select {
		case p.tasks <- delivery{task: t, attempt: 1}:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.closed:
			return context.Canceled
		}
	}
	return nil
}

// work runs tasks until ctx (the pool's life) ends.
func (p *Pool) work(ctx context.Context) {
	defer p.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-p.tasks:
			err := p.handler(ctx, d.task)
			if err == nil || ctx.Err() != nil {
				continue
			}
			if d.attempt >= p.attempts {
				p.log.Error("task failed every delivery", "job", d.task.JobID, "layer", d.task.Layer, "err", err)
				if derr := p.dead(ctx, d.task, err); derr != nil {
					p.log.Error("could not fail the job of a dead task", "job", d.task.JobID, "err", derr)
				}
				continue
			}
			p.log.Warn("task failed, redelivering", "job", d.task.JobID, "layer", d.task.Layer, "attempt", d.attempt, "err", err)
			d.attempt++
			go p.redeliver(ctx, d, p.backoff(d.attempt))
		}
	}
}

func (p *Pool) redeliver(ctx context.Context, d delivery, after time.Duration) {
	select {
	case <-time.After(after):
	case <-ctx.Done():
		return
	}
	select {
	case p.tasks <- d:
	case <-ctx.Done():
	}
}

// Close stops the workers, canceling tasks in flight; unfinished jobs are
// resumed from the job store at the next start.
func (p *Pool) Close() {
	p.cancel()
	p.wg.Wait()
}
