package sqsmapping_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tarport/tarport/shared/testkit/moto"
	"github.com/tarport/tarport/shared/testkit/sqsmapping"
)

func TestMappingEvent(t *testing.T) {
	t.Parallel()
	_, c, url := setup(t, "q", nil)
	id := send(t, c, url, "body-1")
	var got events.SQSEvent
	m := &sqsmapping.Mapping{Client: c, QueueURL: url, Invoke: func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		got = ev
		if _, ok := ctx.Deadline(); !ok {
			t.Errorf("the function's context has no deadline")
		}
		return events.SQSEventResponse{}, nil
	}}
	r, err := m.Poll(context.Background())
	if err != nil || r.Received != 1 || !reflect.DeepEqual(r.Deleted, []string{id}) {
		t.Fatalf("Poll = %+v, %v", r, err)
	}
	if len(got.Records) != 1 {
		t.Fatalf("event has %d records", len(got.Records))
	}
	rec := got.Records[0]
	sum := md5.Sum([]byte("body-1"))
	if rec.MessageId != id || rec.Body != "body-1" || rec.ReceiptHandle == "" || rec.Md5OfBody != hex.EncodeToString(sum[:]) ||
		rec.EventSource != "aws:sqs" || rec.EventSourceARN != moto.QueueARN("q") || rec.AWSRegion != moto.Region {
		t.Errorf("record = %+v", rec)
	}
	if rec.Attributes["ApproximateReceiveCount"] != "1" || rec.Attributes["SentTimestamp"] == "" || rec.Attributes["SenderId"] == "" {
		t.Errorf("attributes = %v", rec.Attributes)
	}
	if v, f, d, err := sqsmapping.Depth(context.Background(), c, url); err != nil || v+f+d != 0 {
		t.Errorf("after the poll: %d visible, %d in flight, %d delayed (%v), want the message deleted", v, f, d, err)
	}
	if r, _ := m.Poll(context.Background()); r.Received != 0 {
		t.Errorf("empty queue gave %d", r.Received)
	}
}

func TestMappingFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name       string
		wholeBatch bool
		respond    func(ev events.SQSEvent) (events.SQSEventResponse, error)
		kept       []int // indexes of the messages left in the queue
		batchErr   bool
	}{
		{"partial", false, func(ev events.SQSEvent) (events.SQSEventResponse, error) {
			return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: ev.Records[1].MessageId}}}, nil
		}, []int{1}, false},
		{"function error", false, func(ev events.SQSEvent) (events.SQSEventResponse, error) {
			return events.SQSEventResponse{}, errors.New("crash")
		}, []int{0, 1, 2}, true},
		{"unknown id", false, func(ev events.SQSEvent) (events.SQSEventResponse, error) {
			return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: "nope"}}}, nil
		}, []int{0, 1, 2}, true},
		{"empty id", false, func(ev events.SQSEvent) (events.SQSEventResponse, error) {
			return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{}}}, nil
		}, []int{0, 1, 2}, true},
		{"whole batch ignores the response", true, func(ev events.SQSEvent) (events.SQSEventResponse, error) {
			return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: ev.Records[0].MessageId}}}, nil
		}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, c, url := setup(t, "q", map[string]string{"VisibilityTimeout": "30"})
			var ids []string
			for i := range 3 {
				ids = append(ids, send(t, c, url, "m"+strconv.Itoa(i)))
			}
			m := &sqsmapping.Mapping{Client: c, QueueURL: url, WholeBatch: tc.wholeBatch,
				Invoke: func(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) { return tc.respond(ev) }}
			r, err := m.Poll(ctx)
			if err != nil || r.Received != 3 || (r.Err != nil) != tc.batchErr {
				t.Fatalf("Poll = %+v, %v", r, err)
			}
			var want []string
			for _, i := range tc.kept {
				want = append(want, ids[i])
			}
			if !slices.Equal(r.Failed, want) {
				t.Errorf("failed = %v, want %v", r.Failed, want)
			}
			// What was kept reappears when released (its visibility
			// timeout ended).
			if err := m.Release(ctx); err != nil {
				t.Fatal(err)
			}
			var back []string
			for _, msg := range receive(t, c, url, 10) {
				back = append(back, *msg.MessageId)
			}
			if !slices.Equal(back, want) {
				t.Errorf("reappeared %v, want %v", back, want)
			}
		})
	}
}

func TestMappingTimeout(t *testing.T) {
	t.Parallel()
	_, c, url := setup(t, "q", nil)
	send(t, c, url, "slow")
	m := &sqsmapping.Mapping{Client: c, QueueURL: url, Timeout: 50 * time.Millisecond,
		Invoke: func(ctx context.Context, _ events.SQSEvent) (events.SQSEventResponse, error) {
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond) // answers too late
			return events.SQSEventResponse{}, nil
		}}
	r, err := m.Poll(context.Background())
	if err != nil || r.Err == nil || len(r.Failed) != 1 {
		t.Errorf("Poll after a timeout = %+v, %v", r, err)
	}
}

func TestDrainToDeadLetterQueue(t *testing.T) {
	t.Parallel()
	s := moto.Start(t)
	c := s.SQS()
	dlq := createQueue(t, c, "dlq", nil)
	url := createQueue(t, c, "q", map[string]string{
		"RedrivePolicy": `{"deadLetterTargetArn":"` + moto.QueueARN("dlq") + `","maxReceiveCount":4}`,
	})
	for i := range 15 {
		send(t, c, url, "m"+strconv.Itoa(i))
	}
	receives := map[string]int{}
	var dead []string
	fail := &sqsmapping.Mapping{Client: c, QueueURL: url, Invoke: func(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		var resp events.SQSEventResponse
		for _, r := range ev.Records {
			receives[r.Body]++
			if r.Body == "m3" {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
			}
		}
		return resp, nil
	}}
	collect := &sqsmapping.Mapping{Client: c, QueueURL: dlq, Invoke: func(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		for _, r := range ev.Records {
			dead = append(dead, r.Body)
		}
		return events.SQSEventResponse{}, nil
	}}
	n, err := sqsmapping.Drain(context.Background(), fail, collect)
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if receives["m3"] != 4 || receives["m0"] != 1 || !slices.Equal(dead, []string{"m3"}) {
		t.Errorf("receives %v, dead %v", receives, dead)
	}
	if n < 6 { // 2 batches, 3 retries of m3, 1 from the DLQ
		t.Errorf("%d invocations", n)
	}
}

func setup(t *testing.T, name string, attrs map[string]string) (*moto.Server, *sqs.Client, string) {
	t.Helper()
	s := moto.Start(t)
	c := s.SQS()
	return s, c, createQueue(t, c, name, attrs)
}

func createQueue(t *testing.T, c *sqs.Client, name string, attrs map[string]string) string {
	t.Helper()
	out, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatalf("CreateQueue %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

func send(t *testing.T, c *sqs.Client, url, body string) string {
	t.Helper()
	out, err := c.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body)})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	return aws.ToString(out.MessageId)
}

func receive(t *testing.T, c *sqs.Client, url string, n int32) []types.Message {
	t.Helper()
	out, err := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: n,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	if err != nil {
		t.Fatalf("ReceiveMessage: %v", err)
	}
	return out.Messages
}
