package fakesqs_test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/tarport/tarport/shared/testkit/fakesqs"
)

// setup starts a fake with a queue name (its options in attrs) and returns
// a client and the queue's URL.
func setup(t *testing.T, name string, attrs map[string]string) (*fakesqs.Server, *sqs.Client, string) {
	t.Helper()
	s := fakesqs.New(t)
	c := s.Client()
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

// wantAPIError checks err is the SDK error with code (as the SDK reports
// it: the legacy query code when the service sends one).
func wantAPIError(t *testing.T, err error, code string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v, want API error %s", err, code)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("error code = %q (%v), want %q", ae.ErrorCode(), err, code)
	}
}

func attrs(t *testing.T, c *sqs.Client, url string) map[string]string {
	t.Helper()
	out, err := c.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	return out.Attributes
}

func TestQueues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, c, url := setup(t, "jobs", map[string]string{"VisibilityTimeout": "60"})
	if url != s.QueueURL("jobs") {
		t.Errorf("QueueUrl = %s, want %s", url, s.QueueURL("jobs"))
	}
	// Same name, same attributes: the same queue; other attributes: an error.
	if again := createQueue(t, c, "jobs", map[string]string{"VisibilityTimeout": "60"}); again != url {
		t.Errorf("second CreateQueue = %s", again)
	}
	_, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs"), Attributes: map[string]string{"VisibilityTimeout": "61"}})
	var exists *types.QueueNameExists
	if !errors.As(err, &exists) {
		t.Errorf("conflicting CreateQueue: %v, want QueueNameExists", err)
	}
	wantAPIError(t, err, "QueueAlreadyExists")

	got, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("jobs")})
	if err != nil || aws.ToString(got.QueueUrl) != url {
		t.Errorf("GetQueueUrl = %v, %v", got, err)
	}
	_, err = c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	var missing *types.QueueDoesNotExist
	if !errors.As(err, &missing) {
		t.Errorf("GetQueueUrl of a missing queue: %v, want QueueDoesNotExist", err)
	}
	wantAPIError(t, err, "AWS.SimpleQueueService.NonExistentQueue")
	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(s.QueueURL("nope")), MessageBody: aws.String("x")})
	wantAPIError(t, err, "AWS.SimpleQueueService.NonExistentQueue")

	a := attrs(t, c, url)
	want := map[string]string{"QueueArn": fakesqs.QueueARN("jobs"), "VisibilityTimeout": "60", "ApproximateNumberOfMessages": "0",
		"ApproximateNumberOfMessagesNotVisible": "0", "MessageRetentionPeriod": "345600", "MaximumMessageSize": "1048576"}
	for k, v := range want {
		if a[k] != v {
			t.Errorf("attribute %s = %q, want %q", k, a[k], v)
		}
	}
	_, err = c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{"Bogus"}})
	wantAPIError(t, err, "InvalidAttributeName")

	bad := []struct {
		name  string
		attrs map[string]string
		code  string
	}{
		{"visibility", map[string]string{"VisibilityTimeout": "43201"}, "InvalidAttributeValue"},
		{"retention", map[string]string{"MessageRetentionPeriod": "59"}, "InvalidAttributeValue"},
		{"unknown", map[string]string{"Colour": "blue"}, "InvalidAttributeName"},
		{"dlq missing", map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"` + fakesqs.QueueARN("gone") + `","maxReceiveCount":3}`}, "InvalidParameterValue"},
		{"receive count", map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"` + fakesqs.QueueARN("jobs") + `","maxReceiveCount":0}`}, "InvalidParameterValue"},
		{"fifo", map[string]string{"FifoQueue": "true"}, "AWS.SimpleQueueService.UnsupportedOperation"},
	}
	for _, tc := range bad {
		_, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("bad-" + strings.ReplaceAll(tc.name, " ", "-")), Attributes: tc.attrs})
		if err == nil {
			t.Errorf("%s: CreateQueue succeeded", tc.name)
			continue
		}
		wantAPIError(t, err, tc.code)
	}
}

func TestSendReceiveDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, c, url := setup(t, "q", nil)
	before := s.Now()
	body := `{"hello":"wörld"}`
	id := send(t, c, url, body)
	msgs := receive(t, c, url, 10)
	if len(msgs) != 1 {
		t.Fatalf("received %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	sum := md5.Sum([]byte(body))
	if aws.ToString(m.MessageId) != id || aws.ToString(m.Body) != body || aws.ToString(m.MD5OfBody) != hex.EncodeToString(sum[:]) {
		t.Errorf("message = %+v", m)
	}
	if m.Attributes["ApproximateReceiveCount"] != "1" || m.Attributes["SenderId"] == "" {
		t.Errorf("attributes = %v", m.Attributes)
	}
	sent, _ := strconv.ParseInt(m.Attributes["SentTimestamp"], 10, 64)
	if d := sent - before.UnixMilli(); d < 0 || d > 5000 {
		t.Errorf("SentTimestamp %d is %d ms from the clock", sent, d)
	}
	if a := attrs(t, c, url); a["ApproximateNumberOfMessages"] != "0" || a["ApproximateNumberOfMessagesNotVisible"] != "1" {
		t.Errorf("in flight: %v", a)
	}
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
		t.Fatalf("DeleteMessage: %v", err)
	}
	// Deleting again is no error.
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
		t.Errorf("second DeleteMessage: %v", err)
	}
	_, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: aws.String("garbage")})
	var invalid *types.ReceiptHandleIsInvalid
	if !errors.As(err, &invalid) {
		t.Errorf("DeleteMessage with garbage: %v, want ReceiptHandleIsInvalid", err)
	}
	s.Advance(time.Hour)
	if got := receive(t, c, url, 10); len(got) != 0 {
		t.Errorf("deleted message came back: %v", got)
	}
	if st := s.Stats(); st.Sent != 1 || st.Received != 1 || st.Deleted != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestMessageLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, c, url := setup(t, "q", nil)
	big := strings.Repeat("x", fakesqs.MaxMessageBytes)
	send(t, c, url, big) // exactly 1 MiB goes
	_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(big + "x")})
	wantAPIError(t, err, "InvalidParameterValue")
	if !strings.Contains(err.Error(), "Message must be shorter than 1048576 bytes") {
		t.Errorf("too long: %v", err)
	}
	_, err = c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("bell \x07")})
	var contents *types.InvalidMessageContents
	if !errors.As(err, &contents) {
		t.Errorf("control character: %v, want InvalidMessageContents", err)
	}
	got := receive(t, c, url, 1) // the SDK checks the MD5 of a 1 MiB body
	if len(got) != 1 || len(aws.ToString(got[0].Body)) != fakesqs.MaxMessageBytes {
		t.Fatalf("received %d messages", len(got))
	}
	for _, n := range []int32{11, -1} {
		_, err = c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: n})
		wantAPIError(t, err, "InvalidParameterValue")
	}
	_, err = c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 21})
	wantAPIError(t, err, "InvalidParameterValue")
}

func TestSendMessageBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, c, url := setup(t, "q", nil)
	entries := func(n int, body string) []types.SendMessageBatchRequestEntry {
		var es []types.SendMessageBatchRequestEntry
		for i := range n {
			es = append(es, types.SendMessageBatchRequestEntry{Id: aws.String("e-" + strconv.Itoa(i)), MessageBody: aws.String(body + strconv.Itoa(i))})
		}
		return es
	}
	out, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries(10, "m")})
	if err != nil || len(out.Successful) != 10 || len(out.Failed) != 0 {
		t.Fatalf("10 entries: %v, %+v", err, out)
	}
	for _, e := range out.Successful {
		sum := md5.Sum([]byte("m" + strings.TrimPrefix(aws.ToString(e.Id), "e-")))
		if aws.ToString(e.MD5OfMessageBody) != hex.EncodeToString(sum[:]) || aws.ToString(e.MessageId) == "" {
			t.Errorf("entry %+v", e)
		}
	}

	dup := entries(2, "d")
	dup[1].Id = dup[0].Id
	badID := entries(1, "b")
	badID[0].Id = aws.String("has space")
	longID := entries(1, "l")
	longID[0].Id = aws.String(strings.Repeat("a", 81))
	half := strings.Repeat("h", fakesqs.MaxMessageBytes/2)
	tests := []struct {
		name    string
		entries []types.SendMessageBatchRequestEntry
		code    string
		typed   any
	}{
		{"empty", []types.SendMessageBatchRequestEntry{}, "AWS.SimpleQueueService.EmptyBatchRequest", &types.EmptyBatchRequest{}},
		{"eleven", entries(11, "m"), "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", &types.TooManyEntriesInBatchRequest{}},
		{"duplicate ids", dup, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", &types.BatchEntryIdsNotDistinct{}},
		{"bad id", badID, "AWS.SimpleQueueService.InvalidBatchEntryId", &types.InvalidBatchEntryId{}},
		{"long id", longID, "AWS.SimpleQueueService.InvalidBatchEntryId", &types.InvalidBatchEntryId{}},
		{"total too long", entries(3, half), "AWS.SimpleQueueService.BatchRequestTooLong", &types.BatchRequestTooLong{}},
	}
	for _, tc := range tests {
		_, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: tc.entries})
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		wantAPIError(t, err, tc.code)
		if !errors.As(err, &tc.typed) {
			t.Errorf("%s: %T is not %T", tc.name, err, tc.typed)
		}
	}

	// Per-entry failures: a bad body, and the service's own hiccups.
	mixed := entries(4, "ok")
	mixed[1].MessageBody = aws.String("nul \x00")
	s.FailSends(2)
	out, err = c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: mixed})
	if err != nil {
		t.Fatalf("mixed batch: %v", err)
	}
	if len(out.Successful) != 1 || aws.ToString(out.Successful[0].Id) != "e-3" || len(out.Failed) != 3 {
		t.Fatalf("mixed batch: %d ok, failed %+v", len(out.Successful), out.Failed)
	}
	codes := map[string]string{}
	for _, f := range out.Failed {
		codes[aws.ToString(f.Id)] = aws.ToString(f.Code)
		if sender := aws.ToString(f.Code) == "InvalidMessageContents"; f.SenderFault != sender {
			t.Errorf("failure %s: SenderFault = %v", aws.ToString(f.Id), f.SenderFault)
		}
	}
	if codes["e-0"] != "InternalError" || codes["e-1"] != "InvalidMessageContents" || codes["e-2"] != "InternalError" {
		t.Errorf("failure codes = %v", codes)
	}
	if st := s.Stats(); st.Sent != 11 {
		t.Errorf("sent = %d, want 11", st.Sent)
	}
}

func TestVisibility(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, c, url := setup(t, "q", map[string]string{"VisibilityTimeout": "30"})
	send(t, c, url, "one")
	first := receive(t, c, url, 1)[0]
	if got := receive(t, c, url, 1); len(got) != 0 {
		t.Fatalf("in-flight message received again")
	}
	s.Advance(29 * time.Second)
	if got := receive(t, c, url, 1); len(got) != 0 {
		t.Fatalf("message visible before its timeout")
	}
	s.Advance(time.Second)
	second := receive(t, c, url, 1)
	if len(second) != 1 || second[0].Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("after the timeout: %+v", second)
	}
	if aws.ToString(second[0].ReceiptHandle) == aws.ToString(first.ReceiptHandle) {
		t.Errorf("receipt handle did not change")
	}
	if second[0].Attributes["ApproximateFirstReceiveTimestamp"] != first.Attributes["ApproximateFirstReceiveTimestamp"] {
		t.Errorf("first receive timestamp changed")
	}
	// The old handle deletes nothing; the current one does.
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: first.ReceiptHandle}); err != nil {
		t.Fatalf("delete with old handle: %v", err)
	}
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: first.ReceiptHandle, VisibilityTimeout: 5}); err == nil {
		t.Errorf("ChangeMessageVisibility with an old handle succeeded")
	} else {
		wantAPIError(t, err, "InvalidParameterValue")
	}
	if _, inFlight, _ := s.Depth("q"); inFlight != 1 {
		t.Fatalf("old handle deleted the message")
	}
	// Extend, then release at once.
	h := second[0].ReceiptHandle
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: h, VisibilityTimeout: 600}); err != nil {
		t.Fatalf("ChangeMessageVisibility: %v", err)
	}
	s.Advance(time.Minute)
	if got := receive(t, c, url, 1); len(got) != 0 {
		t.Fatalf("extended message visible")
	}
	if _, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: h, VisibilityTimeout: 0}); err != nil {
		t.Fatalf("ChangeMessageVisibility 0: %v", err)
	}
	_, err := c.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: h, VisibilityTimeout: 10})
	var notInFlight *types.MessageNotInflight
	if !errors.As(err, &notInFlight) {
		t.Errorf("ChangeMessageVisibility of a visible message: %v, want MessageNotInflight", err)
	}
	third := receive(t, c, url, 1)
	if len(third) != 1 {
		t.Fatalf("released message not received")
	}
	// ExpireVisibility hands it back at once.
	s.ExpireVisibility()
	fourth := receive(t, c, url, 1)
	if len(fourth) != 1 || fourth[0].Attributes["ApproximateReceiveCount"] != "4" {
		t.Fatalf("after ExpireVisibility: %+v", fourth)
	}
	// A per-receive visibility timeout overrides the queue's.
	s.ExpireVisibility()
	if _, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), VisibilityTimeout: 300}); err != nil {
		t.Fatal(err)
	}
	s.Advance(time.Minute)
	if got := receive(t, c, url, 1); len(got) != 0 {
		t.Errorf("receive-level visibility timeout ignored")
	}
}

func TestDeleteMessageBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, c, url := setup(t, "q", nil)
	for i := range 3 {
		send(t, c, url, "m"+strconv.Itoa(i))
	}
	msgs := receive(t, c, url, 10)
	entries := []types.DeleteMessageBatchRequestEntry{
		{Id: aws.String("a"), ReceiptHandle: msgs[0].ReceiptHandle},
		{Id: aws.String("b"), ReceiptHandle: aws.String("not-a-handle")},
		{Id: aws.String("c"), ReceiptHandle: msgs[2].ReceiptHandle},
	}
	out, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
	if err != nil {
		t.Fatalf("DeleteMessageBatch: %v", err)
	}
	if len(out.Successful) != 2 || len(out.Failed) != 1 || aws.ToString(out.Failed[0].Id) != "b" ||
		aws.ToString(out.Failed[0].Code) != "ReceiptHandleIsInvalid" || !out.Failed[0].SenderFault {
		t.Errorf("DeleteMessageBatch = %+v", out)
	}
	if st := s.Stats(); st.Deleted != 2 {
		t.Errorf("deleted = %d", st.Deleted)
	}
	var eleven []types.DeleteMessageBatchRequestEntry
	for i := range 11 {
		eleven = append(eleven, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: msgs[1].ReceiptHandle})
	}
	_, err = c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: eleven})
	wantAPIError(t, err, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest")
	_, err = c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: append(entries, entries[0])})
	wantAPIError(t, err, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct")
}

func TestLongPoll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, c, url := setup(t, "q", map[string]string{"VisibilityTimeout": "30"})
	poll := func() <-chan []types.Message {
		ch := make(chan []types.Message, 1)
		go func() {
			out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), WaitTimeSeconds: 20, MaxNumberOfMessages: 10})
			if err != nil {
				t.Errorf("ReceiveMessage: %v", err)
			}
			if out == nil {
				out = &sqs.ReceiveMessageOutput{}
			}
			ch <- out.Messages
		}()
		return ch
	}
	polling := func() {
		for start := time.Now(); s.Polling() == 0; time.Sleep(time.Millisecond) {
			if time.Since(start) > 5*time.Second {
				t.Fatal("the long poll never started waiting")
			}
		}
	}
	wait := func(ch <-chan []types.Message) []types.Message {
		select {
		case m := <-ch:
			return m
		case <-time.After(5 * time.Second):
			t.Fatal("long poll did not return")
			return nil
		}
	}
	// A send ends the poll early.
	ch := poll()
	polling()
	send(t, c, url, "wake")
	if got := wait(ch); len(got) != 1 {
		t.Fatalf("long poll returned %d messages", len(got))
	}
	// A visibility timeout ending (on the fake clock) ends it too.
	ch = poll()
	polling()
	s.Advance(31 * time.Second)
	if got := wait(ch); len(got) != 1 {
		t.Fatalf("long poll after the timeout returned %d messages", len(got))
	}
	// And the wait time passing on the clock ends it empty.
	ch = poll()
	polling()
	s.Advance(21 * time.Second) // the message is in flight for 30 s
	if got := wait(ch); len(got) != 0 {
		t.Fatalf("expired long poll returned %d messages", len(got))
	}
}

func TestRedrive(t *testing.T) {
	t.Parallel()
	s := fakesqs.New(t)
	c := s.Client()
	dlq := createQueue(t, c, "dlq", nil)
	url := createQueue(t, c, "main", map[string]string{
		"VisibilityTimeout": "30",
		"RedrivePolicy":     `{"deadLetterTargetArn":"` + fakesqs.QueueARN("dlq") + `","maxReceiveCount":"2"}`,
	})
	if a := attrs(t, c, url); !strings.Contains(a["RedrivePolicy"], `"maxReceiveCount":2`) {
		t.Errorf("RedrivePolicy = %s", a["RedrivePolicy"])
	}
	id := send(t, c, url, "poison")
	sent := ""
	for i := 1; i <= 2; i++ {
		got := receive(t, c, url, 10)
		if len(got) != 1 || got[0].Attributes["ApproximateReceiveCount"] != strconv.Itoa(i) {
			t.Fatalf("receive %d: %+v", i, got)
		}
		sent = got[0].Attributes["SentTimestamp"]
		s.Advance(31 * time.Second)
	}
	// The third receive would exceed maxReceiveCount: the message moves.
	if got := receive(t, c, url, 10); len(got) != 0 {
		t.Fatalf("poison message received a third time")
	}
	got := receive(t, c, dlq, 10)
	if len(got) != 1 || aws.ToString(got[0].MessageId) != id || aws.ToString(got[0].Body) != "poison" {
		t.Fatalf("dead-letter queue has %+v", got)
	}
	if got[0].Attributes["SentTimestamp"] != sent || got[0].Attributes["DeadLetterQueueSourceArn"] != fakesqs.QueueARN("main") {
		t.Errorf("dead letter attributes = %v", got[0].Attributes)
	}
	if st := s.Stats(); st.Redriven != 1 {
		t.Errorf("redriven = %d", st.Redriven)
	}
}

func TestPurgeAndRetention(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, c, url := setup(t, "q", map[string]string{"MessageRetentionPeriod": "60", "DelaySeconds": "5"})
	send(t, c, url, "a")
	if visible, _, delayed := s.Depth("q"); visible != 0 || delayed != 1 {
		t.Fatalf("delayed message: visible %d, delayed %d", visible, delayed)
	}
	if a := attrs(t, c, url); a["ApproximateNumberOfMessagesDelayed"] != "1" {
		t.Errorf("attributes = %v", a)
	}
	s.Advance(5 * time.Second)
	if visible, _, _ := s.Depth("q"); visible != 1 {
		t.Fatalf("delay did not end")
	}
	s.Advance(55 * time.Second)
	if got := receive(t, c, url, 10); len(got) != 0 {
		t.Fatalf("message outlived its retention")
	}
	send(t, c, url, "b")
	if _, err := c.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(url)}); err != nil {
		t.Fatalf("PurgeQueue: %v", err)
	}
	s.Advance(time.Hour)
	if got := receive(t, c, url, 10); len(got) != 0 {
		t.Fatalf("purged message received")
	}
	if _, err := c.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(url)}); err != nil {
		t.Fatalf("PurgeQueue after an hour: %v", err)
	}
	_, err := c.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(url)})
	var inProgress *types.PurgeQueueInProgress
	if !errors.As(err, &inProgress) {
		t.Errorf("second purge within 60 s: %v, want PurgeQueueInProgress", err)
	}
	if st := s.Stats(); st.Purged != 1 {
		t.Errorf("purged = %d", st.Purged)
	}
}

// TestWire checks the raw protocol: what the SDK does not show.
func TestWire(t *testing.T) {
	t.Parallel()
	s := fakesqs.New(t)
	post := func(target, ct, body string) (*http.Response, map[string]string) {
		req, _ := http.NewRequest(http.MethodPost, s.URL+"/", strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if target != "" {
			req.Header.Set("X-Amz-Target", target)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]string
		json.Unmarshal(b, &m)
		return resp, m
	}
	resp, body := post("AmazonSQS.GetQueueUrl", "application/x-amz-json-1.0", `{"QueueName":"none"}`)
	if resp.StatusCode != 400 || resp.Header.Get("x-amzn-query-error") != "AWS.SimpleQueueService.NonExistentQueue;Sender" ||
		body["__type"] != "com.amazonaws.sqs#QueueDoesNotExist" || body["message"] == "" {
		t.Errorf("QueueDoesNotExist rendered as %d %v %v", resp.StatusCode, resp.Header, body)
	}
	if resp.Header.Get("Content-Type") != "application/x-amz-json-1.0" || resp.Header.Get("x-amzn-RequestId") == "" {
		t.Errorf("headers %v", resp.Header)
	}
	resp, body = post("AmazonSQS.Frobnicate", "application/x-amz-json-1.0", `{}`)
	if resp.StatusCode != 400 || !strings.HasSuffix(body["__type"], "#UnknownOperationException") {
		t.Errorf("unknown operation: %d %v", resp.StatusCode, body)
	}
	resp, body = post("AmazonSQS.DeleteQueue", "application/x-amz-json-1.0", `{}`)
	if resp.StatusCode != 400 || body["__type"] != "com.amazonaws.sqs#UnsupportedOperation" {
		t.Errorf("unimplemented operation: %d %v", resp.StatusCode, body)
	}
	// The old query protocol is refused, not misread.
	resp, body = post("", "application/x-www-form-urlencoded", "Action=ListQueues&Version=2012-11-05")
	if resp.StatusCode != 400 || !strings.Contains(body["message"], "JSON 1.0") {
		t.Errorf("query protocol: %d %v", resp.StatusCode, body)
	}
}
