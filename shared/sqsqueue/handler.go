package sqsqueue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// HandlerOptions configure Handler.
type HandlerOptions struct {
	// Key opens sealed credentials: the producer's Options.Key.
	Key []byte
	// DeadLetterARN is the ARN of the dead-letter queue. Its records (the
	// same function consumes it through a second event source mapping)
	// fail their jobs instead of running.
	DeadLetterARN string
	// Concurrency bounds the records run at once (default 4); each streams
	// one layer, so memory grows with it.
	Concurrency int
	// Reserve is the time kept before the invocation's deadline to answer
	// Lambda (default 2 s): a record still running then is reported failed
	// and its run canceled, so it is redelivered rather than lost with a
	// timed-out invocation.
	Reserve time.Duration
	// Log gets a line per failed, abandoned or dropped record.
	Log *slog.Logger
}

// Handler returns the Lambda handler of the task queue. It runs the
// batch's records concurrently and reports the records whose run failed in
// BatchItemFailures (by message id), so only those are redelivered; it
// never fails the whole batch unless the options are broken. A record is
// abandoned (abandon fails its job) and succeeds when it comes from the
// dead-letter queue, or when its credentials cannot be opened (expired or
// tampered: no redelivery restores them). A record that is no task message
// at all has no job to fail: it is reported failed until the dead-letter
// queue takes it, and dropped with a log line when it comes from there.
// Concurrency is how many records of a batch run at once by default; the
// template's AssembleBatchSize stays within it, so no record waits for a
// slot until the invocation's deadline fails it.
const Concurrency = 4

func Handler(run func(ctx context.Context, t download.Task) error, abandon func(ctx context.Context, t download.Task, err error) error, opts HandlerOptions) func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
	codec, keyErr := NewCodec(opts.Key, 0)
	if opts.Concurrency <= 0 {
		opts.Concurrency = Concurrency
	}
	if opts.Reserve <= 0 {
		opts.Reserve = 2 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	h := &handler{run: run, abandon: abandon, codec: codec, opts: opts}
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		if keyErr != nil {
			// Every record would fail alike: fail loudly as a whole.
			return events.SQSEventResponse{}, fmt.Errorf("handling task messages: %w", keyErr)
		}
		return h.handle(ctx, ev), nil
	}
}

type handler struct {
	run     func(ctx context.Context, t download.Task) error
	abandon func(ctx context.Context, t download.Task, err error) error
	codec   *Codec
	opts    HandlerOptions
}

type outcome struct {
	i  int
	ok bool
}

func (h *handler) handle(ctx context.Context, ev events.SQSEvent) events.SQSEventResponse {
	runCtx, cancel := context.WithCancel(ctx)
	if deadline, ok := ctx.Deadline(); ok {
		runCtx, cancel = context.WithDeadline(ctx, deadline.Add(-h.opts.Reserve))
	}
	defer cancel()

	// Buffered, so runs finishing after the cutoff do not block.
	results := make(chan outcome, len(ev.Records))
	slots := make(chan struct{}, h.opts.Concurrency)
	for i, rec := range ev.Records {
		go func() {
			select {
			case slots <- struct{}{}:
			case <-runCtx.Done():
				results <- outcome{i, false}
				return
			}
			defer func() { <-slots }()
			if runCtx.Err() != nil {
				results <- outcome{i, false}
				return
			}
			results <- outcome{i, h.record(runCtx, rec)}
		}()
	}

	done := make([]bool, len(ev.Records))
	ok := make([]bool, len(ev.Records))
collect:
	for range ev.Records {
		select {
		case o := <-results:
			done[o.i], ok[o.i] = true, o.ok
		case <-runCtx.Done():
			break collect
		}
	}
	for drained := false; !drained; { // those that finished just in time
		select {
		case o := <-results:
			done[o.i], ok[o.i] = true, o.ok
		default:
			drained = true
		}
	}
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	for i, rec := range ev.Records {
		if !done[i] {
			h.opts.Log.Warn("task still running at the deadline; leaving it for redelivery", "message", rec.MessageId)
		}
		if !ok[i] {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: rec.MessageId})
		}
	}
	return resp
}

// record handles one record and says whether it is done with.
func (h *handler) record(ctx context.Context, rec events.SQSMessage) (ok bool) {
	log := h.opts.Log.With("message", rec.MessageId, "receives", rec.Attributes["ApproximateReceiveCount"])
	defer func() {
		// A panic in a goroutine would end the whole runtime; this record
		// alone fails instead.
		if p := recover(); p != nil {
			log.Error("task panicked; leaving it for redelivery", "panic", p, "stack", string(debug.Stack()))
			ok = false
		}
	}()
	dead := h.opts.DeadLetterARN != "" && rec.EventSourceARN == h.opts.DeadLetterARN
	t, err := h.codec.Decode(rec.Body)
	if errors.Is(err, ErrUndecodable) {
		if dead && t.JobID != "" {
			// A newer version's task after a rollback, or a malformed one:
			// its job cannot finish, so it fails rather than hangs.
			log.Error("abandoning an undecodable task from the dead-letter queue", "job", t.JobID, "bytes", len(rec.Body), "err", err)
			return h.abandoned(ctx, log.With("job", t.JobID), t, tarport.Wrap(err, tarport.CodeInternal, "a task of download %s could not be read by this server", t.JobID))
		}
		if dead {
			log.Error("dropping an undecodable message from the dead-letter queue", "bytes", len(rec.Body), "err", err)
			return true
		}
		log.Warn("undecodable task message; leaving it for the dead-letter queue", "bytes", len(rec.Body), "err", err)
		return false
	}
	log = log.With("job", t.JobID, "layer", t.Layer)
	if dead {
		err := fmt.Errorf("layer %s of job %s failed every delivery and reached the dead-letter queue", t.Desc.Digest, t.JobID)
		log.Error("abandoning a task from the dead-letter queue")
		return h.abandoned(ctx, log, t, err)
	}
	if tarport.ErrorCode(err) == tarport.CodeCredentialsGone {
		log.Error("abandoning a task whose credentials cannot be opened", "err", err)
		return h.abandoned(ctx, log, t, err)
	}
	if err != nil {
		log.Error("decoding task message; leaving it for redelivery", "err", err)
		return false
	}
	if err := h.run(ctx, t); err != nil {
		log.Warn("task failed; leaving it for redelivery", "err", err)
		return false
	}
	return true
}

// abandoned fails a task's job; when that cannot be recorded the record
// is reported failed, so it comes back rather than the job hanging.
func (h *handler) abandoned(ctx context.Context, log *slog.Logger, t download.Task, cause error) bool {
	if err := h.abandon(ctx, t, cause); err != nil {
		log.Error("could not fail the job of an abandoned task; leaving it for redelivery", "err", err)
		return false
	}
	return true
}
