package download

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/tarport"
)

// The trust model (docs/ARCHITECTURE.md): cached entries are reused only
// under the origin that served them, after that origin authorized the
// requester; a shared fetch's failure is never another job's.

// TestEntryOfAnotherOriginIsNotUsed: an entry another registry (or a
// foreign-layer URL) served for this digest is never handed to a request
// for this registry's image; it is fetched from this registry, and the
// entry it already has is checked with this registry only.
func TestEntryOfAnotherOriginIsNotUsed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	task, blob := oneLayerJob(t, h, 51, 3000)
	entry := entryBytes(t, blob)
	for _, o := range []tarport.Origin{tarport.RegistryOrigin("evil.example"), tarport.URLOrigin("https://evil.example/l")} {
		if err := h.objs.Put(context.Background(), EntryKey(o, task.Desc.Digest), bytes.NewReader(entry), int64(len(entry))); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.svc.RunTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	if n := h.reg.openCount(task.Desc.Digest); n != 1 {
		t.Fatalf("%d fetches, want 1: the entries of other origins are not this registry's", n)
	}
	if h.reg.checks != 0 {
		t.Errorf("%d checks of entries this task did not fetch, want 0", h.reg.checks)
	}
	if got, _ := h.objs.object(EntryKey(testOrigin, task.Desc.Digest)); !bytes.Equal(got, entry) {
		t.Errorf("the fetched entry is not stored under this registry's origin")
	}
	if job := h.jobs.job(t, task.JobID); job.Status != tarport.StatusReady {
		t.Fatalf("job %s %+v, want ready", job.Status, job.Error)
	}

	// Another image of this registry with the layer: no fetch, one check,
	// asked of this registry.
	other := newTestImage(t, "registry.example/team/other:v1", 51, 3000)
	h.serve(other)
	_, tasks := create(t, h, Request{Image: "registry.example/team/other:v1"})
	if err := h.svc.RunTask(context.Background(), tasks[0]); err != nil {
		t.Fatal(err)
	}
	if n := h.reg.openCount(task.Desc.Digest); n != 1 || h.reg.checks != 1 || h.reg.checked[0] != testOrigin {
		t.Errorf("%d fetches, checks at %v; want no new fetch and one check at %q", n, h.reg.checked, testOrigin)
	}
}

// TestSharedFetchFailureIsNotTheFollowersError: two jobs need one layer
// from one registry, so the second joins the first's fetch. That fetch
// fails with an error about the first job's repository; the second job
// fetches the layer itself and never sees that error.
func TestSharedFetchFailureIsNotTheFollowersError(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{Attempts: 1})
	a := newTestImage(t, "registry.example/team/a:v1", 52, 4000)
	b := a
	b.img.Ref.Tag = "v2" // another job, the same layer
	h.serve(a)
	h.serve(b)
	_, tasksA := create(t, h, Request{Image: "registry.example/team/a:v1"})
	_, tasksB := create(t, h, Request{Image: "registry.example/team/a:v2"})
	blob := a.blobs[tasksA[0].Desc.Digest]
	opened, release := make(chan struct{}), make(chan struct{})
	const leaderError = "registry.example/team/secret-a refused access"
	h.reg.open = func(ctx context.Context, d descriptor.Descriptor, attempt int) (io.ReadCloser, error) {
		if attempt == 1 {
			close(opened)
			<-release
			return nil, tarport.Errorf(tarport.CodeUnauthorized, "%s", leaderError)
		}
		return verifying(d, bytes.NewReader(blob)), nil
	}
	doneA := make(chan error, 1)
	go func() { doneA <- h.svc.RunTask(context.Background(), tasksA[0]) }()
	<-opened
	doneB := joinFetch(t, h, tasksB[0])
	close(release)
	for _, done := range []chan error{doneA, doneB} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if job := h.jobs.job(t, tasksA[0].JobID); job.Status != tarport.StatusFailed || job.Error.Message != leaderError {
		t.Errorf("job A %s %+v, want failed with its own error", job.Status, job.Error)
	}
	jobB := h.jobs.job(t, tasksB[0].JobID)
	if jobB.Status != tarport.StatusReady {
		t.Fatalf("job B %s %+v: another job's failed fetch failed it; want it to fetch the layer itself", jobB.Status, jobB.Error)
	}
	if n := h.reg.openCount(tasksB[0].Desc.Digest); n != 2 {
		t.Errorf("%d fetches, want 2 (A's, then B's own)", n)
	}
}

// TestForeignLayerEntryIsCheckedAtItsURL: a foreign layer read from its
// URL is cached under that URL's origin; another image listing the same
// URL reuses it after a check at that URL (not at the registry, which does
// not have it), and its tar is stitched from that entry.
func TestForeignLayerEntryIsCheckedAtItsURL(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	const url = "https://cdn.example/layers/base.tar.gz"
	urlOrigin := tarport.URLOrigin(url)
	h.reg.locate = func(d descriptor.Descriptor) (tarport.Origin, error) {
		if len(d.URLs) > 0 {
			return tarport.URLOrigin(d.URLs[0]), nil
		}
		return testOrigin, nil
	}
	first := withURLs(t, newTestImage(t, "registry.example/win/app:v1", 53, 20_000, 700), 0, url)
	second := withURLs(t, newTestImage(t, "registry.example/win/tool:v1", 53, 20_000, 900), 0, url)
	h.serve(first)
	h.serve(second)
	foreign := first.img.Layers[0].Digest

	v1 := h.jobs.job(t, runAll(t, h, first).ID)
	if v1.Status != tarport.StatusReady {
		t.Fatalf("first image %s %+v", v1.Status, v1.Error)
	}
	if _, ok := h.objs.object(EntryKey(urlOrigin, foreign)); !ok {
		t.Fatal("the foreign layer is not cached under its URL's origin")
	}
	if _, ok := h.objs.object(EntryKey(testOrigin, foreign)); ok {
		t.Fatal("the foreign layer is cached under the registry's origin, which did not serve it")
	}
	h.reg.mu.Lock()
	h.reg.checked = nil
	h.reg.mu.Unlock()

	v2 := h.jobs.job(t, runAll(t, h, second).ID)
	if v2.Status != tarport.StatusReady {
		t.Fatalf("second image %s %+v; a cached foreign layer must serve every image that lists it", v2.Status, v2.Error)
	}
	if n := h.reg.openCount(foreign); n != 1 {
		t.Errorf("the foreign layer was fetched %d times, want once", n)
	}
	if len(h.reg.checked) != 1 || h.reg.checked[0] != urlOrigin {
		t.Errorf("checks at %v, want one: the foreign layer's, at its URL", h.reg.checked)
	}
}

// withURLs makes layer i of ti a foreign layer listing urls (the
// manifest re-encoded, as a registry would serve it).
func withURLs(t *testing.T, ti testImage, i int, urls ...string) testImage {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ti.img.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	layers := append([]descriptor.Descriptor{}, ti.img.Layers...)
	layers[i].URLs = urls
	layers[i].MediaType = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	m["layers"] = layers
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ti.img.Manifest, ti.img.ManifestDigest, ti.img.Layers = raw, digest.FromBytes(raw), layers
	return ti
}

// TestSplitForeignLayerPinsOneOrigin: the parts of a split foreign layer
// all read from the origin located when the job was made, and its
// verified entry is cached under that origin.
func TestSplitForeignLayerPinsOneOrigin(t *testing.T) {
	t.Parallel()
	h := newHarness(t, splitConfig())
	const url = "https://cdn.example/layers/huge.tar.gz"
	located := 0
	h.reg.locate = func(d descriptor.Descriptor) (tarport.Origin, error) {
		located++
		return tarport.URLOrigin(d.URLs[0]), nil
	}
	ti := withURLs(t, newTestImage(t, "registry.example/win/huge:v1", 54, 12<<20+700), 0, url)
	h.serve(ti)
	_, tasks := create(t, h, Request{Image: "registry.example/win/huge:v1"})
	if len(tasks) != 3 || located != 1 {
		t.Fatalf("%d tasks, located %d times; want 3 parts located once", len(tasks), located)
	}
	for _, task := range tasks {
		if task.Origin != tarport.URLOrigin(url) {
			t.Fatalf("part %+v reads from %q, want the located URL", task.Range, task.Origin)
		}
	}
	runQueued(t, h, 54, true)
	job := h.jobs.job(t, tasks[0].JobID)
	if job.Status != tarport.StatusReady {
		t.Fatalf("job %s %+v", job.Status, job.Error)
	}
	if _, ok := h.objs.object(EntryKey(tarport.URLOrigin(url), ti.img.Layers[0].Digest)); !ok {
		t.Error("the verified entry is not cached under the URL's origin")
	}
	for _, o := range h.reg.origins {
		if o != tarport.URLOrigin(url) {
			t.Errorf("a part was read from %q", o)
		}
	}
	if strings.Contains(job.TarKey, job.ID) {
		t.Errorf("tar key %q names the job", job.TarKey)
	}
}

// TestPrivateJobLinkNeedsTheRegistryAgain: a ready private job's link is
// signed only for credentials the registry authorizes again for its
// manifest; without them the status says why (credentials_required) and
// no link is signed. Progress of a running private job needs none.
func TestPrivateJobLinkNeedsTheRegistryAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	alice := tarport.Credentials{Username: "alice", Password: "pw"}
	ti := newTestImage(t, "registry.example/alice/secret:1", 55, 1000)
	h.serve(ti)
	v, tasks := create(t, h, Request{Image: "registry.example/alice/secret:1", Creds: alice})
	if !v.Private {
		t.Fatal("a job made with credentials is not private")
	}
	if got, err := h.svc.Status(context.Background(), v.ID, tarport.Credentials{}); err != nil || got.URL != "" {
		t.Fatalf("progress of a running private job: %+v, %v", got, err)
	}
	for _, task := range tasks {
		if err := h.svc.RunTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
	}
	signed := h.signer.count()
	_, err := h.svc.Status(context.Background(), v.ID, tarport.Credentials{})
	if tarport.ErrorCode(err) != tarport.CodeCredentialsGone || !strings.Contains(tarport.ErrorMessage(err), "private") {
		t.Fatalf("anonymous status of a ready private job: %v; want credentials_required saying why", err)
	}
	h.reg.denied = map[string]bool{"mallory": true}
	if _, err := h.svc.Status(context.Background(), v.ID, tarport.Credentials{Username: "mallory", Password: "x"}); tarport.ErrorCode(err) != tarport.CodeUnauthorized {
		t.Fatalf("status with credentials the registry refuses: %v; want unauthorized", err)
	}
	if h.signer.count() != signed {
		t.Fatalf("a link was signed for a requester the registry did not authorize")
	}
	got, err := h.svc.Status(context.Background(), v.ID, alice)
	if err != nil || got.URL == "" || h.reg.manifestChecks != 3 {
		t.Fatalf("status with Alice's credentials: %+v, %v (%d manifest checks); want a link", got, err, h.reg.manifestChecks)
	}
	if w, err := h.svc.Wait(context.Background(), v.ID, time.Second, tarport.Credentials{}); tarport.ErrorCode(err) != tarport.CodeCredentialsGone || w.URL != "" {
		t.Fatalf("Wait without credentials: %+v, %v", w, err)
	}
}

// TestSplitLayerUsesAnotherJobsEntryOnlyAfterACheck: a split layer whose
// entry another job stores while its parts wait is not taken without the
// registry's yes for this requester: refused, the job fails and nothing
// is stitched; allowed, it is used.
func TestSplitLayerUsesAnotherJobsEntryOnlyAfterACheck(t *testing.T) {
	t.Parallel()
	for _, denied := range []bool{true, false} {
		h := newHarness(t, splitConfig())
		ti := newTestImage(t, "registry.example/team/huge:v1", 56, 12<<20+700)
		h.serve(ti)
		mallory := tarport.Credentials{Username: "mallory", Password: "x"}
		_, tasks := create(t, h, Request{Image: "registry.example/team/huge:v1", Creds: mallory})
		if len(tasks) != 3 {
			t.Fatalf("%d tasks, want 3 parts", len(tasks))
		}
		entry := entryBytes(t, ti.blobs[ti.img.Layers[0].Digest])
		if err := h.objs.Put(context.Background(), EntryKey(testOrigin, ti.img.Layers[0].Digest), bytes.NewReader(entry), int64(len(entry))); err != nil {
			t.Fatal(err)
		}
		if denied {
			h.reg.denied = map[string]bool{"mallory": true}
		}
		runQueued(t, h, 56, false)
		job := h.jobs.job(t, tasks[0].JobID)
		if denied {
			if job.Status != tarport.StatusFailed || job.Error.Code != tarport.CodeUnauthorized || h.objs.stitchCount() != 0 {
				t.Fatalf("refused requester: job %s %+v, %d stitches; want failed unauthorized and no tar", job.Status, job.Error, h.objs.stitchCount())
			}
			continue
		}
		if job.Status != tarport.StatusReady || h.reg.checks == 0 {
			t.Fatalf("allowed requester: job %s %+v after %d checks; want ready after a check", job.Status, job.Error, h.reg.checks)
		}
	}
}
