package sqsqueue_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/sqsqueue"
	"github.com/tarport/tarport/shared/testkit/moto"
	"github.com/tarport/tarport/shared/testkit/sqsmapping"
)

// countingAPI records the batch sizes sent through it.
type countingAPI struct {
	sqsqueue.SendAPI
	mu      sync.Mutex
	batches []int
}

func (c *countingAPI) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	c.mu.Lock()
	c.batches = append(c.batches, len(in.Entries))
	c.mu.Unlock()
	return c.SendAPI.SendMessageBatch(ctx, in, opts...)
}

// failingAPI fails the next fail entries it is given, as SQS reports a
// partial batch failure (a server fault: the sender may retry), and sends
// the rest. moto has no way to fail a send; this is the one fault here.
type failingAPI struct {
	sqsqueue.SendAPI
	mu   sync.Mutex
	fail int
}

func (f *failingAPI) failNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = n
}

func (f *failingAPI) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.mu.Lock()
	n := min(f.fail, len(in.Entries))
	f.fail -= n
	f.mu.Unlock()
	failed := make([]types.BatchResultErrorEntry, 0, n)
	for _, e := range in.Entries[:n] {
		failed = append(failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("injected"), SenderFault: false})
	}
	out := &sqs.SendMessageBatchOutput{Failed: failed}
	if n == len(in.Entries) {
		return out, nil
	}
	rest := *in
	rest.Entries = in.Entries[n:]
	sent, err := f.SendAPI.SendMessageBatch(ctx, &rest, opts...)
	if err != nil {
		return nil, err
	}
	sent.Failed = append(sent.Failed, failed...)
	return sent, nil
}

func noWait(int) time.Duration { return 0 }

func newQueue(t *testing.T, api sqsqueue.SendAPI, url string, opts sqsqueue.Options) *sqsqueue.Queue {
	t.Helper()
	q, err := sqsqueue.New(api, url, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return q
}

// receiveAll takes every message of the queue, as raw bodies by message
// id, until the queue is empty.
func receiveAll(t *testing.T, c *sqs.Client, url string) map[string]string {
	t.Helper()
	ctx := context.Background()
	bodies := map[string]string{}
	for range 100 {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		if len(out.Messages) == 0 {
			if v, f, d, err := sqsmapping.Depth(ctx, c, url); err != nil || v+f+d == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return bodies
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for _, m := range out.Messages {
			bodies[aws.ToString(m.MessageId)] = aws.ToString(m.Body)
			if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatalf("DeleteMessage: %v", err)
			}
		}
	}
	t.Fatalf("the queue did not empty")
	return nil
}

func tasks(n int) []download.Task {
	var ts []download.Task
	for i := range n {
		tk := task("job-e", i)
		if i%2 == 1 {
			tk = private(tk)
		}
		ts = append(ts, tk)
	}
	return ts
}

func TestEnqueue(t *testing.T) {
	t.Parallel()
	s := moto.Start(t)
	c := s.SQS()
	url := s.CreateQueue(t, "tasks", nil)
	api := &countingAPI{SendAPI: c}
	q := newQueue(t, api, url, sqsqueue.Options{Key: testKey})
	want := tasks(25)
	if err := q.Enqueue(context.Background(), want); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if !reflect.DeepEqual(api.batches, []int{10, 10, 5}) {
		t.Errorf("batches = %v, want [10 10 5]", api.batches)
	}
	bodies := receiveAll(t, c, url)
	if len(bodies) != 25 {
		t.Fatalf("%d messages arrived, want 25", len(bodies))
	}
	dec := codec(t, testKey, 0)
	got := make([]download.Task, 25)
	for _, b := range bodies {
		if strings.Contains(b, password) {
			t.Errorf("password in clear in a message: %s", b)
		}
		tk, err := dec.Decode(b)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		got[tk.Layer] = tk
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tasks differ after the queue:\n got %+v\nwant %+v", got, want)
	}
}

// TestEnqueueAfter: delayed tasks are held by SQS, not delivered at once;
// a delay SQS cannot hold is refused before anything is sent.
func TestEnqueueAfter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := moto.Start(t)
	c := s.SQS()
	url := s.CreateQueue(t, "tasks", nil)
	q := newQueue(t, c, url, sqsqueue.Options{Key: testKey})
	if err := q.EnqueueAfter(ctx, 1500*time.Millisecond, tasks(3)); err != nil {
		t.Fatalf("EnqueueAfter: %v", err)
	}
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
	if err != nil || len(out.Messages) != 0 {
		t.Fatalf("at once: %d messages (%v), want none yet", len(out.Messages), err)
	}
	if _, _, delayed, err := sqsmapping.Depth(ctx, c, url); err != nil || delayed != 3 {
		t.Fatalf("%d delayed (%v), want 3", delayed, err)
	}
	time.Sleep(2100 * time.Millisecond) // rounded up to 2 s
	if n := len(receiveAll(t, c, url)); n != 3 {
		t.Fatalf("%d messages after the delay, want 3", n)
	}
	for _, d := range []time.Duration{-time.Second, sqsqueue.MaxDelay + time.Second} {
		if err := q.EnqueueAfter(ctx, d, tasks(1)); err == nil {
			t.Errorf("EnqueueAfter(%s) sent", d)
		}
	}
	if v, f, d, err := sqsmapping.Depth(ctx, c, url); err != nil || v+f+d != 0 {
		t.Errorf("after refused delays: %d visible, %d in flight, %d delayed (%v)", v, f, d, err)
	}
}

func TestEnqueueRetriesFailedEntries(t *testing.T) {
	t.Parallel()
	s := moto.Start(t)
	c := s.SQS()
	url := s.CreateQueue(t, "tasks", nil)
	failing := &failingAPI{SendAPI: c}
	api := &countingAPI{SendAPI: failing}
	q := newQueue(t, api, url, sqsqueue.Options{Key: testKey, Backoff: noWait})
	failing.failNext(4) // four entries of the first batch fail, then go on retry
	if err := q.Enqueue(context.Background(), tasks(12)); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if !reflect.DeepEqual(api.batches, []int{10, 4, 2}) {
		t.Errorf("batches = %v, want [10 4 2]", api.batches)
	}
	if n := len(receiveAll(t, c, url)); n != 12 {
		t.Errorf("%d messages arrived, want 12 (no duplicates, none lost)", n)
	}

	failing.failNext(1000)
	q = newQueue(t, failing, url, sqsqueue.Options{Key: testKey, Attempts: 3, Backoff: noWait})
	err := q.Enqueue(context.Background(), tasks(3))
	if err == nil || !strings.Contains(err.Error(), "3 still failed after 3 attempts") {
		t.Errorf("Enqueue against a failing queue: %v", err)
	}
}

// refusingAPI refuses every entry as the sender's fault.
type refusingAPI struct{ calls int }

func (r *refusingAPI) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	r.calls++
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, SenderFault: true, Code: aws.String("InvalidMessageContents"), Message: aws.String("no")})
	}
	return out, nil
}

func TestEnqueueRefused(t *testing.T) {
	t.Parallel()
	api := &refusingAPI{}
	q := newQueue(t, api, "http://sqs/q", sqsqueue.Options{Key: testKey, Backoff: noWait})
	if err := q.Enqueue(context.Background(), tasks(2)); err == nil || !strings.Contains(err.Error(), "InvalidMessageContents") {
		t.Errorf("Enqueue = %v, want the refusal", err)
	}
	if api.calls != 1 {
		t.Errorf("a refused entry was sent %d times", api.calls)
	}
}

func TestEnqueueCredentialsWithoutKey(t *testing.T) {
	t.Parallel()
	s := moto.Start(t)
	c := s.SQS()
	url := s.CreateQueue(t, "tasks", nil)
	q := newQueue(t, c, url, sqsqueue.Options{})
	err := q.Enqueue(context.Background(), tasks(4)) // tasks 1 and 3 have credentials
	if !errors.Is(err, sqsqueue.ErrNoKey) {
		t.Errorf("Enqueue = %v, want ErrNoKey", err)
	}
	if v, f, d, err := sqsmapping.Depth(context.Background(), c, url); err != nil || v+f+d != 0 {
		t.Errorf("%d messages sent (%v); nothing should go", v+f+d, err)
	}
	if _, err := sqsqueue.New(c, "u", sqsqueue.Options{Key: []byte("short")}); err == nil {
		t.Errorf("New accepted a short key")
	}
}
