package download

import (
	"context"
	"io"
	"sync"
	"time"
)

// progress batches a task's byte counts into AddProgress writes, at most
// one per cfg.ProgressEvery.
type progress struct {
	s       *Service
	t       Task
	mu      sync.Mutex
	pending int64
	sent    int64
	last    time.Time
}

func newProgress(s *Service, t Task) *progress { return &progress{s: s, t: t, last: s.now()} }

func (p *progress) add(n int64) {
	p.mu.Lock()
	p.pending += n
	due := p.s.now().Sub(p.last) >= p.s.cfg.ProgressEvery
	p.mu.Unlock()
	if due {
		p.flush(context.Background())
	}
}

// reset takes back what a failed attempt reported, so a retry does not
// count bytes twice.
func (p *progress) reset() {
	p.mu.Lock()
	p.pending = -p.sent // unsent bytes are dropped; sent ones taken back
	p.mu.Unlock()
}

func (p *progress) flush(ctx context.Context) {
	p.mu.Lock()
	n := p.pending
	p.pending = 0
	p.sent += n
	p.last = p.s.now()
	p.mu.Unlock()
	if n == 0 {
		return
	}
	if err := p.s.jobs.AddProgress(ctx, p.t.JobID, p.t.Layer, n); err != nil {
		p.s.log.Warn("recording progress", "job", p.t.JobID, "err", err)
	}
}

// reader counts what r delivers as progress and as bytes from registries.
func (p *progress) reader(r io.Reader) io.Reader { return &countingReader{r: r, p: p} }

type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if n > 0 {
		c.p.add(int64(n))
		c.p.s.metrics.RegistryBytes(int64(n))
	}
	return n, err
}
