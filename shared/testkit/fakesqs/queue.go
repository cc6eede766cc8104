package fakesqs

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

type queue struct {
	name, url, arn string
	created        time.Time
	lastPurge      time.Time

	// Attributes as set (the form CreateQueue compares), and parsed.
	attrs      map[string]string
	visibility time.Duration
	retention  time.Duration
	delay      time.Duration
	wait       time.Duration
	maxSize    int
	redrive    *redrivePolicy

	msgs []*message // in the order sent
}

type redrivePolicy struct {
	DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	MaxReceiveCount     int    `json:"maxReceiveCount"`
}

type message struct {
	id, body, md5 string
	sent          time.Time
	firstReceive  time.Time
	receives      int
	visibleAt     time.Time
	handle        string // of the latest receive; "" before the first
	deadSource    string // ARN of the queue it was redriven from
}

// depth counts a queue's messages by state at now.
func (q *queue) depth(now time.Time) (visible, inFlight, delayed int) {
	for _, m := range q.msgs {
		switch {
		case !m.visibleAt.After(now):
			visible++
		case m.handle != "":
			inFlight++
		default:
			delayed++
		}
	}
	return visible, inFlight, delayed
}

// expire drops messages past the retention period, counted from the first
// send even in a dead-letter queue (standard queues keep that timestamp).
func (s *Server) expire(q *queue, now time.Time) {
	q.msgs = slices.DeleteFunc(q.msgs, func(m *message) bool {
		if now.Sub(m.sent) >= q.retention {
			delete(s.handles, m.handle)
			return true
		}
		return false
	})
}

var (
	queueNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)
	batchIDRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)
)

// attribute bounds of the settable attributes the fake implements, in
// seconds (bytes for MaximumMessageSize).
var attrBounds = map[string][2]int{
	"VisibilityTimeout":             {0, 43200},
	"MessageRetentionPeriod":        {60, 1209600},
	"DelaySeconds":                  {0, 900},
	"MaximumMessageSize":            {1024, MaxMessageBytes},
	"ReceiveMessageWaitTimeSeconds": {0, 20},
}

var defaultAttrs = map[string]string{
	"VisibilityTimeout":             "30",
	"MessageRetentionPeriod":        "345600",
	"DelaySeconds":                  "0",
	"MaximumMessageSize":            strconv.Itoa(MaxMessageBytes),
	"ReceiveMessageWaitTimeSeconds": "0",
	"SqsManagedSseEnabled":          "true",
}

func isQueueAttribute(name string) bool {
	return slices.Contains(types.QueueAttributeName("").Values(), types.QueueAttributeName(name))
}

// lookup finds the queue of a QueueUrl ("<endpoint>/<account>/<name>"); the
// host is not checked, as clients may reach the fake by another name.
func (s *Server) lookup(queueURL string) (*queue, error) {
	u, err := url.Parse(queueURL)
	if queueURL == "" || err != nil {
		return nil, sqsErr("InvalidAddress", "InvalidAddress", "The address %s is not valid for this endpoint.", queueURL)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] != AccountID || s.queues[parts[1]] == nil {
		return nil, errNoQueue()
	}
	return s.queues[parts[1]], nil
}

func (s *Server) byARN(arn string) *queue {
	name, ok := strings.CutPrefix(arn, "arn:aws:sqs:"+Region+":"+AccountID+":")
	if !ok {
		return nil
	}
	return s.queues[name]
}

func (s *Server) createQueue(_ context.Context, body []byte) (any, error) {
	var in struct {
		QueueName  string
		Attributes map[string]string
		Tags       map[string]string
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if strings.HasSuffix(in.QueueName, ".fifo") || in.Attributes["FifoQueue"] == "true" {
		return nil, unsupported("fakesqs implements standard queues only")
	}
	if !queueNameRE.MatchString(in.QueueName) {
		return nil, invalidParameter("Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	attrs := map[string]string{}
	for k, v := range defaultAttrs {
		attrs[k] = v
	}
	for name, v := range in.Attributes {
		if _, ok := attrBounds[name]; !ok && name != "RedrivePolicy" && name != "SqsManagedSseEnabled" {
			if isQueueAttribute(name) {
				return nil, unsupported("fakesqs does not implement the queue attribute %s", name)
			}
			return nil, sqsErr("InvalidAttributeName", "InvalidAttributeName", "Unknown Attribute %s.", name)
		}
		attrs[name] = v
	}
	if old := s.queues[in.QueueName]; old != nil {
		for name, v := range in.Attributes {
			if old.attrs[name] != v {
				return nil, sqsErr("QueueNameExists", "QueueAlreadyExists", "A queue already exists with the same name and a different value for attribute %s", name)
			}
		}
		return map[string]string{"QueueUrl": old.url}, nil
	}
	q := &queue{name: in.QueueName, url: s.QueueURL(in.QueueName), arn: QueueARN(in.QueueName), created: s.Now(), attrs: attrs}
	secs := map[string]int{}
	for name, bounds := range attrBounds {
		n, err := strconv.Atoi(attrs[name])
		if err != nil || n < bounds[0] || n > bounds[1] {
			return nil, sqsErr("InvalidAttributeValue", "InvalidAttributeValue", "Invalid value for the parameter %s.", name)
		}
		secs[name] = n
	}
	q.visibility = time.Duration(secs["VisibilityTimeout"]) * time.Second
	q.retention = time.Duration(secs["MessageRetentionPeriod"]) * time.Second
	q.delay = time.Duration(secs["DelaySeconds"]) * time.Second
	q.wait = time.Duration(secs["ReceiveMessageWaitTimeSeconds"]) * time.Second
	q.maxSize = secs["MaximumMessageSize"]
	if raw, ok := attrs["RedrivePolicy"]; ok {
		p, err := s.parseRedrive(raw)
		if err != nil {
			return nil, err
		}
		q.redrive = p
	}
	s.queues[q.name] = q
	return map[string]string{"QueueUrl": q.url}, nil
}

// parseRedrive reads a RedrivePolicy; SQS takes maxReceiveCount as a
// number or a string.
func (s *Server) parseRedrive(raw string) (*redrivePolicy, error) {
	var p struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	bad := func(reason string) error {
		return invalidParameter("Value %s for parameter RedrivePolicy is invalid. Reason: %s", raw, reason)
	}
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return nil, bad("Redrive policy is not a valid JSON map.")
	}
	n, err := strconv.Atoi(strings.Trim(string(p.MaxReceiveCount), `"`))
	if err != nil || n < 1 || n > 1000 {
		return nil, bad("Invalid value for maxReceiveCount: must be an integer from 1 to 1000.")
	}
	if s.byARN(p.DeadLetterTargetArn) == nil {
		return nil, bad("Dead letter target does not exist.")
	}
	return &redrivePolicy{DeadLetterTargetArn: p.DeadLetterTargetArn, MaxReceiveCount: n}, nil
}

func (s *Server) getQueueURL(_ context.Context, body []byte) (any, error) {
	var in struct{ QueueName, QueueOwnerAWSAccountId string }
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queues[in.QueueName]
	if q == nil || (in.QueueOwnerAWSAccountId != "" && in.QueueOwnerAWSAccountId != AccountID) {
		return nil, errNoQueue()
	}
	return map[string]string{"QueueUrl": q.url}, nil
}

func (s *Server) getQueueAttributes(_ context.Context, body []byte) (any, error) {
	var in struct {
		QueueUrl       string
		AttributeNames []string
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.lookup(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	s.expire(q, now)
	visible, inFlight, delayed := q.depth(now)
	all := map[string]string{
		"QueueArn":                              q.arn,
		"ApproximateNumberOfMessages":           strconv.Itoa(visible),
		"ApproximateNumberOfMessagesNotVisible": strconv.Itoa(inFlight),
		"ApproximateNumberOfMessagesDelayed":    strconv.Itoa(delayed),
		"CreatedTimestamp":                      strconv.FormatInt(q.created.Unix(), 10),
		"LastModifiedTimestamp":                 strconv.FormatInt(q.created.Unix(), 10),
	}
	for k, v := range q.attrs {
		all[k] = v
	}
	if q.redrive != nil {
		b, _ := json.Marshal(q.redrive)
		all["RedrivePolicy"] = string(b)
	}
	out := map[string]string{}
	for _, name := range in.AttributeNames {
		if name == "All" {
			out = all
			break
		}
		if !isQueueAttribute(name) {
			return nil, sqsErr("InvalidAttributeName", "InvalidAttributeName", "Unknown Attribute %s.", name)
		}
		if v, ok := all[name]; ok {
			out[name] = v
		}
	}
	if len(out) == 0 {
		return map[string]any{}, nil
	}
	return map[string]any{"Attributes": out}, nil
}

// sendEntry is one message to send, from SendMessage or a batch entry.
type sendEntry struct {
	Id                      string
	QueueUrl                string
	MessageBody             *string
	DelaySeconds            *int64
	MessageAttributes       map[string]json.RawMessage
	MessageSystemAttributes map[string]json.RawMessage
	MessageGroupId          *string
	MessageDeduplicationId  *string
}

// validChars is the XML character set SQS allows in a body.
func validChars(body string) (rune, bool) {
	for _, r := range body {
		ok := r == 0x9 || r == 0xA || r == 0xD || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)
		if !ok {
			return r, false
		}
	}
	return 0, true
}

// check validates one message for q.
func (e *sendEntry) check(q *queue) *apiError {
	switch {
	case e.MessageBody == nil || *e.MessageBody == "":
		return invalidParameter("The request must contain the parameter MessageBody.")
	case e.MessageGroupId != nil || e.MessageDeduplicationId != nil:
		return invalidParameter("The request include parameter that is not valid for this queue type")
	case len(e.MessageAttributes) > 0 || len(e.MessageSystemAttributes) > 0:
		return unsupported("fakesqs does not implement message attributes")
	case len(*e.MessageBody) > q.maxSize:
		return invalidParameter("One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", q.maxSize)
	case e.DelaySeconds != nil && (*e.DelaySeconds < 0 || *e.DelaySeconds > 900):
		return invalidParameter("Value %d for parameter DelaySeconds is invalid. Reason: must be between 0 and 900, if provided.", *e.DelaySeconds)
	}
	if r, ok := validChars(*e.MessageBody); !ok {
		return sqsErr("InvalidMessageContents", "InvalidMessageContents", "Invalid binary character '#x%X' was found in the message body, the set of allowed characters is #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF", r)
	}
	return nil
}

// enqueue stores a checked message; s.mu must be held.
func (s *Server) enqueue(q *queue, e *sendEntry, now time.Time) *message {
	sum := md5.Sum([]byte(*e.MessageBody))
	delay := q.delay
	if e.DelaySeconds != nil {
		delay = time.Duration(*e.DelaySeconds) * time.Second
	}
	m := &message{id: newID(), body: *e.MessageBody, md5: hex.EncodeToString(sum[:]), sent: now, visibleAt: now.Add(delay)}
	q.msgs = append(q.msgs, m)
	s.stats.Sent++
	s.notify()
	return m
}

func (s *Server) sendMessage(_ context.Context, body []byte) (any, error) {
	var in sendEntry
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.lookup(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if err := in.check(q); err != nil {
		return nil, err
	}
	m := s.enqueue(q, &in, s.Now())
	return map[string]string{"MessageId": m.id, "MD5OfMessageBody": m.md5}, nil
}

type batchFailure struct {
	Id          string
	SenderFault bool
	Code        string
	Message     string
}

// checkBatch applies the rules every batch operation shares.
func checkBatch(ids []string, entryType string) error {
	switch {
	case len(ids) == 0:
		return sqsErr("EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest", "There should be at least one %s in the request.", entryType)
	case len(ids) > MaxBatchEntries:
		return sqsErr("TooManyEntriesInBatchRequest", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "Maximum number of entries per request are %d. You have sent %d.", MaxBatchEntries, len(ids))
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if !batchIDRE.MatchString(id) {
			return sqsErr("InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId", "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")
		}
		if seen[id] {
			return sqsErr("BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "Id %s repeated.", id)
		}
		seen[id] = true
	}
	return nil
}

func (s *Server) sendMessageBatch(_ context.Context, body []byte) (any, error) {
	var in struct {
		QueueUrl string
		Entries  []sendEntry
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	ids := make([]string, len(in.Entries))
	total := 0
	for i, e := range in.Entries {
		ids[i] = e.Id
		if e.MessageBody != nil {
			total += len(*e.MessageBody)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.lookup(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if err := checkBatch(ids, "SendMessageBatchRequestEntry"); err != nil {
		return nil, err
	}
	if total > MaxMessageBytes {
		return nil, sqsErr("BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", "Batch requests cannot be longer than %d bytes. You have sent %d bytes.", MaxMessageBytes, total)
	}
	type success struct{ Id, MessageId, MD5OfMessageBody string }
	successful, failed := []success{}, []batchFailure{}
	now := s.Now()
	for i := range in.Entries {
		e := &in.Entries[i]
		if err := e.check(q); err != nil {
			failed = append(failed, batchFailure{Id: e.Id, SenderFault: true, Code: err.query, Message: err.msg})
			continue
		}
		if s.failSends > 0 {
			s.failSends--
			failed = append(failed, batchFailure{Id: e.Id, Code: "InternalError", Message: "We encountered an internal error. Please try again."})
			continue
		}
		m := s.enqueue(q, e, now)
		successful = append(successful, success{Id: e.Id, MessageId: m.id, MD5OfMessageBody: m.md5})
	}
	return map[string]any{"Successful": successful, "Failed": failed}, nil
}

func (s *Server) receiveMessage(ctx context.Context, body []byte) (any, error) {
	var in struct {
		QueueUrl                    string
		AttributeNames              []string
		MessageSystemAttributeNames []string
		MessageAttributeNames       []string
		MaxNumberOfMessages         *int64
		VisibilityTimeout           *int64
		WaitTimeSeconds             *int64
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	n := int64(1)
	if in.MaxNumberOfMessages != nil {
		n = *in.MaxNumberOfMessages
		if n < 1 || n > 10 {
			return nil, invalidParameter("Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", n)
		}
	}
	if v := in.VisibilityTimeout; v != nil && (*v < 0 || *v > 43200) {
		return nil, invalidParameter("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided.", *v)
	}
	if v := in.WaitTimeSeconds; v != nil && (*v < 0 || *v > 20) {
		return nil, invalidParameter("Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", *v)
	}
	names := map[string]bool{}
	for _, name := range append(in.AttributeNames, in.MessageSystemAttributeNames...) {
		names[name] = true
	}

	s.mu.Lock()
	q, err := s.lookup(in.QueueUrl)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	visibility, wait := q.visibility, q.wait
	if in.VisibilityTimeout != nil {
		visibility = time.Duration(*in.VisibilityTimeout) * time.Second
	}
	if in.WaitTimeSeconds != nil {
		wait = time.Duration(*in.WaitTimeSeconds) * time.Second
	}
	deadline := s.Now().Add(wait)
	for {
		now := s.Now()
		got := s.take(q, int(n), visibility, now)
		if len(got) > 0 || !now.Before(deadline) {
			out := make([]map[string]any, 0, len(got))
			for _, m := range got {
				out = append(out, m.render(names))
			}
			s.mu.Unlock()
			if len(out) == 0 {
				return map[string]any{}, nil
			}
			return map[string]any{"Messages": out}, nil
		}
		// Sleep until something changes, a delay or timeout ends, or the
		// poll is over; the clock may also be advanced meanwhile.
		wake := deadline
		for _, m := range q.msgs {
			if m.visibleAt.After(now) && m.visibleAt.Before(wake) {
				wake = m.visibleAt
			}
		}
		changed := s.changed
		s.polling++
		s.mu.Unlock()
		timer := time.NewTimer(wake.Sub(now))
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
		}
		timer.Stop()
		s.mu.Lock()
		s.polling--
		if ctx.Err() != nil {
			s.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// take receives up to n visible messages of q, moving those past their
// queue's maxReceiveCount to the dead-letter queue instead; s.mu is held.
func (s *Server) take(q *queue, n int, visibility time.Duration, now time.Time) []*message {
	s.expire(q, now)
	var dlq *queue
	if q.redrive != nil {
		dlq = s.byARN(q.redrive.DeadLetterTargetArn)
	}
	var got []*message
	moved := false
	q.msgs = slices.DeleteFunc(q.msgs, func(m *message) bool {
		if len(got) == n || m.visibleAt.After(now) {
			return false
		}
		if dlq != nil && m.receives >= q.redrive.MaxReceiveCount {
			delete(s.handles, m.handle)
			m.handle, m.visibleAt, m.deadSource = "", now, q.arn
			dlq.msgs = append(dlq.msgs, m)
			s.stats.Redriven++
			moved = true
			return true
		}
		delete(s.handles, m.handle)
		m.receives++
		if m.firstReceive.IsZero() {
			m.firstReceive = now
		}
		m.handle = newHandle()
		m.visibleAt = now.Add(visibility)
		s.handles[m.handle] = m
		got = append(got, m)
		return false
	})
	s.stats.Received += len(got)
	if moved {
		s.notify()
	}
	return got
}

func (m *message) render(names map[string]bool) map[string]any {
	all := names["All"]
	attrs := map[string]string{}
	add := func(name, v string) {
		if all || names[name] {
			attrs[name] = v
		}
	}
	add("ApproximateReceiveCount", strconv.Itoa(m.receives))
	add("ApproximateFirstReceiveTimestamp", strconv.FormatInt(m.firstReceive.UnixMilli(), 10))
	add("SentTimestamp", strconv.FormatInt(m.sent.UnixMilli(), 10))
	add("SenderId", senderID)
	if m.deadSource != "" {
		add("DeadLetterQueueSourceArn", m.deadSource)
	}
	out := map[string]any{"MessageId": m.id, "ReceiptHandle": m.handle, "MD5OfBody": m.md5, "Body": m.body}
	if len(attrs) > 0 {
		out["Attributes"] = attrs
	}
	return out
}

// handleRaw is the random part of a receipt handle; handles look like the
// service's: long base64 starting with "AQEB".
const handleRaw = 96

func newHandle() string {
	b := make([]byte, handleRaw)
	rand.Read(b)
	return "AQEB" + base64.StdEncoding.EncodeToString(b)
}

func validHandle(h string) bool {
	rest, ok := strings.CutPrefix(h, "AQEB")
	if !ok {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(rest)
	return err == nil && len(b) == handleRaw
}

func errBadHandle(h string) *apiError {
	return sqsErr("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", "The input receipt handle %q is not a valid receipt handle.", h)
}

// deleteByHandle deletes the message h was last received with; an older
// handle (or one of a deleted message) deletes nothing and is no error.
func (s *Server) deleteByHandle(q *queue, h string) *apiError {
	if !validHandle(h) {
		return errBadHandle(h)
	}
	m := s.handles[h]
	if m == nil {
		return nil
	}
	i := slices.Index(q.msgs, m)
	if i < 0 {
		return errBadHandle(h) // a handle of another queue
	}
	q.msgs = slices.Delete(q.msgs, i, i+1)
	delete(s.handles, h)
	s.stats.Deleted++
	return nil
}

func (s *Server) deleteMessage(_ context.Context, body []byte) (any, error) {
	var in struct{ QueueUrl, ReceiptHandle string }
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.lookup(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if err := s.deleteByHandle(q, in.ReceiptHandle); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}

func (s *Server) deleteMessageBatch(_ context.Context, body []byte) (any, error) {
	var in struct {
		QueueUrl string
		Entries  []struct{ Id, ReceiptHandle string }
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	ids := make([]string, len(in.Entries))
	for i, e := range in.Entries {
		ids[i] = e.Id
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.lookup(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if err := checkBatch(ids, "DeleteMessageBatchRequestEntry"); err != nil {
		return nil, err
	}
	type success struct{ Id string }
	successful, failed := []success{}, []batchFailure{}
	for _, e := range in.Entries {
		if err := s.deleteByHandle(q, e.ReceiptHandle); err != nil {
			failed = append(failed, batchFailure{Id: e.Id, SenderFault: true, Code: err.query, Message: err.msg})
			continue
		}
		successful = append(successful, success{Id: e.Id})
	}
	return map[string]any{"Successful": successful, "Failed": failed}, nil
}

func (s *Server) changeMessageVisibility(_ context.Context, body []byte) (any, error) {
	var in struct {
		QueueUrl, ReceiptHandle string
		VisibilityTimeout       *int64
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if v := in.VisibilityTimeout; v == nil || *v < 0 || *v > 43200 {
		return nil, invalidParameter("Value for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.lookup(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if !validHandle(in.ReceiptHandle) {
		return nil, errBadHandle(in.ReceiptHandle)
	}
	m := s.handles[in.ReceiptHandle]
	if m == nil || !slices.Contains(q.msgs, m) {
		return nil, invalidParameter("Value %s for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.", in.ReceiptHandle)
	}
	now := s.Now()
	if !m.visibleAt.After(now) {
		return nil, sqsErr("MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight", "Message with receipt handle %s is not in flight.", in.ReceiptHandle)
	}
	m.visibleAt = now.Add(time.Duration(*in.VisibilityTimeout) * time.Second)
	s.notify()
	return map[string]any{}, nil
}

func (s *Server) purgeQueue(_ context.Context, body []byte) (any, error) {
	var in struct{ QueueUrl string }
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.lookup(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	now := s.Now()
	if !q.lastPurge.IsZero() && now.Sub(q.lastPurge) < PurgeInterval {
		return nil, sqsErr("PurgeQueueInProgress", "AWS.SimpleQueueService.PurgeQueueInProgress", "Only one PurgeQueue operation on %s is allowed every %d seconds.", q.name, int(PurgeInterval.Seconds()))
	}
	q.lastPurge = now
	for _, m := range q.msgs {
		delete(s.handles, m.handle)
	}
	s.stats.Purged += len(q.msgs)
	q.msgs = nil
	s.notify()
	return map[string]any{}, nil
}
