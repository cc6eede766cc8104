package download

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tarport/tarport/shared/tarport"
)

// Three tags of one repository whose first layer (12 MiB + 700 bytes,
// split in 3 ranges) is the same blob; their second layers differ.
var sharedSplitTags = []struct {
	ref   string
	small int64
}{
	{"registry.example/team/huge:v1", 1000},
	{"registry.example/team/huge:v2", 2000},
	{"registry.example/team/huge:v3", 3000},
}

// sharedSplitJobs serves the tags and creates a job for each of the first
// n, the i-th with creds[i] when given; it returns the jobs' views, the
// tasks each queued, and the images.
func sharedSplitJobs(t *testing.T, h *harness, n int, creds ...tarport.Credentials) ([]View, [][]Task, []testImage) {
	t.Helper()
	var views []View
	var tasks [][]Task
	var images []testImage
	for i, tag := range sharedSplitTags[:n] {
		ti := newTestImage(t, tag.ref, 41, 12<<20+700, tag.small)
		h.serve(ti)
		req := Request{Image: tag.ref}
		if i < len(creds) {
			req.Creds = creds[i]
		}
		v, ts := create(t, h, req)
		views, tasks, images = append(views, v), append(tasks, ts), append(images, ti)
	}
	if images[0].img.Layers[0].Digest != images[n-1].img.Layers[0].Digest {
		t.Fatal("the tags do not share their first layer")
	}
	return views, tasks, images
}

// checkReadyTar fails unless job v is ready with its image's exact tar.
func checkReadyTar(t *testing.T, h *harness, v View, ti testImage) {
	t.Helper()
	job := h.jobs.job(t, v.ID)
	if job.Status != tarport.StatusReady {
		t.Fatalf("job %s: %s %+v", v.ID, job.Status, job.Error)
	}
	tar, _ := h.objs.object(job.TarKey)
	if d := firstDiff(tar, expectedTar(t, planOf(t, ti.img), ti.blobs)); d != "" {
		t.Fatalf("job %s: tar differs: %s", v.ID, d)
	}
	if l := job.Layers[0]; !l.Finished || l.DoneBytes != l.Size {
		t.Fatalf("job %s: shared layer done %d of %d, finished %v", v.ID, l.DoneBytes, l.Size, l.Finished)
	}
}

// TestSplitFetchShared: jobs wanting the same split layer from the same
// registry at once fetch each of its ranges once, between them: the first
// job's range tasks, the others' await tasks, which look again later (a
// queue delay, no worker held) and take the verified entry once the
// registry lets their requester read it.
func TestSplitFetchShared(t *testing.T) {
	t.Parallel()
	for _, twice := range []bool{false, true} {
		h := newHarness(t, splitConfig())
		views, tasks, images := sharedSplitJobs(t, h, 3)
		for i, ts := range tasks[1:] {
			if len(ts) != 2 || ts[0].Kind != KindAwait || ts[0].Await.Holder != views[0].ID || ts[0].Validate() != nil {
				t.Fatalf("job %d queued %+v; want an await of job %s and its small layer", i+1, ts, views[0].ID)
			}
		}
		if n := h.objs.openUploads(); n != 1 {
			t.Fatalf("%d staging uploads open; want the holder's only", n)
		}
		// The waiters look first: the holder has not started.
		for _, ts := range tasks[1:] {
			if err := h.svc.RunTask(context.Background(), ts[0]); err != nil {
				t.Fatal(err)
			}
		}
		runQueued(t, h, 3, twice)
		for i, v := range views {
			checkReadyTar(t, h, v, images[i])
		}
		if !twice && h.reg.ranges != 3 {
			t.Fatalf("%d range reads from the registry; want the 3 ranges once", h.reg.ranges)
		}
		h.queue.mu.Lock()
		delays := h.queue.delays
		h.queue.mu.Unlock()
		if len(delays) < 2 {
			t.Fatalf("%d delayed looks; want the waiters to look again later", len(delays))
		}
		for _, d := range delays {
			if d != DefaultSplitPoll {
				t.Fatalf("looked again after %s, want %s", d, DefaultSplitPoll)
			}
		}
		if h.reg.checks < 2 {
			t.Fatalf("%d blob checks; each waiter must be allowed by the registry", h.reg.checks)
		}
		if n := h.objs.openUploads(); n != 0 {
			t.Fatalf("%d staging uploads left", n)
		}
	}
}

// TestSplitFetchProgressFollowed: while it waits, a job's shared layer
// shows the holder's progress.
func TestSplitFetchProgressFollowed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, splitConfig())
	views, tasks, _ := sharedSplitJobs(t, h, 2)
	for _, task := range tasks[0][:2] { // two of the holder's three ranges
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.svc.RunTask(context.Background(), tasks[1][0]); err != nil {
		t.Fatal(err)
	}
	holder, waiter := h.jobs.job(t, views[0].ID).Layers[0], h.jobs.job(t, views[1].ID).Layers[0]
	if holder.DoneBytes < 10<<20-512 || waiter.DoneBytes != holder.DoneBytes || waiter.Finished {
		t.Fatalf("holder's layer done %d, waiter's %d (finished %v); want the waiter to show the holder's two ranges", holder.DoneBytes, waiter.DoneBytes, waiter.Finished)
	}
	// The holder's last range and its verify: the entry is stored while
	// the holder still fetches its small layer. The waiter's next look
	// takes it.
	if err := h.svc.RunTask(context.Background(), tasks[0][2]); err != nil {
		t.Fatal(err)
	}
	all := h.queue.tasks()
	if verify := all[len(all)-1]; verify.Kind != KindVerify {
		t.Fatalf("the last range queued %+v, want its verify task", verify)
	} else if err := h.svc.RunTask(context.Background(), verify); err != nil {
		t.Fatal(err)
	}
	if job := h.jobs.job(t, views[0].ID); job.Status != tarport.StatusFetching {
		t.Fatalf("holder %s, want it still fetching its small layer", job.Status)
	}
	if err := h.svc.RunTask(context.Background(), tasks[1][0]); err != nil {
		t.Fatal(err)
	}
	if l := h.jobs.job(t, views[1].ID).Layers[0]; !l.Finished {
		t.Fatalf("waiter's layer not finished once the holder stored it: %+v", l)
	}
}

// TestSplitFetchTakenOver: the holder fails; its waiters never see its
// error: one takes the lease over and fetches the layer, the other then
// waits for that one. Once the holder of a finished job's entry is gone
// from the cache, a new job fetches it again.
func TestSplitFetchTakenOver(t *testing.T) {
	t.Parallel()
	h := newHarness(t, splitConfig())
	views, _, images := sharedSplitJobs(t, h, 3)
	secret := "the registry of job-a's login refused it"
	if err := h.svc.fail(context.Background(), views[0].ID, tarport.Errorf(tarport.CodeUnauthorized, "%s", secret)); err != nil {
		t.Fatal(err)
	}
	runQueued(t, h, 5, false)
	for i, v := range views[1:] {
		checkReadyTar(t, h, v, images[i+1])
	}
	if h.reg.ranges != 3 {
		t.Fatalf("%d range reads; want the 3 ranges once, by the job that took over", h.reg.ranges)
	}
	holders := map[string]int{}
	for _, task := range h.queue.tasks() {
		if task.Kind == KindRange {
			holders[task.JobID]++
		}
	}
	if len(holders) != 2 || holders[views[0].ID] != 3 {
		t.Fatalf("range tasks by job: %v; want the failed holder's and one taker's", holders)
	}
	for _, v := range views[1:] {
		if job := h.jobs.job(t, v.ID); job.Error != nil || strings.Contains(job.Image, secret) {
			t.Fatalf("job %s carries %+v", v.ID, job.Error)
		}
	}
	// The failed holder's upload is the bucket lifecycle rule's to abort
	// (as for any job failed before its split layer's ranges ran); the
	// waiters' own are gone.
	if n := h.objs.openUploads(); n != 1 {
		t.Fatalf("%d staging uploads left; want only the failed holder's", n)
	}
}

// TestSplitTakeoverRedelivered: an await task that took the lease over is
// delivered again: it queues the same upload's range tasks, not a second
// upload's (whose parts a verify could never complete). The holder's
// progress, shown while waiting, is dropped.
func TestSplitTakeoverRedelivered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, splitConfig())
	views, tasks, images := sharedSplitJobs(t, h, 2)
	// The holder gets one range in, which the waiter shows; then fails.
	for _, task := range []Task{tasks[0][0], tasks[1][0]} {
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	if l := h.jobs.job(t, views[1].ID).Layers[0]; l.DoneBytes == 0 {
		t.Fatalf("the waiter does not show the holder's range: %+v", l)
	}
	if err := h.svc.fail(context.Background(), views[0].ID, tarport.Errorf(tarport.CodeUpstream, "gone")); err != nil {
		t.Fatal(err)
	}
	uploads := map[string]int{}
	for range 2 {
		before := len(h.queue.tasks())
		if err := h.svc.RunTask(context.Background(), tasks[1][0]); err != nil {
			t.Fatal(err)
		}
		for _, task := range h.queue.tasks()[before:] {
			if task.Kind != KindRange || task.JobID != views[1].ID {
				t.Fatalf("the takeover queued %+v", task)
			}
			uploads[task.Range.ID]++
		}
	}
	if len(uploads) != 1 || h.objs.openUploads() != 2 {
		t.Fatalf("range tasks by upload %v, %d uploads open; want one upload (and the failed holder's)", uploads, h.objs.openUploads())
	}
	if l := h.jobs.job(t, views[1].ID).Layers[0]; l.DoneBytes != 0 {
		t.Fatalf("after taking over, the layer shows %d bytes done; the holder's are not this job's", l.DoneBytes)
	}
	runQueued(t, h, 13, false)
	checkReadyTar(t, h, views[1], images[1])
}

// TestSplitTakeoverAnswerLost: the lease of a takeover was written but
// its answer lost; the redelivered task finds the lease naming its upload,
// which was not aborted, and the layer is fetched into it.
func TestSplitTakeoverAnswerLost(t *testing.T) {
	t.Parallel()
	h := newHarness(t, splitConfig())
	views, tasks, images := sharedSplitJobs(t, h, 2)
	if err := h.svc.fail(context.Background(), views[0].ID, tarport.Errorf(tarport.CodeUpstream, "gone")); err != nil {
		t.Fatal(err)
	}
	h.jobs.leaseAnswerLost.Store(true)
	if err := h.svc.RunTask(context.Background(), tasks[1][0]); err == nil {
		t.Fatal("a takeover whose lease answer was lost succeeded")
	}
	runQueued(t, h, 17, false) // the queue redelivers it with the rest
	if err := h.svc.RunTask(context.Background(), tasks[1][0]); err != nil {
		t.Fatal(err)
	}
	runQueued(t, h, 18, false)
	checkReadyTar(t, h, views[1], images[1])
}

// TestSplitFetchReadyHolderEntryGone: the holder finished, but its entry
// left the cache before the waiter looked: the waiter fetches it itself.
func TestSplitFetchReadyHolderEntryGone(t *testing.T) {
	t.Parallel()
	h := newHarness(t, splitConfig())
	views, tasks, images := sharedSplitJobs(t, h, 2)
	// The holder's tasks only, to the end.
	for _, task := range tasks[0] {
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	all := h.queue.tasks()
	if err := h.svc.RunTask(context.Background(), all[len(all)-1]); err != nil { // its verify
		t.Fatal(err)
	}
	checkReadyTar(t, h, views[0], images[0])
	if err := h.objs.Delete(context.Background(), EntryKey(testOrigin, images[0].img.Layers[0].Digest)); err != nil {
		t.Fatal(err)
	}
	runQueued(t, h, 9, false)
	checkReadyTar(t, h, views[1], images[1])
	if h.reg.ranges != 6 {
		t.Fatalf("%d range reads; want the holder's 3 and the waiter's own 3", h.reg.ranges)
	}
}

// TestSplitFetchStoredAsHolderEnded: the holder's entry lands between
// the waiter's look at the cache and its read of the holder's job, which
// has ended: the waiter takes the entry, it does not fetch the layer again.
func TestSplitFetchStoredAsHolderEnded(t *testing.T) {
	t.Parallel()
	h := newHarness(t, splitConfig())
	views, tasks, images := sharedSplitJobs(t, h, 2)
	if err := h.svc.fail(context.Background(), views[0].ID, tarport.Errorf(tarport.CodeUpstream, "later")); err != nil {
		t.Fatal(err)
	}
	entry := entryBytes(t, images[0].blobs[images[0].img.Layers[0].Digest])
	gets := 0
	h.jobs.onGet = func() {
		if gets++; gets == 2 { // the waiter's look at the holder
			if err := h.objs.Put(context.Background(), EntryKey(testOrigin, images[0].img.Layers[0].Digest), bytes.NewReader(entry), int64(len(entry))); err != nil {
				t.Error(err)
			}
		}
	}
	before := len(h.queue.tasks())
	if err := h.svc.RunTask(context.Background(), tasks[1][0]); err != nil {
		t.Fatal(err)
	}
	if queued := h.queue.tasks()[before:]; len(queued) != 0 {
		t.Fatalf("the waiter queued %+v; want it to take the stored entry", queued)
	}
	if l := h.jobs.job(t, views[1].ID).Layers[0]; !l.Finished {
		t.Fatalf("waiter's layer %+v, want finished", l)
	}
}

// TestSplitFetchWaiterRefused: a waiter whose registry login may not read
// the layer fails alone, with its own error; the holder's job and another
// waiter finish.
func TestSplitFetchWaiterRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, splitConfig())
	h.reg.denied = map[string]bool{"mallory": true}
	mallory := tarport.Credentials{Username: "mallory", Password: "pw"}
	views, tasks, images := sharedSplitJobs(t, h, 3, tarport.Credentials{}, mallory)
	if tasks[1][0].Kind != KindAwait {
		t.Fatalf("mallory's job queued %+v first; want it to await the holder", tasks[1][0])
	}
	runQueued(t, h, 11, false)
	checkReadyTar(t, h, views[0], images[0])
	checkReadyTar(t, h, views[2], images[2])
	job := h.jobs.job(t, views[1].ID)
	if job.Status != tarport.StatusFailed || job.Error == nil || job.Error.Code != tarport.CodeUnauthorized || strings.Contains(job.Error.Message, views[0].ID) {
		t.Fatalf("mallory's job: %s %+v; want failed unauthorized, naming no other job", job.Status, job.Error)
	}
	if h.reg.ranges != 3 {
		t.Fatalf("%d range reads; want 3", h.reg.ranges)
	}
}

// TestAwaitTaskValidate: an await task names a holder, never its own job.
func TestAwaitTaskValidate(t *testing.T) {
	t.Parallel()
	base := Task{JobID: "j", Ref: "registry.example/a:1", Kind: KindAwait}
	for _, tc := range []struct {
		await  *SplitAwait
		range_ *RangePart
		ok     bool
	}{
		{&SplitAwait{Holder: "h"}, nil, true},
		{nil, nil, false},
		{&SplitAwait{}, nil, false},
		{&SplitAwait{Holder: "j"}, nil, false},
		{&SplitAwait{Holder: "h"}, &RangePart{SplitUpload: SplitUpload{ID: "u", Parts: 1}, Part: 1}, false},
	} {
		task := base
		task.Await, task.Range = tc.await, tc.range_
		if err := task.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v, range %+v) = %v, want ok %v", tc.await, tc.range_, err, tc.ok)
		}
	}
}
