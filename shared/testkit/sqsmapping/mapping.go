// Package sqsmapping plays Lambda's SQS event source mapping in tests: it
// receives batches from a queue of any SQS API (moto's, here), hands them to
// a function as Lambda does, and deletes what the function finished. Lambda's
// poller is AWS's own and runs nowhere else, so test code plays it.
package sqsmapping

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// MappingAPI is what a Mapping needs of an SQS client (*sqs.Client).
type MappingAPI interface {
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
}

// Invoker is a Lambda function taking SQS events: a handler called in
// process, or an HTTP call to a Lambda emulator.
type Invoker func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error)

// Mapping plays Lambda's SQS event source mapping for one queue: it
// receives a batch, hands it to the function as an events.SQSEvent with the
// fields Lambda sets, and deletes the messages the function finished. With
// ReportBatchItemFailures (the default here) the messages named in
// batchItemFailures stay; a function error, a timeout, or a response naming
// an id that is not in the batch (or none) leaves the whole batch, as Lambda
// does. Messages left reappear after their visibility timeout and, past the
// queue's maxReceiveCount, go to its dead-letter queue. It works against
// any SQS endpoint, not only this package's Server. Poll one round at a
// time: a Mapping is not safe for concurrent Polls.
type Mapping struct {
	Client   MappingAPI
	QueueURL string
	Invoke   Invoker
	// BatchSize is the most messages per event, 1..10 (default 10).
	BatchSize int32
	// Wait is the long poll of each receive (Lambda's is 20 s); the default
	// 0 returns at once from an empty queue.
	Wait time.Duration
	// Timeout is the function's timeout, the deadline of Invoke's context
	// (default 30 s). A function returning after it has failed.
	Timeout time.Duration
	// WholeBatch turns ReportBatchItemFailures off: the response is ignored
	// and a batch is deleted or kept as a whole.
	WholeBatch bool

	arn string
	// left are the receipt handles of messages this mapping received and
	// left (failed): Release makes them visible again at once.
	left []string
}

// Round is what one poll did.
type Round struct {
	Received int
	Deleted  []string // message ids
	Failed   []string // message ids left to reappear
	// Err is why the whole batch failed: the function's error, a timeout or
	// an invalid response.
	Err error
}

// Poll runs one receive-invoke-delete round. Its error is an SQS failure;
// the function's own failure is in Round.Err.
func (m *Mapping) Poll(ctx context.Context) (Round, error) {
	if m.arn == "" {
		out, err := m.Client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl:       aws.String(m.QueueURL),
			AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
		})
		if err != nil {
			return Round{}, fmt.Errorf("reading the ARN of %s: %w", m.QueueURL, err)
		}
		m.arn = out.Attributes[string(types.QueueAttributeNameQueueArn)]
	}
	batch := m.BatchSize
	if batch <= 0 || batch > 10 {
		batch = 10
	}
	out, err := m.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(m.QueueURL),
		MaxNumberOfMessages:         batch,
		WaitTimeSeconds:             int32(m.Wait / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	if err != nil {
		return Round{}, fmt.Errorf("receiving from %s: %w", m.QueueURL, err)
	}
	if len(out.Messages) == 0 {
		return Round{}, nil
	}
	ev := m.event(out.Messages)
	failed := m.invoke(ctx, ev)
	r := Round{Received: len(out.Messages), Err: failed.err}
	var del []types.DeleteMessageBatchRequestEntry
	for i, msg := range out.Messages {
		id := aws.ToString(msg.MessageId)
		if failed.all || failed.ids[id] {
			r.Failed = append(r.Failed, id)
			m.left = append(m.left, aws.ToString(msg.ReceiptHandle))
			continue
		}
		del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: msg.ReceiptHandle})
		r.Deleted = append(r.Deleted, id)
	}
	if len(del) == 0 {
		return r, nil
	}
	dout, err := m.Client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(m.QueueURL), Entries: del})
	if err != nil {
		return r, fmt.Errorf("deleting from %s: %w", m.QueueURL, err)
	}
	if len(dout.Failed) > 0 {
		f := dout.Failed[0]
		return r, fmt.Errorf("deleting from %s: %d failed, first %s: %s", m.QueueURL, len(dout.Failed), aws.ToString(f.Code), aws.ToString(f.Message))
	}
	return r, nil
}

// event builds the records as Lambda does, with the attributes it asks for.
func (m *Mapping) event(msgs []types.Message) events.SQSEvent {
	region := ""
	if parts := strings.Split(m.arn, ":"); len(parts) == 6 {
		region = parts[3]
	}
	var ev events.SQSEvent
	for _, msg := range msgs {
		attrs := map[string]string{}
		for _, name := range []string{"ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} {
			if v, ok := msg.Attributes[name]; ok {
				attrs[name] = v
			}
		}
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId:         aws.ToString(msg.MessageId),
			ReceiptHandle:     aws.ToString(msg.ReceiptHandle),
			Body:              aws.ToString(msg.Body),
			Md5OfBody:         aws.ToString(msg.MD5OfBody),
			Attributes:        attrs,
			MessageAttributes: map[string]events.SQSMessageAttribute{},
			EventSourceARN:    m.arn,
			EventSource:       "aws:sqs",
			AWSRegion:         region,
		})
	}
	return ev
}

type failures struct {
	all bool
	ids map[string]bool
	err error
}

func (m *Mapping) invoke(ctx context.Context, ev events.SQSEvent) failures {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	ictx, cancel := context.WithDeadline(ctx, deadline)
	resp, err := m.Invoke(ictx, ev)
	cancel()
	switch {
	case err != nil:
		return failures{all: true, err: err}
	case time.Now().After(deadline):
		return failures{all: true, err: errors.New("task timed out")}
	case m.WholeBatch:
		return failures{}
	}
	inBatch := map[string]bool{}
	for _, r := range ev.Records {
		inBatch[r.MessageId] = true
	}
	f := failures{ids: map[string]bool{}}
	for _, item := range resp.BatchItemFailures {
		if !inBatch[item.ItemIdentifier] {
			return failures{all: true, err: fmt.Errorf("batchItemFailures names %q, which is not a message of the batch", item.ItemIdentifier)}
		}
		f.ids[item.ItemIdentifier] = true
	}
	return f
}

// maxDrainRounds stops Drain from spinning on a function that never
// finishes and a queue without a dead-letter queue.
const maxDrainRounds = 1000

// Release makes the messages this mapping left in flight visible again at
// once, as if their visibility timeout had passed (each keeps its receive
// count, so a queue's maxReceiveCount still sends it to its dead-letter
// queue). A handle that no longer holds (the message came back, was
// deleted or moved) is skipped.
func (m *Mapping) Release(ctx context.Context) error {
	left := m.left
	m.left = nil
	for _, h := range left {
		_, err := m.Client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(m.QueueURL), ReceiptHandle: aws.String(h), VisibilityTimeout: 0,
		})
		var gone *types.ReceiptHandleIsInvalid
		var notInFlight *types.MessageNotInflight
		if err != nil && !errors.As(err, &gone) && !errors.As(err, &notInFlight) {
			return fmt.Errorf("releasing a message of %s: %w", m.QueueURL, err)
		}
	}
	return nil
}

// Depth is a queue's messages: visible, in flight, delayed.
func Depth(ctx context.Context, c MappingAPI, queueURL string) (visible, inFlight, delayed int, err error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible, types.QueueAttributeNameApproximateNumberOfMessagesDelayed},
	})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("reading the depth of %s: %w", queueURL, err)
	}
	n := func(name types.QueueAttributeName) int {
		v, _ := strconv.Atoi(out.Attributes[string(name)])
		return v
	}
	return n(types.QueueAttributeNameApproximateNumberOfMessages), n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed), nil
}

// Drain plays the mappings until their queues are empty. Whenever a pass
// over all of them receives nothing while messages are still in flight,
// the mappings release what they left, so a failed message comes back
// without waiting out its visibility timeout. It returns the number of
// invocations.
func Drain(ctx context.Context, maps ...*Mapping) (int, error) {
	invocations := 0
	for range maxDrainRounds {
		received := 0
		for _, m := range maps {
			r, err := m.Poll(ctx)
			if err != nil {
				return invocations, err
			}
			if r.Received > 0 {
				invocations++
			}
			received += r.Received
		}
		if received > 0 {
			continue
		}
		pending := 0
		for _, m := range maps {
			visible, inFlight, delayed, err := Depth(ctx, m.Client, m.QueueURL)
			if err != nil {
				return invocations, err
			}
			pending += visible + inFlight + delayed
		}
		if pending == 0 {
			return invocations, nil
		}
		for _, m := range maps {
			if err := m.Release(ctx); err != nil {
				return invocations, err
			}
		}
		// Messages in flight elsewhere, or delayed: give them a moment.
		select {
		case <-ctx.Done():
			return invocations, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return invocations, fmt.Errorf("draining: messages remain after %d rounds", maxDrainRounds)
}
