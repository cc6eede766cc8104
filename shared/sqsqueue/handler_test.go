package sqsqueue_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/sqsqueue"
	"github.com/tarport/tarport/shared/tarport"
)

const (
	mainARN = "arn:aws:sqs:us-east-1:123456789012:tasks"
	deadARN = "arn:aws:sqs:us-east-1:123456789012:tasks-dlq"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func record(id, body, source string) events.SQSMessage {
	return events.SQSMessage{
		MessageId: id, ReceiptHandle: "rh-" + id, Body: body, EventSourceARN: source, EventSource: "aws:sqs", AWSRegion: "us-east-1",
		Attributes: map[string]string{"ApproximateReceiveCount": "1"},
	}
}

// calls records what the handler asked of the service.
type calls struct {
	mu        sync.Mutex
	ran       []download.Task
	abandoned []download.Task
	errs      []error
	// abandonErr is what abandon returns (the job could not be failed).
	abandonErr error
}

func (c *calls) run(fail map[int]bool) func(context.Context, download.Task) error {
	return func(_ context.Context, t download.Task) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.ran = append(c.ran, t)
		if fail[t.Layer] {
			return errors.New("registry hiccup")
		}
		return nil
	}
}

func (c *calls) abandon(_ context.Context, t download.Task, err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.abandoned = append(c.abandoned, t)
	c.errs = append(c.errs, err)
	return c.abandonErr
}

func failures(resp events.SQSEventResponse) []string {
	ids := []string{}
	for _, f := range resp.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	return ids
}

func TestHandlerPartialFailure(t *testing.T) {
	t.Parallel()
	c := codec(t, testKey, 0)
	var ev events.SQSEvent
	for i := range 6 {
		ev.Records = append(ev.Records, record("m"+string(rune('0'+i)), encode(t, c, private(task("job", i))), mainARN))
	}
	var got calls
	h := sqsqueue.Handler(got.run(map[int]bool{1: true, 4: true}), got.abandon, sqsqueue.HandlerOptions{Key: testKey, DeadLetterARN: deadARN, Log: quiet()})
	resp, err := h(context.Background(), ev)
	if err != nil {
		t.Fatalf("handler: %v", err)
	}
	if ids := failures(resp); !reflect.DeepEqual(ids, []string{"m1", "m4"}) {
		t.Errorf("failures = %v, want [m1 m4]", ids)
	}
	if len(got.ran) != 6 || len(got.abandoned) != 0 {
		t.Errorf("ran %d, abandoned %d", len(got.ran), len(got.abandoned))
	}
	for _, tk := range got.ran {
		if tk.Creds.Password != password {
			t.Errorf("task %d ran without its credentials", tk.Layer)
		}
	}
}

func TestHandlerConcurrency(t *testing.T) {
	t.Parallel()
	c := codec(t, testKey, 0)
	var ev events.SQSEvent
	for i := range 10 {
		ev.Records = append(ev.Records, record("m"+string(rune('0'+i)), encode(t, c, task("job", i)), mainARN))
	}
	var now, peak atomic.Int32
	release := make(chan struct{})
	run := func(ctx context.Context, _ download.Task) error {
		n := now.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		now.Add(-1)
		return nil
	}
	h := sqsqueue.Handler(run, nil, sqsqueue.HandlerOptions{Key: testKey, Concurrency: 3, Log: quiet()})
	done := make(chan events.SQSEventResponse)
	go func() {
		resp, _ := h(context.Background(), ev)
		done <- resp
	}()
	for start := time.Now(); now.Load() < 3; {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("only %d records ran at once, want 3", now.Load())
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // room for a fourth, which must not come
	if n := now.Load(); n != 3 {
		t.Errorf("%d records ran at once, want 3", n)
	}
	close(release)
	resp := <-done
	if peak.Load() != 3 || len(resp.BatchItemFailures) != 0 {
		t.Errorf("peak %d, failures %v", peak.Load(), failures(resp))
	}
}

func TestHandlerDeadLetterAndUndecodable(t *testing.T) {
	t.Parallel()
	c := codec(t, testKey, 0)
	ev := events.SQSEvent{Records: []events.SQSMessage{
		record("dead", encode(t, c, private(task("job", 7))), deadARN),
		record("junk-main", "not a task", mainARN),
		record("junk-dead", `{"v":99}`, deadARN),
		record("newer-dead", `{"v":99,"job_id":"job-of-a-newer-version","layer":0}`, deadARN),
		record("newer-main", `{"v":99,"job_id":"job-of-a-newer-version","layer":0}`, mainARN),
		record("fine", encode(t, c, task("job", 8)), mainARN),
	}}
	var got calls
	var logs bytes.Buffer
	h := sqsqueue.Handler(got.run(nil), got.abandon, sqsqueue.HandlerOptions{Key: testKey, DeadLetterARN: deadARN, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	resp, err := h(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	// A newer version's message is left for redelivery (a newer instance
	// may run it); from the dead-letter queue it fails its job.
	if ids := failures(resp); !reflect.DeepEqual(ids, []string{"junk-main", "newer-main"}) {
		t.Errorf("failures = %v, want [junk-main newer-main]", ids)
	}
	if len(got.ran) != 1 || got.ran[0].Layer != 8 {
		t.Errorf("ran %+v, want layer 8 only", got.ran)
	}
	// Records run at once: the order of the abandons is any.
	abandoned := map[string]error{}
	for i, tk := range got.abandoned {
		abandoned[fmt.Sprintf("%s/%d", tk.JobID, tk.Layer)] = got.errs[i]
	}
	if err, ok := abandoned["job/7"]; len(abandoned) != 2 || !ok || !strings.Contains(err.Error(), "dead-letter") {
		t.Errorf("abandoned %+v (%v), want job/7 and the newer version's job", got.abandoned, got.errs)
	}
	if err, ok := abandoned["job-of-a-newer-version/0"]; !ok || tarport.ErrorCode(err) != tarport.CodeInternal {
		t.Errorf("the newer version's job: abandoned %v with %v, want internal_error", ok, err)
	}
	if !strings.Contains(logs.String(), "dropping an undecodable message from the dead-letter queue") {
		t.Errorf("no log line for the dropped message:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), password) {
		t.Errorf("the password is in the logs")
	}
}

func TestHandlerCredentialsGone(t *testing.T) {
	t.Parallel()
	old := codec(t, testKey, time.Hour)
	sqsqueue.SetClock(old, func() time.Time { return time.Now().Add(-2 * time.Hour) })
	ev := events.SQSEvent{Records: []events.SQSMessage{record("m", encode(t, old, private(task("job", 1))), mainARN)}}
	var got calls
	h := sqsqueue.Handler(got.run(nil), got.abandon, sqsqueue.HandlerOptions{Key: testKey, DeadLetterARN: deadARN, Log: quiet()})
	resp, _ := h(context.Background(), ev)
	if len(resp.BatchItemFailures) != 0 || len(got.ran) != 0 || len(got.abandoned) != 1 {
		t.Fatalf("failures %v, ran %d, abandoned %d; want the task abandoned", failures(resp), len(got.ran), len(got.abandoned))
	}
	if err := got.errs[0]; tarport.ErrorCode(err) != tarport.CodeCredentialsGone || !errors.Is(err, sqsqueue.ErrCredsExpired) {
		t.Errorf("abandoned with %v", err)
	}
	if !got.abandoned[0].Creds.Anonymous() {
		t.Errorf("abandoned task carries credentials")
	}
}

func TestHandlerNearDeadline(t *testing.T) {
	t.Parallel()
	c := codec(t, testKey, 0)
	release := make(chan struct{})
	defer close(release)
	var deadlineSeen atomic.Bool
	run := func(ctx context.Context, tk download.Task) error {
		switch tk.Layer {
		case 0: // finishes at once
			return nil
		case 1: // stops when told
			if _, ok := ctx.Deadline(); ok {
				deadlineSeen.Store(true)
			}
			<-ctx.Done()
			return ctx.Err()
		default: // ignores its context
			<-release
			return nil
		}
	}
	ev := events.SQSEvent{}
	for i, id := range []string{"fast", "coop", "stuck"} {
		ev.Records = append(ev.Records, record(id, encode(t, c, task("job", i)), mainARN))
	}
	h := sqsqueue.Handler(run, nil, sqsqueue.HandlerOptions{Key: testKey, Concurrency: 3, Reserve: 500 * time.Millisecond, Log: quiet()})
	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(time.Second))
	defer cancel()
	resp, err := h(ctx, ev)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if took < 400*time.Millisecond || took >= time.Second {
		t.Errorf("handler answered after %s, want about 500ms (the deadline less the reserve)", took)
	}
	if ids := failures(resp); !reflect.DeepEqual(ids, []string{"coop", "stuck"}) {
		t.Errorf("failures = %v, want [coop stuck]", ids)
	}
	if !deadlineSeen.Load() {
		t.Errorf("run's context had no deadline")
	}

	// A record that never got a slot before the cutoff fails unrun.
	var started atomic.Int32
	wait := func(ctx context.Context, _ download.Task) error {
		started.Add(1)
		<-ctx.Done()
		return ctx.Err()
	}
	h = sqsqueue.Handler(wait, nil, sqsqueue.HandlerOptions{Key: testKey, Concurrency: 1, Reserve: 100 * time.Millisecond, Log: quiet()})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	resp, _ = h(ctx2, events.SQSEvent{Records: ev.Records[:2]})
	if len(resp.BatchItemFailures) != 2 || started.Load() != 1 {
		t.Errorf("failures %v, started %d; want both failed, one started", failures(resp), started.Load())
	}
}

func TestHandlerPanicAndBadKey(t *testing.T) {
	t.Parallel()
	c := codec(t, testKey, 0)
	run := func(_ context.Context, tk download.Task) error {
		if tk.Layer == 1 {
			panic("boom")
		}
		return nil
	}
	ev := events.SQSEvent{Records: []events.SQSMessage{record("a", encode(t, c, task("j", 0)), mainARN), record("b", encode(t, c, task("j", 1)), mainARN)}}
	resp, err := sqsqueue.Handler(run, nil, sqsqueue.HandlerOptions{Key: testKey, Log: quiet()})(context.Background(), ev)
	if err != nil || !reflect.DeepEqual(failures(resp), []string{"b"}) {
		t.Errorf("panicking record: %v, %v", failures(resp), err)
	}
	if _, err := sqsqueue.Handler(run, nil, sqsqueue.HandlerOptions{Key: []byte("short"), Log: quiet()})(context.Background(), ev); err == nil {
		t.Errorf("a handler with a bad key did not fail")
	}
}
