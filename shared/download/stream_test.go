package download

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

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

// watchedObjects is the fake store with writes a stream can follow, as
// the local store's: each PutWatched writes a file under dir as the bytes
// come, and holds at hold bytes until release is closed (or, with gates,
// the n-th write from 0 at gates[n]).
type watchedObjects struct {
	*fakeObjects
	dir     string
	hold    int64
	release chan struct{}
	gates   []gate
	puts    atomic.Int64
	written atomic.Int64 // of the write in progress
}

// gate holds a write at bytes until release is closed.
type gate struct {
	at      int64
	release chan struct{}
}

func (w *watchedObjects) PutWatched(ctx context.Context, key string, r io.Reader, size int64, started func(string)) error {
	f, err := os.CreateTemp(w.dir, "put-*")
	if err != nil {
		return err
	}
	defer f.Close()
	ok := false
	defer func() {
		if !ok {
			os.Remove(f.Name()) // as the local store does: a reader holding it open keeps its bytes
		}
	}()
	started(f.Name())
	hold, release := w.hold, w.release
	if n := int(w.puts.Add(1) - 1); n < len(w.gates) {
		hold, release = w.gates[n].at, w.gates[n].release
	}
	var buf bytes.Buffer
	w.written.Store(0)
	chunk := make([]byte, 64<<10)
	for {
		limit := int64(len(chunk))
		if hold > 0 && w.written.Load() < hold {
			limit = min(limit, hold-w.written.Load())
		} else if hold > 0 && w.written.Load() == hold {
			<-release
		}
		n, err := r.Read(chunk[:limit])
		if n > 0 {
			f.Write(chunk[:n])
			buf.Write(chunk[:n])
			w.written.Add(int64(n))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if err := w.fakeObjects.Put(ctx, key, &buf, size); err != nil {
		return err
	}
	ok = true
	return nil
}

// openStream streams job id in the background (closed with the test).
func openStream(t *testing.T, h *harness, id string) (got func() []byte, done chan error) {
	t.Helper()
	rc, err := h.svc.Stream(context.Background(), h.jobs.job(t, id))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return readUntil(rc)
}

// readUntil reads from r in the background, reporting how much it has.
func readUntil(r io.Reader) (got func() []byte, done chan error) {
	var mu sync.Mutex
	var buf bytes.Buffer
	done = make(chan error, 1)
	go func() {
		chunk := make([]byte, 4096)
		for {
			n, err := r.Read(chunk)
			mu.Lock()
			buf.Write(chunk[:n])
			mu.Unlock()
			if err != nil {
				if err == io.EOF {
					err = nil
				}
				done <- err
				return
			}
		}
	}()
	return func() []byte {
		mu.Lock()
		defer mu.Unlock()
		return bytes.Clone(buf.Bytes())
	}, done
}

// TestStreamFollowsTheWrite: a stream sends a layer's bytes as the job's
// task writes them, before the layer is stored; the entry's last byte
// only once the write completed (after the digest check).
func TestStreamFollowsTheWrite(t *testing.T) {
	t.Parallel()
	// 6 MiB: no padding, the entry ends with the layer's last byte; 6 MiB
	// and 100 bytes: 412 bytes of padding follow it, and the layer's last
	// byte, not the entry's, is what stays back.
	for _, size := range []int64{6 * mib, 6*mib + 100} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			followTheWrite(t, size)
		})
	}
}

func followTheWrite(t *testing.T, layerSize int64) {
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/live:v1", 34, layerSize)
	h.serve(ti)
	layout := planOf(t, ti.img)
	entry := layout.Entries[0]
	// Held once every byte is on disk, before the write completes (as
	// while the reader checks the digest at the body's end; a 6 MiB layer
	// has no padding, so the entry's last byte is the layer's own).
	w := &watchedObjects{fakeObjects: h.objs, dir: t.TempDir(), hold: entry.Len(), release: make(chan struct{})}
	h.svc.objects = w
	v, tasks := create(t, h, Request{Image: ti.img.Ref.CommonName()})
	got, done := openStream(t, h, v.ID)
	taskErr := make(chan error, 1)
	go func() { taskErr <- h.svc.RunTask(context.Background(), tasks[0]) }()
	held := entry.Offset + int64(len(entry.Header)) + layerSize - 1 // all but the layer's last byte
	deadline := time.Now().Add(10 * time.Second)
	for int64(len(got())) < held && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // room for a byte too many, which must not come
	if n := int64(len(got())); n != held {
		t.Fatalf("with the write held before it completed, the stream has %d bytes; want %d: the layer but its last byte", n, held)
	}
	if job := h.jobs.job(t, v.ID); job.Layers[0].Finished {
		t.Fatal("the layer finished while its write was held")
	}
	close(w.release)
	if err := <-taskErr; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if d := firstDiff(got(), expectedTar(t, layout, ti.blobs)); d != "" {
		t.Fatalf("followed tar: %s", d)
	}
}

// TestStreamCutWhenTheFollowedWriteFails: a write that fails after bytes
// of it were sent (the digest did not match) ends the stream with an
// error: it never carries the whole entry.
func TestStreamCutWhenTheFollowedWriteFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{Attempts: 1})
	ti := newTestImage(t, "registry.example/team/livebad:v1", 35, 6*mib)
	h.serve(ti)
	d := ti.img.Layers[0].Digest
	h.reg.blobs[d] = append(bytes.Clone(h.reg.blobs[d][:100]), append([]byte{h.reg.blobs[d][100] ^ 1}, h.reg.blobs[d][101:]...)...)
	entry := planOf(t, ti.img).Entries[0]
	w := &watchedObjects{fakeObjects: h.objs, dir: t.TempDir(), hold: 1 << 20, release: make(chan struct{})}
	h.svc.objects = w
	v, tasks := create(t, h, Request{Image: ti.img.Ref.CommonName()})
	got, done := openStream(t, h, v.ID)
	taskErr := make(chan error, 1)
	go func() { taskErr <- h.svc.RunTask(context.Background(), tasks[0]) }()
	for len(got()) < 1<<19 {
		time.Sleep(5 * time.Millisecond)
	}
	close(w.release) // the rest comes, and the digest does not match
	if err := <-taskErr; err != nil {
		t.Fatal(err)
	}
	err := <-done
	if err == nil || int64(len(got())) >= entry.Offset+entry.Len() {
		t.Fatalf("stream of a layer that failed after %d bytes were sent: %v with %d bytes", 1<<19, err, len(got()))
	}
}

// TestStreamResumesAfterAFailedAttempt: a followed write that fails after
// bytes of it were sent does not end the stream while the layer may still
// come: the bytes sent are hashed and compared with the retry's, followed
// as they are written (the retry is held partway, so the stream must do it
// live) or read from the stored entry (the client reads nothing more until
// the layer is stored). The same, the stream goes on from where it was and
// ends whole, byte for byte the tar. Different (the first attempt sent
// bytes that were not the layer's), the stream is cut, though the job ends
// ready.
func TestStreamResumesAfterAFailedAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		spoil  bool // the failed attempt's bytes differ from the layer's at byte 100
		paused bool // the client reads nothing more until the layer is stored
		// again: a second attempt has the first one's wrong bytes and
		// breaks after 256 KiB, once the stream compared them; the third,
		// whole, must be compared from the start again.
		again bool
	}{
		{name: "followed retry, same bytes"},
		{name: "followed retry, other bytes", spoil: true},
		{name: "stored retry, same bytes", paused: true},
		{name: "stored retry, other bytes", spoil: true, paused: true},
		{name: "second retry, other bytes", spoil: true, again: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Config{Attempts: 3})
			ti := newTestImage(t, "registry.example/team/relive:v1", 36, 6*mib)
			h.serve(ti)
			d := ti.img.Layers[0].Digest
			blob := h.reg.blobs[d]
			first := bytes.Clone(blob[:2*mib])
			if tc.spoil {
				first[100] ^= 1
			}
			broken := func(r io.Reader) io.ReadCloser {
				return &failAtEOF{r: chunked(r, 4096), err: tarport.Errorf(tarport.CodeUpstream, "connection reset")}
			}
			h.reg.open = func(_ context.Context, desc descriptor.Descriptor, attempt int) (io.ReadCloser, error) {
				switch {
				case attempt == 1:
					return broken(bytes.NewReader(first)), nil
				case attempt == 2 && tc.again:
					return broken(io.MultiReader(bytes.NewReader(first[:256<<10]), readerFunc(func([]byte) (int, error) {
						time.Sleep(10 * streamPoll) // room for the stream to compare these bytes
						return 0, io.EOF
					}))), nil
				}
				return verifying(desc, chunked(bytes.NewReader(blob), 4096)), nil
			}
			layout := planOf(t, ti.img)
			body := layout.Entries[0].Offset + int64(len(layout.Entries[0].Header)) // where the layer's bytes start
			// The first attempt is held at 1 MiB until the stream has half
			// of it; the whole one at 3 MiB, past anything the first sent.
			gates := []gate{{1 << 20, make(chan struct{})}, {3 << 20, make(chan struct{})}, {3 << 20, make(chan struct{})}}
			releaseAll := sync.OnceFunc(func() {
				for _, g := range gates[1:] {
					close(g.release)
				}
			})
			defer releaseAll()
			w := &watchedObjects{fakeObjects: h.objs, dir: t.TempDir(), gates: gates}
			h.svc.objects = w
			v, tasks := create(t, h, Request{Image: ti.img.Ref.CommonName()})
			rc, err := h.svc.Stream(context.Background(), h.jobs.job(t, v.ID))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			taskErr := make(chan error, 1)
			go func() { taskErr <- h.svc.RunTask(context.Background(), tasks[0]) }()

			var got []byte
			var done chan error
			if tc.paused {
				got = make([]byte, body+1<<19)
				if _, err := io.ReadFull(rc, got); err != nil {
					t.Fatal(err)
				}
				close(gates[0].release)
				releaseAll()
			} else {
				var sofar func() []byte
				sofar, done = readUntil(rc)
				waitFor(t, "the stream to send half of the first attempt", func() bool { return int64(len(sofar())) >= body+1<<19 })
				close(gates[0].release) // the first attempt breaks at 2 MiB
				if tc.spoil {
					// Cut while the whole attempt is held: compared live.
					select {
					case err = <-done:
					case <-time.After(30 * time.Second):
						t.Fatalf("stream not cut while the retry is held (%d bytes)", len(sofar()))
					}
				} else {
					// More than the first attempt had, while the retry is
					// held: resumed live, not from the stored entry.
					waitFor(t, "the stream to go on from the retry", func() bool { return int64(len(sofar())) > body+2*mib })
				}
				releaseAll()
				if !tc.spoil {
					err = <-done
				}
				got = sofar()
			}
			if err := <-taskErr; err != nil {
				t.Fatal(err)
			}
			if n, want := h.reg.openCount(d), map[bool]int{false: 2, true: 3}[tc.again]; n != want {
				t.Fatalf("%d reads of the layer, want %d", n, want)
			}
			if job := h.jobs.job(t, v.ID); job.Status != tarport.StatusReady {
				t.Fatalf("job %s %+v, want ready", job.Status, job.Error)
			}
			if tc.paused {
				var more []byte
				more, err = io.ReadAll(rc)
				got = append(got, more...)
			}
			if tc.spoil {
				if err == nil || tarport.ErrorCode(err) != tarport.CodeDigestMismatch || int64(len(got)) >= layout.Size {
					t.Fatalf("stream whose sent bytes the retry contradicts: %v with %d of %d bytes; want cut (digest_mismatch)", err, len(got), layout.Size)
				}
				return
			}
			if err != nil {
				t.Fatalf("stream across a failed attempt: %v after %d bytes", err, len(got))
			}
			if d := firstDiff(got, expectedTar(t, layout, ti.blobs)); d != "" {
				t.Fatalf("resumed tar: %s", d)
			}
		})
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

// TestStreamWaitsForAnEmptyLayer: an empty layer's entry (its header
// alone) is sent only once the layer was fetched and checked: a stream of
// an image whose empty layer the registry does not serve fails rather
// than ending whole.
func TestStreamWaitsForAnEmptyLayer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{Attempts: 1})
	ti := newTestImage(t, "registry.example/team/empty:v1", 36, 6*mib, 0)
	h.serve(ti)
	var empty digest.Digest
	for _, l := range ti.img.Layers {
		if l.Size == 0 {
			empty = l.Digest
		}
	}
	h.reg.mu.Lock()
	delete(h.reg.blobs, empty)
	h.reg.mu.Unlock()
	v, tasks := create(t, h, Request{Image: ti.img.Ref.CommonName()})
	got, done := openStream(t, h, v.ID)
	// The big layer first, streamed whole; only then the empty one, so
	// the stream has reached the empty layer's entry when it fails.
	var emptyAt int64
	for _, e := range planOf(t, ti.img).Entries {
		if e.Digest == empty {
			emptyAt = e.Offset
		}
	}
	for _, task := range tasks {
		if task.Desc.Digest == empty {
			for int64(len(got())) < emptyAt {
				select {
				case err := <-done:
					t.Fatalf("the stream ended (%v) after %d bytes, before the empty layer at %d", err, len(got()), emptyAt)
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err == nil || int64(len(got())) >= v.TotalBytes {
		t.Fatalf("stream of an image whose empty layer failed: %v after %d of %d bytes", err, len(got()), v.TotalBytes)
	}
}
