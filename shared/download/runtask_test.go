package download

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/tarport"
)

// oneLayerJob creates a job for an image of one layer of size bytes and
// returns its task and the layer's bytes.
func oneLayerJob(t *testing.T, h *harness, seed uint64, size int64) (Task, []byte) {
	t.Helper()
	ti := newTestImage(t, "registry.example/team/one:v1", seed, size)
	h.serve(ti)
	_, tasks := create(t, h, Request{Image: "registry.example/team/one:v1"})
	if len(tasks) != 1 {
		t.Fatalf("%d tasks, want 1", len(tasks))
	}
	return tasks[0], ti.blobs[tasks[0].Desc.Digest]
}

// checkProgress: the deltas a layer's task reported add up to its size,
// and their running sum never left [0, size] (no double count).
func checkProgress(t *testing.T, h *harness, task Task) {
	t.Helper()
	deltas := h.jobs.deltaList(task.JobID, task.Layer)
	var sum int64
	for i, d := range deltas {
		sum += d
		if sum < 0 || sum > task.Desc.Size {
			t.Errorf("layer %d: progress after %d deltas is %d, outside [0, %d]: %v", task.Layer, i+1, sum, task.Desc.Size, deltas)
			return
		}
	}
	if sum != task.Desc.Size {
		t.Errorf("layer %d: progress deltas add up to %d, want its size %d (%v)", task.Layer, sum, task.Desc.Size, deltas)
	}
	if l := h.jobs.job(t, task.JobID).Layers[task.Layer]; l.DoneBytes != l.Size || !l.Finished {
		t.Errorf("layer %d: done %d of %d, finished %v", task.Layer, l.DoneBytes, l.Size, l.Finished)
	}
}

// TestRunTaskStoresTheExactEntry: the entry is header + blob + padding,
// for sizes around the 512-byte block, and the last layer stitches.
func TestRunTaskStoresTheExactEntry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{ProgressEvery: time.Nanosecond})
	ti := newTestImage(t, "registry.example/team/app:v1", 10, 0, 1, 511, 512, 513, 10_000)
	h.serve(ti)
	v, tasks := create(t, h, Request{Image: "registry.example/team/app:v1"})
	for _, task := range tasks {
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatalf("RunTask(layer %d): %v", task.Layer, err)
		}
		got, ok := h.objs.object(EntryKey(testOrigin, task.Desc.Digest))
		if !ok {
			t.Fatalf("layer %d: no entry stored", task.Layer)
		}
		if d := firstDiff(got, entryBytes(t, ti.blobs[task.Desc.Digest])); d != "" {
			t.Errorf("entry of layer %d (%d bytes): %s", task.Layer, task.Desc.Size, d)
		}
		if n := h.reg.openCount(task.Desc.Digest); n != 1 {
			t.Errorf("layer %d opened %d times", task.Layer, n)
		}
		checkProgress(t, h, task)
	}
	job := h.jobs.job(t, v.ID)
	if job.Status != tarport.StatusReady || job.Remaining != 0 || h.objs.stitchCount() != 1 {
		t.Fatalf("job %s, remaining %d, %d stitches", job.Status, job.Remaining, h.objs.stitchCount())
	}
	if st := h.jobs.statusCalls(v.ID); len(st) != 3 || st[0] != tarport.StatusFetching || st[1] != tarport.StatusAssembling || st[2] != tarport.StatusReady {
		t.Errorf("status moves %v, want fetching, assembling, ready", st)
	}
	tar, _ := h.objs.object(v.TarKey)
	if d := firstDiff(tar, expectedTar(t, planOf(t, ti.img), ti.blobs)); d != "" {
		t.Errorf("tar: %s", d)
	}
}

// TestRunTaskUsesTheCachedEntry: an entry of the expected length costs no
// registry traffic; one of another length is fetched again.
func TestRunTaskUsesTheCachedEntry(t *testing.T) {
	t.Parallel()
	t.Run("cached", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		task, blob := oneLayerJob(t, h, 11, 3000)
		entry := entryBytes(t, blob)
		if err := h.objs.Put(context.Background(), EntryKey(testOrigin, task.Desc.Digest), bytes.NewReader(entry), int64(len(entry))); err != nil {
			t.Fatal(err)
		}
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
		if n := h.reg.totalOpens(); n != 0 {
			t.Errorf("%d OpenBlob calls for a cached entry, want 0", n)
		}
		if n := h.objs.putCount(EntryKey(testOrigin, task.Desc.Digest)); n != 1 {
			t.Errorf("entry put %d times, want only the test's", n)
		}
		if n := h.jobs.finishCount(task.JobID, task.Layer); n != 1 {
			t.Errorf("FinishLayer called %d times, want 1", n)
		}
		checkProgress(t, h, task)
		if job := h.jobs.job(t, task.JobID); job.Status != tarport.StatusReady {
			t.Errorf("job %s, want ready", job.Status)
		}
	})
	t.Run("cached for someone else, refused for this requester", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		task, blob := oneLayerJob(t, h, 13, 3000)
		entry := entryBytes(t, blob)
		if err := h.objs.Put(context.Background(), EntryKey(testOrigin, task.Desc.Digest), bytes.NewReader(entry), int64(len(entry))); err != nil {
			t.Fatal(err)
		}
		h.reg.denied = map[string]bool{"mallory": true}
		task.Creds = tarport.Credentials{Username: "mallory", Password: "x"}
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
		job := h.jobs.job(t, task.JobID)
		if job.Status != tarport.StatusFailed || job.Error == nil || job.Error.Code != tarport.CodeUnauthorized {
			t.Fatalf("job %s %+v, want failed with unauthorized", job.Status, job.Error)
		}
		if h.reg.checks != 1 || h.reg.totalOpens() != 0 {
			t.Errorf("%d checks, %d opens; want 1 check and no fetch", h.reg.checks, h.reg.totalOpens())
		}
	})
	t.Run("wrong length", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		task, blob := oneLayerJob(t, h, 12, 3000)
		entry := entryBytes(t, blob)
		short := entry[:len(entry)-512]
		if err := h.objs.Put(context.Background(), EntryKey(testOrigin, task.Desc.Digest), bytes.NewReader(short), int64(len(short))); err != nil {
			t.Fatal(err)
		}
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
		got, _ := h.objs.object(EntryKey(testOrigin, task.Desc.Digest))
		if h.reg.totalOpens() != 1 || !bytes.Equal(got, entry) {
			t.Errorf("%d opens, entry %d bytes (want %d)", h.reg.totalOpens(), len(got), len(entry))
		}
	})
}

// TestRunTaskRetriesACorruptTransfer: the first stream fails at EOF with
// digest_mismatch, the second is good. The entry is stored once and the
// progress of the failed attempt is taken back, whether it was flushed
// (ProgressEvery tiny) or not.
func TestRunTaskRetriesACorruptTransfer(t *testing.T) {
	t.Parallel()
	for _, every := range []time.Duration{time.Nanosecond, time.Hour} {
		t.Run(every.String(), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Config{ProgressEvery: every, Attempts: 3})
			task, blob := oneLayerJob(t, h, 13, 50_000)
			h.reg.open = func(_ context.Context, d descriptor.Descriptor, attempt int) (io.ReadCloser, error) {
				if attempt == 1 {
					return &failAtEOF{r: chunked(bytes.NewReader(blob), 1000), err: tarport.Errorf(tarport.CodeDigestMismatch, "blob %s did not match", d.Digest)}, nil
				}
				return verifying(d, chunked(bytes.NewReader(blob), 1000)), nil
			}
			if err := h.svc.RunTask(context.Background(), task); err != nil {
				t.Fatal(err)
			}
			key := EntryKey(testOrigin, task.Desc.Digest)
			got, _ := h.objs.object(key)
			if h.reg.openCount(task.Desc.Digest) != 2 || h.objs.putCount(key) != 1 || h.objs.failed != 1 {
				t.Errorf("%d opens, %d stored puts, %d failed puts; want 2, 1, 1", h.reg.openCount(task.Desc.Digest), h.objs.putCount(key), h.objs.failed)
			}
			if !bytes.Equal(got, entryBytes(t, blob)) {
				t.Errorf("entry is not header+blob+padding")
			}
			if job := h.jobs.job(t, task.JobID); job.Status != tarport.StatusReady {
				t.Errorf("job %s %+v, want ready", job.Status, job.Error)
			}
			checkProgress(t, h, task)
		})
	}
}

// TestRunTaskFailsAfterEveryAttempt: a blob that never matches fails the
// job with digest_mismatch after Attempts attempts, and stores nothing.
func TestRunTaskFailsAfterEveryAttempt(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{Attempts: 2})
	task, blob := oneLayerJob(t, h, 14, 5000)
	corrupt := bytes.Clone(blob)
	corrupt[100] ^= 1
	h.reg.blobs[task.Desc.Digest] = corrupt
	if err := h.svc.RunTask(context.Background(), task); err != nil {
		t.Fatalf("RunTask: %v; a failed job is the task's outcome, not a redelivery", err)
	}
	job := h.jobs.job(t, task.JobID)
	if job.Status != tarport.StatusFailed || job.Error == nil || job.Error.Code != tarport.CodeDigestMismatch {
		t.Fatalf("job %s %+v; want failed with digest_mismatch", job.Status, job.Error)
	}
	if n := h.reg.openCount(task.Desc.Digest); n != 2 {
		t.Errorf("%d attempts, want Config.Attempts = 2", n)
	}
	if _, ok := h.objs.object(EntryKey(testOrigin, task.Desc.Digest)); ok {
		t.Errorf("an unverified entry was stored")
	}
	if n := h.jobs.finishCount(task.JobID, task.Layer); n != 0 || h.objs.stitchCount() != 0 {
		t.Errorf("%d FinishLayer, %d stitches after a failure", n, h.objs.stitchCount())
	}
}

// TestRunTaskDoesNotRetryRefusals: a registry refusal will not change on
// another attempt: the job fails after one.
func TestRunTaskDoesNotRetryRefusals(t *testing.T) {
	t.Parallel()
	for _, code := range []tarport.Code{tarport.CodeUnauthorized, tarport.CodeForbidden, tarport.CodeNotFound, tarport.CodeBlockedAddress} {
		h := newHarness(t, Config{Attempts: 3})
		task, _ := oneLayerJob(t, h, 15, 100)
		h.reg.open = func(context.Context, descriptor.Descriptor, int) (io.ReadCloser, error) {
			return nil, tarport.Errorf(code, "refused")
		}
		start := time.Now()
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
		job := h.jobs.job(t, task.JobID)
		if job.Status != tarport.StatusFailed || job.Error == nil || job.Error.Code != code || job.Error.Message != "refused" {
			t.Errorf("%s: job %s %+v", code, job.Status, job.Error)
		}
		if n := h.reg.openCount(task.Desc.Digest); n != 1 || time.Since(start) > time.Second {
			t.Errorf("%s: %d attempts in %v, want 1 at once", code, n, time.Since(start))
		}
	}
}

func TestRunTaskOfATerminalJobIsANoOp(t *testing.T) {
	t.Parallel()
	for _, st := range []tarport.Status{tarport.StatusReady, tarport.StatusFailed} {
		h := newHarness(t, Config{})
		task, _ := oneLayerJob(t, h, 16, 100)
		if err := h.jobs.SetStatus(context.Background(), task.JobID, st, nil); err != nil {
			t.Fatal(err)
		}
		before := len(h.jobs.statusCalls(task.JobID))
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Errorf("%s: RunTask: %v", st, err)
		}
		if h.reg.totalOpens() != 0 || h.jobs.finishCount(task.JobID, 0) != 0 || len(h.jobs.statusCalls(task.JobID)) != before || h.objs.stitchCount() != 0 {
			t.Errorf("%s: the task of a terminal job did work", st)
		}
	}
}

// TestRunTaskOfAnUnknownJob: a task whose job is gone (expired) is done
// with: no fetch, and no error that would only bring it back.
func TestRunTaskOfAnUnknownJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	err := h.svc.RunTask(context.Background(), Task{JobID: "gone", Ref: "registry.example/a/b:1"})
	if err != nil || h.reg.totalOpens() != 0 {
		t.Errorf("RunTask: %v, %d opens", err, h.reg.totalOpens())
	}
}

// TestRunTaskCanceled: a canceled task (shutdown, Lambda deadline) returns
// ctx.Err() for redelivery and leaves the job running.
func TestRunTaskCanceled(t *testing.T) {
	t.Parallel()
	t.Run("while streaming", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		task, _ := oneLayerJob(t, h, 17, 100)
		opened := make(chan struct{})
		h.reg.open = func(ctx context.Context, _ descriptor.Descriptor, _ int) (io.ReadCloser, error) {
			close(opened)
			return blockingReader{ctx}, nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- h.svc.RunTask(ctx, task) }()
		<-opened
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("RunTask: %v, want context.Canceled", err)
		}
		job := h.jobs.job(t, task.JobID)
		if job.Status.Terminal() || h.jobs.finishCount(task.JobID, 0) != 0 {
			t.Errorf("job %s %+v after a cancel; want it left running", job.Status, job.Error)
		}
	})
	t.Run("while backing off", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{Attempts: 3})
		task, blob := oneLayerJob(t, h, 18, 100)
		h.reg.open = func(_ context.Context, _ descriptor.Descriptor, _ int) (io.ReadCloser, error) {
			return &failAtEOF{r: bytes.NewReader(blob), err: tarport.Errorf(tarport.CodeUpstream, "reset")}, nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- h.svc.RunTask(ctx, task) }()
		waitFor(t, "the first attempt to fail", func() bool {
			h.objs.mu.Lock()
			defer h.objs.mu.Unlock()
			return h.objs.failed == 1
		})
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) || time.Since(start) > 1500*time.Millisecond {
			t.Errorf("RunTask: %v after %v, want context.Canceled at once", err, time.Since(start))
		}
		if job := h.jobs.job(t, task.JobID); job.Status.Terminal() || h.reg.openCount(task.Desc.Digest) != 1 {
			t.Errorf("job %s after a cancel, %d opens", job.Status, h.reg.openCount(task.Desc.Digest))
		}
	})
}

type ctxKey struct{}

// joinFetch runs task (a second job's task of a layer whose fetch is in
// flight) and returns once it has looked for the entry and had time to
// join that fetch; its result comes on the channel.
func joinFetch(t *testing.T, h *harness, task Task) chan error {
	t.Helper()
	looked := make(chan struct{})
	var once sync.Once
	h.objs.onSize = func(ctx context.Context, _ string) {
		if ctx.Value(ctxKey{}) == "b" {
			once.Do(func() { close(looked) })
		}
	}
	done := make(chan error, 1)
	go func() { done <- h.svc.RunTask(context.WithValue(context.Background(), ctxKey{}, "b"), task) }()
	select {
	case <-looked:
	case <-time.After(5 * time.Second):
		t.Fatal("task B never looked for the entry")
	}
	time.Sleep(50 * time.Millisecond) // let B join the fetch in flight
	return done
}

// TestRunTaskSharedFetchCanceledByAnotherTask: two jobs share a layer, so
// their tasks share one fetch. When the task that started the fetch is
// canceled, the other task (not canceled) must not fail its job.
func TestRunTaskSharedFetchCanceledByAnotherTask(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{Attempts: 3})
	a := newTestImage(t, "registry.example/team/a:v1", 19, 4000)
	b := a
	b.img.Ref.Tag = "v2" // another tag: another job, the same layer
	h.serve(a)
	h.serve(b)
	_, tasksA := create(t, h, Request{Image: "registry.example/team/a:v1"})
	_, tasksB := create(t, h, Request{Image: "registry.example/team/a:v2"})
	if tasksA[0].JobID == tasksB[0].JobID {
		t.Fatal("one job for two tags")
	}
	blob := a.blobs[tasksA[0].Desc.Digest]
	opened := make(chan struct{})
	h.reg.open = func(ctx context.Context, d descriptor.Descriptor, attempt int) (io.ReadCloser, error) {
		if attempt == 1 {
			close(opened)
			return blockingReader{ctx}, nil
		}
		return verifying(d, bytes.NewReader(blob)), nil
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() { doneA <- h.svc.RunTask(ctxA, tasksA[0]) }()
	<-opened
	doneB := joinFetch(t, h, tasksB[0])
	cancelA()
	if err := <-doneA; !errors.Is(err, context.Canceled) {
		t.Errorf("task A: %v, want context.Canceled", err)
	}
	select {
	case err := <-doneB:
		if err != nil {
			t.Logf("task B: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("task B did not return")
	}
	if job := h.jobs.job(t, tasksA[0].JobID); job.Status.Terminal() {
		t.Errorf("job A %s after its own cancel", job.Status)
	}
	// The shared fetch ran under A's context; B, still live, must fetch
	// the layer itself rather than fail its job with A's cancellation.
	if job := h.jobs.job(t, tasksB[0].JobID); job.Status == tarport.StatusFailed {
		t.Errorf("job B failed with %+v because another task's context was canceled; want it to fetch the layer itself (or be redelivered)", job.Error)
	}
}

// TestRunTaskStitchesExactlyOnce: every task of a 5-layer job runs twice
// (as SQS may redeliver), all at once: one stitch, one ready job.
func TestRunTaskStitchesExactlyOnce(t *testing.T) {
	t.Parallel()
	ti := newTestImage(t, "registry.example/team/five:v1", 20, 100, 2000, 3000, 700, 5000)
	for round := range 20 {
		h := newHarness(t, Config{ProgressEvery: time.Nanosecond})
		h.serve(ti)
		v, tasks := create(t, h, Request{Image: "registry.example/team/five:v1"})
		if len(tasks) != 5 {
			t.Fatalf("%d tasks", len(tasks))
		}
		// Every delivery reads the job before any goes on, so all of them
		// see it running and race to finish their layer (a mere start
		// barrier lets the first copies finish before the others read it).
		runs := append(tasks, tasks...)
		var arrived atomic.Int32
		all := make(chan struct{})
		h.jobs.onGet = func() {
			switch n := arrived.Add(1); {
			case n == int32(len(runs)):
				close(all)
			case n < int32(len(runs)):
				<-all
			}
		}
		var wg sync.WaitGroup
		for _, task := range runs {
			wg.Go(func() {
				if err := h.svc.RunTask(context.Background(), task); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		job := h.jobs.job(t, v.ID)
		if n := h.objs.stitchCount(); n != 1 || job.Status != tarport.StatusReady || job.Remaining != 0 {
			t.Fatalf("round %d: %d stitches, job %s %+v, remaining %d; want 1 stitch and ready", round, n, job.Status, job.Error, job.Remaining)
		}
		ready := 0
		for _, st := range h.jobs.statusCalls(v.ID) {
			if st == tarport.StatusReady {
				ready++
			}
		}
		if ready != 1 {
			t.Errorf("round %d: set ready %d times", round, ready)
		}
		if job.DoneBytes() != job.TotalBytes {
			t.Errorf("round %d: done %d of %d", round, job.DoneBytes(), job.TotalBytes)
		}
		tar, _ := h.objs.object(v.TarKey)
		if d := firstDiff(tar, expectedTar(t, planOf(t, ti.img), ti.blobs)); d != "" {
			t.Fatalf("round %d: tar: %s", round, d)
		}
	}
}

// TestRunTaskStitchFailureFailsTheJob: nothing unverified or half-made is
// published; the job ends with an error instead of hanging.
func TestRunTaskStitchFailureFailsTheJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	task, _ := oneLayerJob(t, h, 21, 100)
	h.objs.stitch = func(context.Context, string) error {
		return tarport.Errorf(tarport.CodeUnavailable, "the store is offline")
	}
	if err := h.svc.RunTask(context.Background(), task); err != nil {
		t.Fatalf("RunTask: %v", err)
	}
	job := h.jobs.job(t, task.JobID)
	if job.Status != tarport.StatusFailed || job.Error == nil || job.Error.Code != tarport.CodeUnavailable {
		t.Errorf("job %s %+v; want failed with service_unavailable", job.Status, job.Error)
	}
}

// TestRunTaskStitchNeedsTheCachedMeta: a lost manifest fails the job with
// an internal error (re-planning is impossible), never a wrong tar.
func TestRunTaskStitchNeedsTheCachedMeta(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	task, _ := oneLayerJob(t, h, 22, 100)
	h.meta.mu.Lock()
	clear(h.meta.meta)
	h.meta.mu.Unlock()
	if err := h.svc.RunTask(context.Background(), task); err != nil {
		t.Fatalf("RunTask: %v", err)
	}
	job := h.jobs.job(t, task.JobID)
	if job.Status != tarport.StatusFailed || h.objs.stitchCount() != 0 {
		t.Errorf("job %s, %d stitches; want failed before stitching", job.Status, h.objs.stitchCount())
	}
}

func TestAbandonFailsTheJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	task, _ := oneLayerJob(t, h, 23, 100)
	h.svc.Abandon(context.Background(), task, errors.New("worker crashed at 0xdeadbeef"))
	job := h.jobs.job(t, task.JobID)
	if job.Status != tarport.StatusFailed || job.Error == nil || job.Error.Code != tarport.CodeInternal {
		t.Fatalf("job %s %+v", job.Status, job.Error)
	}
	if bytes.Contains([]byte(job.Error.Message), []byte("0xdeadbeef")) {
		t.Errorf("job error leaks internals: %q", job.Error.Message)
	}
}

// TestAbandonKeepsCredentialsGone: a task whose sealed credentials expired
// fails its job with credentials_required, which tells the user what to do.
func TestAbandonKeepsCredentialsGone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	task, _ := oneLayerJob(t, h, 23, 100)
	h.svc.Abandon(context.Background(), task, tarport.Wrap(errors.New("sealed 7h ago"), tarport.CodeCredentialsGone, "the registry credentials of this download expired; request it again with them"))
	job := h.jobs.job(t, task.JobID)
	if job.Error == nil || job.Error.Code != tarport.CodeCredentialsGone || strings.Contains(job.Error.Message, "7h ago") {
		t.Fatalf("job error %+v", job.Error)
	}
}

// TestDefaultAttemptsAreTheBudget: unconfigured, a layer is read
// tarport.LayerAttempts times per delivery before its job fails (the
// retry budget's second level).
// In a synctest bubble: the backoff between attempts (0.5 s x n²) passes
// on the bubble's clock, not the test's.
func TestDefaultAttemptsAreTheBudget(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{})
		task, blob := oneLayerJob(t, h, 15, 5000)
		corrupt := bytes.Clone(blob)
		corrupt[10] ^= 1
		h.reg.blobs[task.Desc.Digest] = corrupt
		start := time.Now()
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
		if n := h.reg.openCount(task.Desc.Digest); n != tarport.LayerAttempts {
			t.Errorf("%d reads, want tarport.LayerAttempts = %d", n, tarport.LayerAttempts)
		}
		// Backoff before attempts 2 and 3: 0.5 s x (4 + 9).
		if waited := time.Since(start); waited != 6500*time.Millisecond {
			t.Errorf("waited %s between attempts, want 6.5s", waited)
		}
		if job := h.jobs.job(t, task.JobID); job.Status != tarport.StatusFailed {
			t.Errorf("job %s after every attempt failed", job.Status)
		}
	})
}

// TestRunTaskRefusesMalformedTasks: a task this version cannot run (no
// kind, a kind without its fields, a part outside its upload) fails its
// job with a clear message; nothing is fetched and nothing is retried.
func TestRunTaskRefusesMalformedTasks(t *testing.T) {
	t.Parallel()
	for name, edit := range map[string]func(*Task){
		"no kind":          func(t *Task) { t.Kind = "" },
		"unknown kind":     func(t *Task) { t.Kind = "delete" },
		"range, no part":   func(t *Task) { t.Kind = KindRange },
		"verify, no parts": func(t *Task) { t.Kind, t.Verify = KindVerify, &SplitUpload{ID: "u"} },
		"part 4 of 3": func(t *Task) {
			t.Kind, t.Range = KindRange, &RangePart{SplitUpload: SplitUpload{ID: "u", Parts: 3}, Part: 4, Length: 1}
		},
		"layer with a part": func(t *Task) { t.Range = &RangePart{SplitUpload: SplitUpload{ID: "u", Parts: 1}, Part: 1, Length: 1} },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Config{})
			task, _ := oneLayerJob(t, h, 16, 5000)
			edit(&task)
			if err := h.svc.RunTask(context.Background(), task); err != nil {
				t.Fatalf("RunTask: %v; a malformed task fails its job, it is not redelivered", err)
			}
			job := h.jobs.job(t, task.JobID)
			if job.Status != tarport.StatusFailed || job.Error == nil || job.Error.Code != tarport.CodeInternal || !strings.Contains(job.Error.Message, "cannot be run by this server") {
				t.Errorf("job %s %+v", job.Status, job.Error)
			}
			if n := h.reg.totalOpens(); n != 0 {
				t.Errorf("%d blob reads for a malformed task", n)
			}
		})
	}
}
