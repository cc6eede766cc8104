package download

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/tarport"
)

// TestStreamWhileBuilding: a stream opened as the job is created yields
// the tar byte for byte (the same the stitch writes), waiting for each
// layer's task, whatever order the tasks run in; several streams read one
// job; a stream of the ready job reads straight through.
func TestStreamWhileBuilding(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/stream:v1", 31, boundarySizes...)
	h.serve(ti)
	v, tasks := create(t, h, Request{Image: ti.img.Ref.CommonName()})
	want := expectedTar(t, planOf(t, ti.img), ti.blobs)
	if int64(len(want)) != v.TotalBytes {
		t.Fatalf("planned %d bytes, the job says %d", len(want), v.TotalBytes)
	}
	results := make([][]byte, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range results {
		rc, err := h.svc.Stream(context.Background(), h.jobs.job(t, v.ID))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer rc.Close()
			results[i], errs[i] = io.ReadAll(rc)
		})
	}
	// Last layer first: a stream waits for the first entry meanwhile.
	for i := len(tasks) - 1; i >= 0; i-- {
		time.Sleep(5 * time.Millisecond)
		if err := h.svc.RunTask(context.Background(), tasks[i]); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil {
			t.Fatalf("stream %d: %v", i, errs[i])
		}
		if d := firstDiff(results[i], want); d != "" {
			t.Fatalf("stream %d: %s", i, d)
		}
	}
	job := h.jobs.job(t, v.ID)
	stitched, _ := h.objs.object(job.TarKey)
	if job.Status != tarport.StatusReady || !bytes.Equal(stitched, want) {
		t.Fatalf("job %s; stitched tar equal: %v", job.Status, bytes.Equal(stitched, want))
	}
	rc, err := h.svc.Stream(context.Background(), job)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("stream of the ready job: %d bytes, %v", len(got), err)
	}
}

// TestStreamStopsAtAFailedLayer: when a layer fails, a stream ends with the
// job's error before the failed entry: it never carries the entry's
// bytes, and never ends as if the tar were whole.
func TestStreamStopsAtAFailedLayer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{Attempts: 1})
	ti := newTestImage(t, "registry.example/team/spoiled:v1", 32, 6*mib, 6*mib, 100)
	h.serve(ti)
	v, tasks := create(t, h, Request{Image: ti.img.Ref.CommonName()})
	rc, err := h.svc.Stream(context.Background(), h.jobs.job(t, v.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// The second layer's bytes are spoiled: its digest will not match.
	spoiled := tasks[1].Desc.Digest
	h.reg.blobs[spoiled] = append([]byte{'x'}, h.reg.blobs[spoiled][1:]...)
	for _, task := range tasks {
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	got, err := io.ReadAll(rc)
	if tarport.ErrorCode(err) != tarport.CodeDigestMismatch {
		t.Fatalf("stream ended with %v after %d bytes, want the job's digest_mismatch", err, len(got))
	}
	layout := planOf(t, ti.img)
	want := expectedTar(t, layout, ti.blobs)
	if int64(len(got)) >= v.TotalBytes || !bytes.Equal(got, want[:len(got)]) {
		t.Fatalf("got %d of %d bytes; a prefix of the tar: %v", len(got), v.TotalBytes, bytes.Equal(got, want[:min(len(got), len(want))]))
	}
	for _, e := range layout.Entries {
		if e.Digest == spoiled && int64(len(got)) > e.Offset+int64(len(e.Header)) {
			t.Fatalf("the stream carried %d bytes past the spoiled entry's header at %d", len(got), e.Offset)
		}
	}
}

// TestStreamEndsWithItsContext: a client that goes away ends its stream's
// wait.
func TestStreamEndsWithItsContext(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/gone:v1", 33, 6*mib)
	h.serve(ti)
	v, _ := create(t, h, Request{Image: ti.img.Ref.CommonName()})
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := h.svc.Stream(ctx, h.jobs.job(t, v.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("stream of a job nobody runs: %v, want context.Canceled", err)
	}
}
