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
	"github.com/tarport/tarport/shared/testkit/fakesqs"
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
// id, reading at least once as a consumer must: a message whose receive
// went astray (an SDK retry after a lost response) comes back when its
// visibility timeout is ended.
func receiveAll(t *testing.T, s *fakesqs.Server, c *sqs.Client, url string) map[string]string {
	t.Helper()
	ctx := context.Background()
	bodies := map[string]string{}
	for range 100 {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		if len(out.Messages) == 0 {
			name := url[strings.LastIndex(url, "/")+1:]
			if v, f, d := s.Depth(name); v+f+d == 0 {
				return bodies
			}
			s.ExpireVisibility()
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
	s := fakesqs.New(t)
	c := s.Client()
	out, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String("tasks")})
	if err != nil {
		t.Fatal(err)
	}
	url := aws.ToString(out.QueueUrl)
	api := &countingAPI{SendAPI: c}
	q := newQueue(t, api, url, sqsqueue.Options{Key: testKey})
	want := tasks(25)
	if err := q.Enqueue(context.Background(), want); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if !reflect.DeepEqual(api.batches, []int{10, 10, 5}) {
		t.Errorf("batches = %v, want [10 10 5]", api.batches)
	}
	bodies := receiveAll(t, s, c, url)
	if len(bodies) != 25 || s.Stats().Sent != 25 {
		t.Fatalf("%d messages arrived, %d sent, want 25", len(bodies), s.Stats().Sent)
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

func TestEnqueueRetriesFailedEntries(t *testing.T) {
	t.Parallel()
	s := fakesqs.New(t)
	c := s.Client()
	out, _ := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String("tasks")})
	url := aws.ToString(out.QueueUrl)
	api := &countingAPI{SendAPI: c}
	q := newQueue(t, api, url, sqsqueue.Options{Key: testKey, Backoff: noWait})
	s.FailSends(4) // four entries of the first batch fail, then go on retry
	if err := q.Enqueue(context.Background(), tasks(12)); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if !reflect.DeepEqual(api.batches, []int{10, 4, 2}) {
		t.Errorf("batches = %v, want [10 4 2]", api.batches)
	}
	if n := len(receiveAll(t, s, c, url)); n != 12 || s.Stats().Sent != 12 {
		t.Errorf("%d messages arrived, want 12 (no duplicates, none lost)", n)
	}

	s.FailSends(1000)
	q = newQueue(t, c, url, sqsqueue.Options{Key: testKey, Attempts: 3, Backoff: noWait})
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
	s := fakesqs.New(t)
	c := s.Client()
	out, _ := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String("tasks")})
	q := newQueue(t, c, aws.ToString(out.QueueUrl), sqsqueue.Options{})
	err := q.Enqueue(context.Background(), tasks(4)) // tasks 1 and 3 have credentials
	if !errors.Is(err, sqsqueue.ErrNoKey) {
		t.Errorf("Enqueue = %v, want ErrNoKey", err)
	}
	if st := s.Stats(); st.Sent != 0 {
		t.Errorf("%d messages sent; nothing should go", st.Sent)
	}
	if _, err := sqsqueue.New(c, "u", sqsqueue.Options{Key: []byte("short")}); err == nil {
		t.Errorf("New accepted a short key")
	}
}
