package download

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tarport/tarport/shared/limits"
	"github.com/tarport/tarport/shared/tarport"
)

// TestCreateChargesTheQuota: a request is charged its tar's exact size
// before any job exists; one that does not fit makes no job and queues no
// layer; asking again for the same tar is not charged twice; the warm (no
// client) is never charged.
func TestCreateChargesTheQuota(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	small := newTestImage(t, "registry.example/team/small:v1", 1, 1000)
	big := newTestImage(t, "registry.example/team/big:v1", 2, 100_000)
	h.serve(small)
	h.serve(big)
	store := limits.NewMemory()
	h.svc.SetQuota(limits.New(store, limits.Rules{ClientPerDay: 60_000}, nil))

	first, _ := create(t, h, Request{Image: "registry.example/team/small:v1", Client: "192.0.2.1"})
	again, _ := create(t, h, Request{Image: "registry.example/team/small:v1", Client: "192.0.2.1"})
	if again.ID != first.ID {
		t.Fatalf("the second request made job %s, want %s", again.ID, first.ID)
	}
	used := func(client string) (n int64) {
		buckets, err := store.Usage(context.Background(), "client#"+client, first.CreatedAt.Add(-limits.Day))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range buckets {
			n += b.Bytes
		}
		return n
	}
	if n := used("192.0.2.1"); n != first.TotalBytes {
		t.Fatalf("charged %d bytes for a %d-byte tar asked for twice", n, first.TotalBytes)
	}

	batches := h.queue.batchCount()
	_, err := h.svc.Create(context.Background(), Request{Image: "registry.example/team/big:v1", Client: "192.0.2.1"})
	var te *tarport.Error
	if !errors.As(err, &te) || te.Code != tarport.CodeQuotaExceeded || te.RetryAfter <= 0 {
		t.Fatalf("a tar past the quota: %v, want quota_exceeded with Retry-After", err)
	}
	if h.queue.batchCount() != batches || h.jobs.count() != 1 {
		t.Fatalf("a refused request queued work (%d batches, was %d) or made a job (%d jobs)", h.queue.batchCount(), batches, h.jobs.count())
	}
	// The warm asks without a client: not charged, not refused.
	if _, err := h.svc.Create(context.Background(), Request{Image: "registry.example/team/big:v1"}); err != nil {
		t.Fatalf("the warm's request: %v", err)
	}
	if n := used(""); n != 0 {
		t.Fatalf("the warm was charged %d bytes", n)
	}
}

// TestResumeStopsOnABrokenStore: a private job cannot resume and is
// failed; a store that cannot record even that stops Resume (and the
// server's start) with its error instead of going on as if it had.
func TestResumeStopsOnABrokenStore(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.jobs.put(tarport.Job{ID: "p", Status: tarport.StatusFetching, Private: true, Remaining: 1})
	h.jobs.statusErr = errors.New("disk full")
	if err := h.svc.Resume(context.Background(), []tarport.Job{h.jobs.job(t, "p")}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Resume over a store that cannot fail a job: %v", err)
	}
}
