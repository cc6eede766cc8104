package fakesqs_test

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

	"github.com/tarport/tarport/shared/testkit/fakesqs"
)

func TestMappingEvent(t *testing.T) {
	t.Parallel()
	s, c, url := setup(t, "q", nil)
	id := send(t, c, url, "body-1")
	var got events.SQSEvent
	m := &fakesqs.Mapping{Client: c, QueueURL: url, Invoke: func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
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
		rec.EventSource != "aws:sqs" || rec.EventSourceARN != fakesqs.QueueARN("q") || rec.AWSRegion != fakesqs.Region {
		t.Errorf("record = %+v", rec)
	}
	if rec.Attributes["ApproximateReceiveCount"] != "1" || rec.Attributes["SentTimestamp"] == "" || rec.Attributes["SenderId"] == "" {
		t.Errorf("attributes = %v", rec.Attributes)
	}
	if st := s.Stats(); st.Deleted != 1 {
		t.Errorf("deleted = %d", st.Deleted)
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
			s, c, url := setup(t, "q", map[string]string{"VisibilityTimeout": "30"})
			var ids []string
			for i := range 3 {
				ids = append(ids, send(t, c, url, "m"+strconv.Itoa(i)))
			}
			m := &fakesqs.Mapping{Client: c, QueueURL: url, WholeBatch: tc.wholeBatch,
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
			// What was kept reappears after the visibility timeout.
			s.Advance(30 * time.Second)
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
	m := &fakesqs.Mapping{Client: c, QueueURL: url, Timeout: 50 * time.Millisecond,
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
	s := fakesqs.New(t)
	c := s.Client()
	dlq := createQueue(t, c, "dlq", nil)
	url := createQueue(t, c, "q", map[string]string{
		"RedrivePolicy": `{"deadLetterTargetArn":"` + fakesqs.QueueARN("dlq") + `","maxReceiveCount":4}`,
	})
	for i := range 15 {
		send(t, c, url, "m"+strconv.Itoa(i))
	}
	receives := map[string]int{}
	var dead []string
	fail := &fakesqs.Mapping{Client: c, QueueURL: url, Invoke: func(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		var resp events.SQSEventResponse
		for _, r := range ev.Records {
			receives[r.Body]++
			if r.Body == "m3" {
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
			}
		}
		return resp, nil
	}}
	collect := &fakesqs.Mapping{Client: c, QueueURL: dlq, Invoke: func(_ context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		for _, r := range ev.Records {
			dead = append(dead, r.Body)
		}
		return events.SQSEventResponse{}, nil
	}}
	n, err := s.Drain(context.Background(), fail, collect)
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
