package download

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/tarport"
)

// splitConfig splits layers over 6 MiB into 5 MiB ranges (S3's minimum
// part, the smallest range the service allows).
func splitConfig() Config {
	return Config{SplitAbove: 6 << 20, RangeSize: 1, ProgressEvery: time.Nanosecond}
}

// runQueued runs queued tasks, new ones included, until none is left: in a
// random order, some of them twice (at-least-once delivery), and reports
// how many ran.
func runQueued(t *testing.T, h *harness, seed uint64, twice bool) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	done := 0
	for round := 0; ; round++ {
		tasks := h.queue.tasks()[done:]
		if len(tasks) == 0 {
			return done
		}
		if round == 100 {
			t.Fatalf("tasks still queued after %d rounds (%d ran): a task that never ends", round, done)
		}
		done += len(tasks)
		rng.Shuffle(len(tasks), func(i, j int) { tasks[i], tasks[j] = tasks[j], tasks[i] })
		for _, task := range tasks {
			runs := 1
			if twice && rng.IntN(2) == 0 {
				runs = 2
			}
			for range runs {
				if err := h.svc.RunTask(context.Background(), task); err != nil {
					t.Fatalf("RunTask(%+v): %v", task, err)
				}
			}
		}
	}
}

// TestSplitLayer: a layer over the threshold becomes range tasks; run in
// any order and redelivered, they leave the verified entry in the cache
// and the tar byte-identical to a directly written one.
func TestSplitLayer(t *testing.T) {
	t.Parallel()
	for _, twice := range []bool{false, true} {
		h := newHarness(t, splitConfig())
		// 12 MiB + 700 bytes: header, 3 ranges (5, 5, 2 MiB+), a ragged end.
		ti := newTestImage(t, "registry.example/team/huge:v1", 41, 12<<20+700, 1000)
		h.serve(ti)
		v, tasks := create(t, h, Request{Image: "registry.example/team/huge:v1"})
		big := ti.img.Layers[0]
		if got := v.Layers[0].Parts; got != 3 {
			t.Fatalf("layer of %d bytes split into %d parts, want 3", big.Size, got)
		}
		if len(tasks) != 4 || v.Layers[1].Parts != 0 {
			t.Fatalf("%d tasks, small layer parts %d; want 3 ranges + 1 whole layer", len(tasks), v.Layers[1].Parts)
		}
		var covered int64
		for _, task := range tasks[:3] {
			if task.Kind != KindRange || task.Range == nil || task.Range.Offset != covered || task.Range.ID == "" || task.Range.Parts != 3 || task.Validate() != nil {
				t.Fatalf("range task %+v (range %+v), want offset %d", task, task.Range, covered)
			}
			covered += task.Range.Length
		}
		if want, _, _ := entryLen(big); covered != want {
			t.Fatalf("ranges cover %d bytes, the entry has %d", covered, want)
		}

		runQueued(t, h, 7, twice)
		job := h.jobs.job(t, v.ID)
		if job.Status != tarport.StatusReady || job.Remaining != 0 {
			t.Fatalf("job %s, %d remaining", job.Status, job.Remaining)
		}
		tar, _ := h.objs.object(job.TarKey)
		if d := firstDiff(tar, expectedTar(t, planOf(t, ti.img), ti.blobs)); d != "" {
			t.Fatalf("twice=%v: tar differs: %s", twice, d)
		}
		h.objs.mu.Lock()
		ranges := h.objs.ranges
		h.objs.mu.Unlock()
		if ranges < 2 {
			t.Errorf("the verify task made %d ranged reads of the %d-byte entry; want it read ahead in ranges", ranges, covered)
		}
		entry, _ := h.objs.object(EntryKey(testOrigin, big.Digest))
		if !bytes.Equal(entry, entryBytes(t, ti.blobs[big.Digest])) {
			t.Fatal("the cached entry is not the layer's entry")
		}
		if _, ok := h.objs.object(StagingKey(job.ID, big.Digest)); ok || h.objs.openUploads() != 0 {
			t.Fatalf("staging left: objects %v, %d uploads", h.objs.keys(), h.objs.openUploads())
		}
		if n := h.jobs.finishCount(job.ID, 0); !twice && n != 1 {
			t.Fatalf("the split layer was finished %d times", n)
		}
		if !twice { // a redelivered range reports its bytes again (the store clamps)
			checkProgress(t, h, Task{JobID: job.ID, Layer: 0, Desc: big})
		} else if l := job.Layers[0]; l.DoneBytes != l.Size || !l.Finished {
			t.Fatalf("split layer done %d of %d, finished %v", l.DoneBytes, l.Size, l.Finished)
		}
		if h.objs.stitchCount() != 1 {
			t.Fatalf("%d stitches", h.objs.stitchCount())
		}
	}
}

// TestSplitLayerCorrupt: a registry sending wrong bytes for a range fails
// the job with digest_mismatch once the whole entry is hashed; nothing
// unverified reaches the entry cache.
func TestSplitLayerCorrupt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, splitConfig())
	ti := newTestImage(t, "registry.example/team/huge:v1", 42, 11<<20)
	h.serve(ti)
	big := ti.img.Layers[0]
	h.reg.corrupt = map[digest.Digest]bool{big.Digest: true}
	v, _ := create(t, h, Request{Image: "registry.example/team/huge:v1"})
	runQueued(t, h, 1, false)
	job := h.jobs.job(t, v.ID)
	if job.Status != tarport.StatusFailed || job.Error == nil || job.Error.Code != tarport.CodeDigestMismatch {
		t.Fatalf("job %s %+v, want failed digest_mismatch", job.Status, job.Error)
	}
	for _, k := range h.objs.keys() {
		if k == EntryKey(testOrigin, big.Digest) || k == StagingKey(job.ID, big.Digest) {
			t.Fatalf("%s stored after a mismatch", k)
		}
	}
}

// TestSplitSkipsCachedLayers: a layer already in the entry cache is not
// fetched again, split or not: its one task checks access only.
func TestSplitSkipsCachedLayers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, splitConfig())
	ti := newTestImage(t, "registry.example/team/huge:v1", 43, 7<<20)
	h.serve(ti)
	big := ti.img.Layers[0]
	if err := h.objs.Put(context.Background(), EntryKey(testOrigin, big.Digest), bytes.NewReader(entryBytes(t, ti.blobs[big.Digest])), int64(len(entryBytes(t, ti.blobs[big.Digest])))); err != nil {
		t.Fatal(err)
	}
	v, tasks := create(t, h, Request{Image: "registry.example/team/huge:v1"})
	if len(tasks) != 1 || tasks[0].Kind != KindLayer || v.Layers[0].Parts != 0 {
		t.Fatalf("tasks %+v", tasks)
	}
	runQueued(t, h, 1, false)
	if job := h.jobs.job(t, v.ID); job.Status != tarport.StatusReady || h.reg.ranges != 0 || h.reg.totalOpens() != 0 {
		t.Fatalf("job %s, %d range reads, %d blob reads", job.Status, h.reg.ranges, h.reg.totalOpens())
	}
}

// splitToVerify makes a job of one 11 MiB layer (seeded), runs its range
// tasks and returns the verify task they queued, not yet run.
func splitToVerify(t *testing.T, seed uint64) (*harness, View, Task) {
	t.Helper()
	h := newHarness(t, splitConfig())
	h.serve(newTestImage(t, "registry.example/team/huge:v1", seed, 11<<20))
	v, tasks := create(t, h, Request{Image: "registry.example/team/huge:v1"})
	for _, task := range tasks {
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	all := h.queue.tasks()
	verify := all[len(all)-1]
	if verify.Kind != KindVerify || verify.Validate() != nil {
		t.Fatalf("the last queued task is not a verify task: %+v", verify)
	}
	return h, v, verify
}

// TestSplitVerifyRacing: duplicate verify tasks racing each other (a
// redelivered last range queues another) count the layer once and stitch
// once.
func TestSplitVerifyRacing(t *testing.T) {
	t.Parallel()
	h, v, verify := splitToVerify(t, 44)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := h.svc.RunTask(context.Background(), verify); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	job := h.jobs.job(t, v.ID)
	if job.Status != tarport.StatusReady || h.objs.stitchCount() != 1 || job.Remaining != 0 {
		t.Fatalf("job %s, %d stitches, %d remaining", job.Status, h.objs.stitchCount(), job.Remaining)
	}
}

// TestSplitVerifyMovedWhileRead: a verify task whose staging entry a
// duplicate verify moved while it was reading it (its reads then fail)
// finds the entry stored and counts the layer, rather than failing.
func TestSplitVerifyMovedWhileRead(t *testing.T) {
	t.Parallel()
	h, v, verify := splitToVerify(t, 46)
	// The duplicate runs whole when the first verify starts reading (its
	// own reads pass through).
	var duplicate atomic.Bool
	h.objs.onRange = func(string) {
		if duplicate.CompareAndSwap(false, true) {
			if err := h.svc.RunTask(context.Background(), verify); err != nil {
				t.Errorf("the duplicate verify: %v", err)
			}
		}
	}
	if err := h.svc.RunTask(context.Background(), verify); err != nil {
		t.Fatalf("the verify whose staging entry was moved: %v", err)
	}
	job := h.jobs.job(t, v.ID)
	if !duplicate.Load() || job.Status != tarport.StatusReady || h.objs.stitchCount() != 1 {
		t.Fatalf("duplicate ran: %v; job %s, %d stitches", duplicate.Load(), job.Status, h.objs.stitchCount())
	}
}

// TestSplitOffByDefault: without SplitAbove every layer is one task.
func TestSplitOffByDefault(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/huge:v1", 45, 11<<20)
	h.serve(ti)
	v, tasks := create(t, h, Request{Image: "registry.example/team/huge:v1"})
	if len(tasks) != 1 || tasks[0].Kind != KindLayer || v.Layers[0].Parts != 0 {
		t.Fatalf("tasks %+v", tasks)
	}
}

// TestStitchTakenOverAfterItStalled: a stitch cut short (the worker's
// deadline) leaves the job assembling with nothing remaining; a later
// delivery of one of its tasks takes the stitch over once the lease has
// passed, and not before.
func TestStitchTakenOverAfterItStalled(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	task, _ := oneLayerJob(t, h, 51, 3000)
	ctx, cancel := context.WithCancel(context.Background())
	h.objs.stitch = func(context.Context, string) error {
		cancel() // the worker dies mid-stitch
		return context.Canceled
	}
	if err := h.svc.RunTask(ctx, task); !errors.Is(err, context.Canceled) {
		t.Fatalf("cut stitch: %v", err)
	}
	h.objs.stitch = nil
	if job := h.jobs.job(t, task.JobID); job.Status != tarport.StatusAssembling || job.Remaining != 0 {
		t.Fatalf("after the cut: %s, %d remaining", job.Status, job.Remaining)
	}
	// Redelivered at once (a duplicate): the stitch may still be running.
	if err := h.svc.RunTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	if job := h.jobs.job(t, task.JobID); job.Status != tarport.StatusAssembling || h.objs.stitchCount() != 1 {
		t.Fatalf("a duplicate within the lease stitched: %s, %d stitches", job.Status, h.objs.stitchCount())
	}
	// Redelivered after the visibility timeout: the lease has passed.
	h.svc.now = func() time.Time { return time.Now().Add(stitchLease + time.Minute) }
	if err := h.svc.RunTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	if job := h.jobs.job(t, task.JobID); job.Status != tarport.StatusReady || h.objs.stitchCount() != 2 {
		t.Fatalf("after the lease: %s, %d stitches", job.Status, h.objs.stitchCount())
	}
}

// TestSplitRangeRedeliveredLate: a range task delivered again after the
// verify task completed the staging upload, or after the entry was
// stored, finds its bytes in and neither fetches nor fails the job.
func TestSplitRangeRedeliveredLate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, splitConfig())
	ti := newTestImage(t, "registry.example/team/huge:v1", 52, 11<<20, 1000)
	h.serve(ti)
	v, tasks := create(t, h, Request{Image: "registry.example/team/huge:v1"})
	var ranges []Task
	for _, task := range tasks {
		if task.Kind == KindRange {
			ranges = append(ranges, task)
		}
	}
	for _, task := range ranges {
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	all := h.queue.tasks()
	verify := all[len(all)-1]
	// The verify completes the upload but dies before moving the entry.
	if err := h.objs.FinishParts(context.Background(), StagingKey(v.ID, verify.Desc.Digest), verify.Verify.ID, verify.Verify.Parts); err != nil {
		t.Fatal(err)
	}
	before := h.reg.ranges
	if err := h.svc.RunTask(context.Background(), ranges[1]); err != nil {
		t.Fatal(err)
	}
	if job := h.jobs.job(t, v.ID); job.Status.Terminal() || h.reg.ranges != before {
		t.Fatalf("late range: job %s %+v, %d new range reads", job.Status, job.Error, h.reg.ranges-before)
	}
	runQueued(t, h, 3, false)
	if err := h.svc.RunTask(context.Background(), ranges[0]); err != nil {
		t.Fatal(err)
	}
	if job := h.jobs.job(t, v.ID); job.Status != tarport.StatusReady {
		t.Fatalf("job %s %+v", job.Status, job.Error)
	}
}

// TestFailureThatCannotBeRecorded: a task whose job cannot be marked
// failed returns the error, so the queue brings it back instead of the job
// hanging.
func TestFailureThatCannotBeRecorded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{Attempts: 1})
	task, _ := oneLayerJob(t, h, 53, 3000)
	h.reg.open = func(context.Context, descriptor.Descriptor, int) (io.ReadCloser, error) {
		return nil, tarport.Errorf(tarport.CodeForbidden, "denied")
	}
	h.jobs.statusErr = errors.New("table throttled")
	if err := h.svc.RunTask(context.Background(), task); err == nil {
		t.Fatal("RunTask hid a failure it could not record")
	}
	h.jobs.statusErr = nil
	if err := h.svc.RunTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	if job := h.jobs.job(t, task.JobID); job.Status != tarport.StatusFailed || job.Error.Code != tarport.CodeForbidden {
		t.Fatalf("job %s %+v", job.Status, job.Error)
	}
}

// TestStalledQueuedJobReplaced: a job whose creator died before queueing
// its tasks stays queued; a request for the same image after stallAfter
// fails it and makes a new job, rather than joining it forever. Before
// then the request joins it.
func TestStalledQueuedJobReplaced(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/app:v1", 54, 3000)
	h.serve(ti)
	first, _ := create(t, h, Request{Image: "registry.example/team/app:v1"})
	if again, _ := create(t, h, Request{Image: "registry.example/team/app:v1"}); again.ID != first.ID {
		t.Fatalf("a fresh queued job was not joined: %s vs %s", again.ID, first.ID)
	}
	h.svc.now = func() time.Time { return time.Now().Add(stallAfter + time.Minute) }
	h.jobs.now = h.svc.now
	later, tasks := create(t, h, Request{Image: "registry.example/team/app:v1"})
	if later.ID == first.ID || len(tasks) != 1 {
		t.Fatalf("the stalled job was joined (%s), %d new tasks", later.ID, len(tasks))
	}
	if old := h.jobs.job(t, first.ID); old.Status != tarport.StatusFailed || old.Error.Code != tarport.CodeUnavailable {
		t.Fatalf("the stalled job: %s %+v", old.Status, old.Error)
	}
}
