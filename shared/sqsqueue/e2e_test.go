package sqsqueue_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/sqsqueue"
	"github.com/tarport/tarport/shared/testkit/moto"
	"github.com/tarport/tarport/shared/testkit/sqsmapping"
)

// overJSON invokes h as Lambda would: the event and the response cross a
// JSON boundary, as they do through a Lambda runtime.
func overJSON(t *testing.T, h sqsmapping.Invoker) sqsmapping.Invoker {
	return func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Errorf("encoding the event: %v", err)
		}
		var in events.SQSEvent
		if err := json.Unmarshal(b, &in); err != nil {
			t.Errorf("decoding the event: %v", err)
		}
		resp, err := h(ctx, in)
		b, _ = json.Marshal(resp)
		var out events.SQSEventResponse
		json.Unmarshal(b, &out)
		return out, err
	}
}

// TestEndToEnd plays the AWS fan-out over moto's SQS: the producer queues the
// tasks, an event source mapping on the queue and one on its dead-letter
// queue feed the handler, failures come back after the visibility timeout,
// and a poison task ends in the dead-letter queue and fails its job.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := moto.Start(t)
	c := s.SQS()
	dlqURL := s.CreateQueue(t, "tasks-dlq", nil)
	url := s.CreateQueue(t, "tasks", map[string]string{
		"VisibilityTimeout": "120",
		"RedrivePolicy":     `{"deadLetterTargetArn":"` + moto.QueueARN("tasks-dlq") + `","maxReceiveCount":3}`,
	})

	q := newQueue(t, c, url, sqsqueue.Options{Key: testKey})
	want := tasks(25)
	if err := q.Enqueue(ctx, want); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	// A message nobody can read: it must reach the dead-letter queue and be
	// dropped there.
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("garbage")}); err != nil {
		t.Fatal(err)
	}

	const poison = 13
	var mu sync.Mutex
	runs := map[int]int{}
	done := map[int]int{}
	var abandoned []download.Task
	run := func(_ context.Context, tk download.Task) error {
		mu.Lock()
		defer mu.Unlock()
		runs[tk.Layer]++
		if !reflect.DeepEqual(tk, want[tk.Layer]) {
			t.Errorf("task %d arrived as %+v", tk.Layer, tk)
		}
		if tk.Layer == poison || (tk.Layer%5 == 0 && runs[tk.Layer] == 1) {
			return errors.New("transient")
		}
		done[tk.Layer]++
		return nil
	}
	abandon := func(_ context.Context, tk download.Task, err error) error {
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(err.Error(), "dead-letter") {
			t.Errorf("abandoned with %v", err)
		}
		abandoned = append(abandoned, tk)
		return nil
	}
	h := overJSON(t, sqsqueue.Handler(run, abandon, sqsqueue.HandlerOptions{Key: testKey, DeadLetterARN: moto.QueueARN("tasks-dlq"), Log: quiet()}))
	maps := []*sqsmapping.Mapping{
		{Client: c, QueueURL: url, Invoke: h},
		{Client: c, QueueURL: dlqURL, Invoke: h},
	}
	if _, err := sqsmapping.Drain(ctx, maps...); err != nil {
		t.Fatalf("Drain: %v", err)
	}

	for i := range want {
		wantRuns := 1
		switch {
		case i == poison:
			wantRuns = 3 // maxReceiveCount
		case i%5 == 0:
			wantRuns = 2
		}
		if runs[i] != wantRuns {
			t.Errorf("layer %d ran %d times, want %d", i, runs[i], wantRuns)
		}
		if wantDone := map[bool]int{true: 0, false: 1}[i == poison]; done[i] != wantDone {
			t.Errorf("layer %d finished %d times, want %d", i, done[i], wantDone)
		}
	}
	if len(abandoned) != 1 || abandoned[0].Layer != poison || abandoned[0].Creds != want[poison].Creds {
		t.Errorf("abandoned %+v, want layer %d with its credentials", abandoned, poison)
	}
	for _, u := range []string{url, dlqURL} {
		if v, f, d, err := sqsmapping.Depth(ctx, c, u); err != nil || v+f+d != 0 {
			t.Errorf("%s still holds %d visible, %d in flight, %d delayed (%v)", u, v, f, d, err)
		}
	}
}
