// Package sqsqueue carries layer tasks over Amazon SQS, the fan-out of
// tarport on AWS: Queue sends one message per task (the download Lambda),
// Handler runs the batches Lambda's SQS event source mapping delivers (the
// assemble Lambda), reporting failed records one by one
// (ReportBatchItemFailures) and failing the jobs whose tasks reached the
// dead-letter queue. A task's registry credentials never travel in clear:
// they are sealed (see Codec), or the task is refused.
package sqsqueue

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tarport/tarport/shared/download"
)

const (
	// MaxBodyBytes is SQS's message size limit (1 MiB since August 2025),
	// which is also the limit of a whole SendMessageBatch.
	MaxBodyBytes = 1 << 20
	// MaxBatch is the most entries of a SendMessageBatch.
	MaxBatch = 10
)

// SendAPI is what Queue needs of an SQS client.
type SendAPI interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Options configure a Queue.
type Options struct {
	// Key seals task credentials (KeySize bytes). Without it a task with
	// credentials cannot be queued.
	Key []byte
	// CredsTTL is how long sealed credentials can be opened
	// (DefaultCredsTTL when 0).
	CredsTTL time.Duration
	// Attempts bounds how often an entry the service failed is sent
	// (default 5).
	Attempts int
	// Backoff is the wait before attempt n+1 (default 100 ms x n²).
	Backoff func(n int) time.Duration
}

// Queue sends layer tasks to an SQS queue.
type Queue struct {
	api      SendAPI
	url      string
	codec    *Codec
	attempts int
	backoff  func(int) time.Duration
}

var (
	_ download.Queue        = (*Queue)(nil)
	_ download.DelayedQueue = (*Queue)(nil)
)

// MaxDelay is SQS's longest message delay.
const MaxDelay = 15 * time.Minute

// New returns a Queue sending to the queue at queueURL.
func New(api SendAPI, queueURL string, opts Options) (*Queue, error) {
	codec, err := NewCodec(opts.Key, opts.CredsTTL)
	if err != nil {
		return nil, err
	}
	q := &Queue{api: api, url: queueURL, codec: codec, attempts: opts.Attempts, backoff: opts.Backoff}
	if q.attempts <= 0 {
		q.attempts = 5
	}
	if q.backoff == nil {
		q.backoff = func(n int) time.Duration { return time.Duration(n*n) * 100 * time.Millisecond }
	}
	return q, nil
}

// Enqueue sends one message per task, in batches. Every task is encoded
// before any is sent, so a task that cannot be (credentials without a key)
// sends nothing. An error means some tasks may not have been sent.
func (q *Queue) Enqueue(ctx context.Context, tasks []download.Task) error {
	return q.EnqueueAfter(ctx, 0, tasks)
}

// EnqueueAfter is Enqueue with each message delivered no sooner than
// delay (whole seconds, rounded up; at most MaxDelay) after it is sent.
// Credentials are sealed anew, so their lifetime counts from now.
func (q *Queue) EnqueueAfter(ctx context.Context, delay time.Duration, tasks []download.Task) error {
	if delay < 0 || delay > MaxDelay {
		return fmt.Errorf("queueing tasks: a delay of %s is not within 0..%s", delay, MaxDelay)
	}
	seconds := int32((delay + time.Second - 1) / time.Second)
	entries := make([]types.SendMessageBatchRequestEntry, 0, len(tasks))
	for i, t := range tasks {
		b, err := q.codec.Encode(t)
		if err != nil {
			return fmt.Errorf("queueing tasks: %w", err)
		}
		if len(b) > MaxBodyBytes {
			return fmt.Errorf("queueing layer %d of job %s: its message has %d bytes, SQS takes %d", t.Layer, t.JobID, len(b), MaxBodyBytes)
		}
		entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(b), DelaySeconds: seconds})
	}
	for len(entries) > 0 {
		n, size := 0, 0
		for n < len(entries) && n < MaxBatch && size+len(*entries[n].MessageBody) <= MaxBodyBytes {
			size += len(*entries[n].MessageBody)
			n++
		}
		if err := q.send(ctx, entries[:n]); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

// send sends one batch, sending again the entries the service failed
// (SQS fails entries of a batch now and then) but not those it refused.
func (q *Queue) send(ctx context.Context, entries []types.SendMessageBatchRequestEntry) error {
	for attempt := 1; ; attempt++ {
		out, err := q.api.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(q.url), Entries: entries})
		if err != nil {
			return fmt.Errorf("sending %d tasks to %s: %w", len(entries), q.url, err)
		}
		for _, f := range out.Failed {
			if f.SenderFault {
				return fmt.Errorf("sending a task to %s: refused: %s: %s", q.url, aws.ToString(f.Code), aws.ToString(f.Message))
			}
		}
		sent := map[string]bool{}
		for _, s := range out.Successful {
			sent[aws.ToString(s.Id)] = true
		}
		var left []types.SendMessageBatchRequestEntry
		for _, e := range entries {
			if !sent[aws.ToString(e.Id)] {
				left = append(left, e)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if attempt == q.attempts {
			code, msg := "", ""
			if len(out.Failed) > 0 {
				code, msg = aws.ToString(out.Failed[0].Code), aws.ToString(out.Failed[0].Message)
			}
			return fmt.Errorf("sending tasks to %s: %d still failed after %d attempts (%s: %s)", q.url, len(left), attempt, code, msg)
		}
		entries = left
		timer := time.NewTimer(q.backoff(attempt))
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("sending tasks to %s: %w", q.url, ctx.Err())
		case <-timer.C:
		}
	}
}
