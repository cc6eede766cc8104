package httpapi

import (
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tarport/tarport/shared/tarport"
)

// A streamed tar holds a goroutine, open files and a connection for as
// long as its job and its client take: their number is bounded, per
// client and in all, and a client that stops reading is cut.
const (
	// MaxStreamsPerClient and MaxStreams bound the tars streamed at once.
	MaxStreamsPerClient = 4
	MaxStreams          = 64
	// DefaultStreamIdle is how long one write of a stream may wait for
	// the client (a write is at most a few MiB: 16 MiB per 2 minutes is
	// the slowest client kept).
	DefaultStreamIdle = 2 * time.Minute
)

// streamSlots counts the streams in progress.
type streamSlots struct {
	mu       sync.Mutex
	total    int
	byClient map[string]int
}

// acquire takes a slot for client, or says why there is none.
func (s *streamSlots) acquire(client string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byClient == nil {
		s.byClient = map[string]int{}
	}
	switch {
	case s.byClient[client] >= MaxStreamsPerClient:
		e := tarport.Errorf(tarport.CodeRateLimited, "%d downloads from your address are streaming already; let one finish first", MaxStreamsPerClient)
		e.RetryAfter = 10
		return nil, e
	case s.total >= MaxStreams:
		e := tarport.Errorf(tarport.CodeUnavailable, "this server streams %d downloads already; try again shortly", MaxStreams)
		e.RetryAfter = 10
		return nil, e
	}
	s.byClient[client]++
	s.total++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.total--
		if s.byClient[client]--; s.byClient[client] <= 0 {
			delete(s.byClient, client)
		}
	}, nil
}

// idleWriter gives every write to the client streamIdle to complete, so
// a client that stops reading is cut rather than held forever.
type idleWriter struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

func newIdleWriter(w http.ResponseWriter, idle time.Duration) *idleWriter {
	return &idleWriter{w: w, rc: http.NewResponseController(w), idle: idle}
}

func (i *idleWriter) arm() { _ = i.rc.SetWriteDeadline(time.Now().Add(i.idle)) }

func (i *idleWriter) Write(b []byte) (int, error) {
	i.arm()
	return i.w.Write(b)
}

// ReadFrom keeps the connection's sendfile path, one deadline per call
// (the stores hand files over a few MiB at a time).
func (i *idleWriter) ReadFrom(r io.Reader) (int64, error) {
	i.arm()
	return io.Copy(i.w, r)
}

// done lifts the deadline: the connection may serve other requests.
func (i *idleWriter) done() { _ = i.rc.SetWriteDeadline(time.Time{}) }
