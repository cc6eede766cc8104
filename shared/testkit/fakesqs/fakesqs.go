// Package fakesqs owns a test stand-in for Amazon SQS (no SQS stand-in runs
// on these machines: goaws speaks only the old query protocol). It is an
// httptest server speaking the AWS JSON 1.0 protocol exactly as
// aws-sdk-go-v2's service/sqs sends it: POST / with
// X-Amz-Target: AmazonSQS.<Operation> and
// Content-Type: application/x-amz-json-1.0. Errors come as the service sends
// them: HTTP 400, a body {"__type":"com.amazonaws.sqs#QueueDoesNotExist",
// "message":"..."} and the x-amzn-query-error header with the legacy query
// code ("AWS.SimpleQueueService.NonExistentQueue;Sender"), which the SDK
// reports as the error code; unmodeled errors (InvalidParameterValue) come
// with the com.amazon.coral.service namespace as the service does.
//
// Operations: CreateQueue, GetQueueUrl, GetQueueAttributes, SendMessage,
// SendMessageBatch, ReceiveMessage (long polling), DeleteMessage,
// DeleteMessageBatch, ChangeMessageVisibility and PurgeQueue, on standard
// queues, with the service's limits: 10 entries a batch, batch ids of
// [A-Za-z0-9_-]{1,80}, 1 MiB (1,048,576 bytes) per message and per batch
// (the limit since August 2025), MaxNumberOfMessages 1..10,
// WaitTimeSeconds 0..20, visibility 0..12 h. MD5OfMessageBody is real (the
// SDK checks it). Visibility timeouts, delays, retention and purge limits run
// on a clock the test can move (Advance, ExpireVisibility); a message whose
// receive count reached the queue's RedrivePolicy maxReceiveCount moves to
// the dead-letter queue on the next receive that would have returned it, as
// SQS does, keeping its id, body, SentTimestamp and receive count, with
// DeadLetterQueueSourceArn set.
//
// Receipt handles change on every receive. A delete with an older handle of
// a message succeeds and deletes nothing: SQS says the message "might not be
// deleted", and the fake takes the strict reading so that a consumer relying
// on stale handles fails here rather than in production. A malformed handle
// is ReceiptHandleIsInvalid; changing the visibility of a message through a
// stale handle, or of a deleted one, is InvalidParameterValue, and of one no
// longer in flight MessageNotInflight.
//
// Deliberately not implemented: request signatures (any or none is
// accepted), FIFO queues, message attributes, KMS, queue policies and tags,
// the other operations (they answer UnsupportedOperation), the 12-hour cap on
// a message's total visibility, and the fuzziness of a distributed queue:
// counts are exact and messages come back in the order they were sent.
//
// Mapping plays Lambda's SQS event source mapping (ReportBatchItemFailures
// included) against any SQS endpoint, calling a function in process or
// through a Lambda emulator; Drain plays mappings until their queues are
// empty, ending visibility timeouts at once so redeliveries need no wait.
package fakesqs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

const (
	// Region and AccountID appear in queue URLs and ARNs.
	Region    = "us-east-1"
	AccountID = "123456789012"

	// MaxMessageBytes is SQS's message and batch payload limit (1 MiB since
	// August 2025; it was 256 KiB before).
	MaxMessageBytes = 1 << 20
	// MaxBatchEntries bounds SendMessageBatch and DeleteMessageBatch.
	MaxBatchEntries = 10
	// PurgeInterval is how often a queue may be purged.
	PurgeInterval = 60 * time.Second

	targetPrefix = "AmazonSQS."
	contentType  = "application/x-amz-json-1.0"
	senderID     = "AIDAFAKESQSSENDER0001"
)

// Stats counts what the fake did, over all queues.
type Stats struct {
	Sent     int // messages accepted by SendMessage and SendMessageBatch
	Received int // messages returned by ReceiveMessage (each receive counts)
	Deleted  int // messages deleted by DeleteMessage and DeleteMessageBatch
	Redriven int // messages moved to a dead-letter queue
	Purged   int // messages removed by PurgeQueue
}

// Server is a running fake SQS. Every method is safe to call from any
// goroutine while requests are served.
type Server struct {
	// URL is the endpoint, e.g. http://127.0.0.1:PORT (no trailing slash):
	// the SDK's BaseEndpoint, or AWS_ENDPOINT_URL_SQS.
	URL string

	srv    *httptest.Server
	offset atomic.Int64  // the clock's lead over the wall clock, in ns
	done   chan struct{} // closed at shutdown, ending long polls

	mu        sync.Mutex
	queues    map[string]*queue   // by name
	handles   map[string]*message // current receipt handle -> message
	changed   chan struct{}       // closed and replaced on every change
	stats     Stats
	failSends int // send entries still to fail with InternalError
	polling   int // ReceiveMessage calls waiting
}

// New starts a fake SQS and stops it when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := NewServer()
	t.Cleanup(s.Close)
	return s
}

// NewServer is New without a testing.TB, for benchmarks and tools: the
// fake serves on loopback until Close.
func NewServer() *Server {
	s := &Server{
		done:    make(chan struct{}),
		queues:  map[string]*queue{},
		handles: map[string]*message{},
		changed: make(chan struct{}),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close ends long polls and stops the server. It is safe to call twice.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		return
	default:
		close(s.done)
	}
	s.mu.Unlock()
	s.srv.Close()
}

// Client returns an SDK client for the fake, with static credentials and
// the SDK's default retries.
func (s *Server) Client() *sqs.Client {
	return sqs.New(sqs.Options{
		BaseEndpoint: aws.String(s.URL),
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider("AKIAFAKESQS", "secret", ""),
		HTTPClient:   s.srv.Client(),
	})
}

// QueueURL returns the URL a queue named name has (or will have).
func (s *Server) QueueURL(name string) string {
	return s.URL + "/" + AccountID + "/" + name
}

// QueueARN returns the ARN a queue named name has (or will have).
func QueueARN(name string) string {
	return "arn:aws:sqs:" + Region + ":" + AccountID + ":" + name
}

// Now is the fake's clock: the wall clock plus every Advance.
func (s *Server) Now() time.Time {
	return time.Now().Add(time.Duration(s.offset.Load()))
}

// Advance moves the clock forward: visibility timeouts, delays, retention
// and the purge interval see the time pass, and long polls waiting for it
// wake up.
func (s *Server) Advance(d time.Duration) {
	s.offset.Add(int64(d))
	s.mu.Lock()
	s.notify()
	s.mu.Unlock()
}

// ExpireVisibility makes every in-flight and delayed message visible now,
// as if its visibility timeout or delay had passed.
func (s *Server) ExpireVisibility() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.Now()
	for _, q := range s.queues {
		for _, m := range q.msgs {
			if m.visibleAt.After(now) {
				m.visibleAt = now
			}
		}
	}
	s.notify()
}

// FailSends makes the next n entries of SendMessageBatch fail with the
// per-entry error InternalError (SenderFault false), as the service does
// now and then; SendMessage calls are not affected.
func (s *Server) FailSends(n int) {
	s.mu.Lock()
	s.failSends = n
	s.mu.Unlock()
}

// Polling returns the number of ReceiveMessage calls waiting for a
// message: a test can wait for its consumer to be polling before it sends.
func (s *Server) Polling() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polling
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Depth returns the messages of a queue by state: visible, in flight
// (received, timeout running) and delayed. An unknown queue has none.
func (s *Server) Depth(name string) (visible, inFlight, delayed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[name]
	if q == nil {
		return 0, 0, 0
	}
	return q.depth(s.Now())
}

// notify wakes long polls; s.mu must be held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// apiError is an error response as SQS renders it.
type apiError struct {
	status int
	typ    string // the body's __type
	query  string // the legacy query code of x-amzn-query-error
	msg    string
}

func (e *apiError) Error() string { return e.query + ": " + e.msg }

// sqsErr builds a modeled error: shape in com.amazonaws.sqs, query code from
// the model's awsQueryError trait (the shape name when it has none).
func sqsErr(shape, query, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "com.amazonaws.sqs#" + shape, query: query, msg: fmt.Sprintf(format, args...)}
}

// invalidParameter is the unmodeled InvalidParameterValue of the service.
func invalidParameter(format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "com.amazon.coral.service#InvalidParameterValueException", query: "InvalidParameterValue", msg: fmt.Sprintf(format, args...)}
}

func unsupported(format string, args ...any) *apiError {
	return sqsErr("UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", format, args...)
}

func errNoQueue() *apiError {
	return sqsErr("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.")
}

type operation func(s *Server, ctx context.Context, body []byte) (any, error)

var operations = map[string]operation{
	"CreateQueue":             (*Server).createQueue,
	"GetQueueUrl":             (*Server).getQueueURL,
	"GetQueueAttributes":      (*Server).getQueueAttributes,
	"SendMessage":             (*Server).sendMessage,
	"SendMessageBatch":        (*Server).sendMessageBatch,
	"ReceiveMessage":          (*Server).receiveMessage,
	"DeleteMessage":           (*Server).deleteMessage,
	"DeleteMessageBatch":      (*Server).deleteMessageBatch,
	"ChangeMessageVisibility": (*Server).changeMessageVisibility,
	"PurgeQueue":              (*Server).purgeQueue,
}

// knownOperations are the service's other operations, which the fake
// refuses by name rather than as unknown.
var knownOperations = map[string]bool{
	"AddPermission": true, "CancelMessageMoveTask": true, "ChangeMessageVisibilityBatch": true,
	"DeleteQueue": true, "ListDeadLetterSourceQueues": true, "ListMessageMoveTasks": true,
	"ListQueueTags": true, "ListQueues": true, "RemovePermission": true, "SetQueueAttributes": true,
	"StartMessageMoveTask": true, "TagQueue": true, "UntagQueue": true,
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	out, err := s.dispatch(r)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Amzn-Requestid", newID())
	if err != nil {
		e, ok := err.(*apiError)
		if !ok {
			e = &apiError{status: http.StatusInternalServerError, typ: "com.amazonaws.sqs#InternalError", query: "InternalError", msg: err.Error()}
		}
		fault := "Sender"
		if e.status >= 500 {
			fault = "Receiver"
		}
		w.Header().Set("X-Amzn-Query-Error", e.query+";"+fault)
		w.WriteHeader(e.status)
		json.NewEncoder(w).Encode(map[string]string{"__type": e.typ, "message": e.msg})
		return
	}
	json.NewEncoder(w).Encode(out)
}

func (s *Server) dispatch(r *http.Request) (any, error) {
	if r.Method != http.MethodPost {
		return nil, &apiError{status: http.StatusMethodNotAllowed, typ: "com.amazon.coral.service#UnknownOperationException", query: "InvalidAction", msg: "fakesqs answers POST only"}
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != contentType {
		return nil, &apiError{status: http.StatusBadRequest, typ: "com.amazon.coral.service#UnknownOperationException", query: "InvalidAction",
			msg: fmt.Sprintf("fakesqs speaks only the AWS JSON 1.0 protocol (Content-Type %s), not %q", contentType, ct)}
	}
	target := r.Header.Get("X-Amz-Target")
	name, ok := strings.CutPrefix(target, targetPrefix)
	op := operations[name]
	if !ok || op == nil {
		if knownOperations[name] {
			return nil, unsupported("fakesqs does not implement %s", name)
		}
		return nil, &apiError{status: http.StatusBadRequest, typ: "com.amazon.coral.service#UnknownOperationException", query: "InvalidAction", msg: fmt.Sprintf("unknown operation %q", target)}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 16*MaxMessageBytes))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return op(s, ctx, body)
}

// decode reads a request body into v; the SDK sends "{}" for empty input.
func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return &apiError{status: http.StatusBadRequest, typ: "com.amazon.coral.service#SerializationException", query: "SerializationException", msg: err.Error()}
	}
	return nil
}

// newID returns a random UUID (version 4), the form of SQS message ids.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
