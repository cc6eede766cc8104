package download

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarport"
)

// create runs Create and returns the view and the tasks it enqueued.
func create(t *testing.T, h *harness, req Request) (View, []Task) {
	t.Helper()
	before := len(h.queue.tasks())
	v, err := h.svc.Create(context.Background(), req)
	if err != nil {
		t.Fatalf("Create(%+v): %v", req, err)
	}
	return v, h.queue.tasks()[before:]
}

func TestCreateRefusesBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		image, platform string
		code            tarport.Code
	}{
		{"", "", tarport.CodeInvalidReference},
		{"   ", "", tarport.CodeInvalidReference},
		{"Team/App:v1", "", tarport.CodeInvalidReference},
		{"nginx latest", "", tarport.CodeInvalidReference},
		{"ocidir:///etc", "", tarport.CodeInvalidReference},
		{"nginx@sha256:xyz", "", tarport.CodeInvalidReference},
		{strings.Repeat("a", tarport.MaxReferenceLength+1), "", tarport.CodeInvalidReference},
		{"nginx", "linux", tarport.CodeInvalidPlatform},
		{"nginx", "linux/arm/v7/x", tarport.CodeInvalidPlatform},
		{"nginx", "linux/$(id)", tarport.CodeInvalidPlatform},
	} {
		h := newHarness(t, Config{})
		_, err := h.svc.Create(context.Background(), Request{Image: tc.image, Platform: tc.platform})
		if got := tarport.ErrorCode(err); got != tc.code {
			t.Errorf("Create(%q, %q): code %s (%v), want %s", tc.image, tc.platform, got, err, tc.code)
		}
		if h.reg.resolves != 0 || h.jobs.count() != 0 {
			t.Errorf("Create(%q, %q): %d resolves, %d jobs; want none", tc.image, tc.platform, h.reg.resolves, h.jobs.count())
		}
	}
}

// TestCreatePassesRegistryErrors: the registry's coded error reaches the
// caller unchanged (code, message, Retry-After), and no job is made.
func TestCreatePassesRegistryErrors(t *testing.T) {
	t.Parallel()
	rateLimited := tarport.Errorf(tarport.CodeRateLimited, "the registry limits pulls")
	rateLimited.RetryAfter = 42
	for _, want := range []*tarport.Error{
		tarport.Errorf(tarport.CodeNotFound, "no such tag"),
		tarport.Errorf(tarport.CodePlatformNotFound, "no linux/s390x; available: linux/amd64"),
		tarport.Errorf(tarport.CodeUnauthorized, "the registry wants credentials"),
		tarport.Errorf(tarport.CodeForbidden, "denied"),
		tarport.Errorf(tarport.CodeBlockedAddress, "private address"),
		tarport.Errorf(tarport.CodeUnsupported, "schema 1"),
		tarport.Wrap(errors.New("dial tcp: i/o timeout"), tarport.CodeUpstreamTimeout, "the registry did not answer"),
		rateLimited,
	} {
		h := newHarness(t, Config{})
		h.reg.resolveErr = want
		_, err := h.svc.Create(context.Background(), Request{Image: "registry.example/team/app:v1", Platform: "linux/arm64"})
		var got *tarport.Error
		if !errors.As(err, &got) || got.Code != want.Code || got.Message != want.Message || got.RetryAfter != want.RetryAfter {
			t.Errorf("Create with the registry failing %v: got %v", want, err)
		}
		if h.jobs.createCount() != 0 || h.queue.batchCount() != 0 {
			t.Errorf("Create with the registry failing %s: %d jobs created, %d enqueues", want.Code, h.jobs.createCount(), h.queue.batchCount())
		}
	}
}

func TestCreateRecordsTheJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/app:v1", 1, 100, 2000, -1, 300)
	h.serve(ti)
	creds := tarport.Credentials{Username: "bob", Password: "s3cret-pat"}
	v, tasks := create(t, h, Request{Image: "registry.example/team/app:v1", Platform: "linux/arm64/v8", Creds: creds})

	layout := planOf(t, ti.img)
	if v.Status != tarport.StatusQueued || v.URL != "" || v.TotalBytes != layout.Size || v.Digest != ti.img.ManifestDigest {
		t.Errorf("view: status %s, url %q, total %d (want %d), digest %s", v.Status, v.URL, v.TotalBytes, layout.Size, v.Digest)
	}
	if v.Platform != "linux/arm64" || v.Image != "registry.example/team/app:v1" || v.Ref != "registry.example/team/app:v1" {
		t.Errorf("view: platform %q, image %q, ref %q", v.Platform, v.Image, v.Ref)
	}
	// The tar's key (in every link's path) is its own name, not the job id:
	// a link must not reveal the capability that outlives it.
	tarName := strings.TrimSuffix(strings.TrimPrefix(v.TarKey, "tars/"), ".tar")
	if !v.Private || len(tarName) < 26 || strings.Contains(v.TarKey, v.ID) || v.TarKey != "tars/"+tarName+".tar" || v.FileName != "registry.example_team_app_v1_linux_arm64.tar" {
		t.Errorf("view: private %v, tar key %q, file %q", v.Private, v.TarKey, v.FileName)
	}
	// The duplicate layer is one task and one progress entry.
	if len(tasks) != 3 || len(v.Layers) != 3 || v.Remaining != 3 {
		t.Fatalf("%d tasks, %d layers, remaining %d; want 3 distinct layers", len(tasks), len(v.Layers), v.Remaining)
	}
	for i, task := range tasks {
		if task.JobID != v.ID || task.Layer != i || task.Desc.Digest != v.Layers[i].Digest || task.Creds != creds || task.Ref != v.Ref {
			t.Errorf("task %d: %+v", i, task)
		}
	}
	// Credentials travel in the task in memory, never in the job or a
	// serialized task.
	stored := h.jobs.job(t, v.ID)
	for _, x := range []any{stored, tasks} {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "s3cret-pat") || strings.Contains(string(b), "bob") {
			t.Errorf("credentials serialized: %s", b)
		}
	}
	if len(v.ID) != 26 || id32(v.ID) != v.ID {
		t.Errorf("job id %q is not 26 base32 characters", v.ID)
	}
}

func id32(id string) string {
	return strings.Map(func(r rune) rune {
		if (r >= 'a' && r <= 'z') || (r >= '2' && r <= '7') {
			return r
		}
		return -1
	}, id)
}

// TestCreateWithoutLayersIsReadyAtOnce: nothing to fetch, so Create
// stitches in the request and answers ready with a link.
func TestCreateWithoutLayersIsReadyAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/empty:v1", 2)
	h.serve(ti)
	v, tasks := create(t, h, Request{Image: "registry.example/team/empty:v1"})
	if v.Status != tarport.StatusReady || v.URL == "" || v.DoneBytes() != v.TotalBytes {
		t.Fatalf("view: status %s, url %q, done %d of %d; want ready with a link", v.Status, v.URL, v.DoneBytes(), v.TotalBytes)
	}
	if len(tasks) != 0 || h.queue.batchCount() != 0 {
		t.Errorf("%d tasks enqueued in %d batches; want none", len(tasks), h.queue.batchCount())
	}
	if n := h.objs.stitchCount(); n != 1 {
		t.Errorf("%d stitches, want 1", n)
	}
	got, _ := h.objs.object(v.TarKey)
	if d := firstDiff(got, expectedTar(t, planOf(t, ti.img), nil)); d != "" {
		t.Errorf("tar: %s", d)
	}
}

// TestCreateJoinsTheLiveJob: the same image, platform and tag share one
// job and one set of tasks; another tag or platform is another job.
func TestCreateJoinsTheLiveJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/app:v1", 3, 1000, 2000)
	h.serve(ti)
	other := ti
	other.img.Ref.Tag = "latest"
	h.serve(other)

	first, tasks := create(t, h, Request{Image: "registry.example/team/app:v1", Platform: "linux/amd64"})
	if len(tasks) != 2 {
		t.Fatalf("%d tasks, want 2", len(tasks))
	}
	// A second anonymous requester (still authorized by Resolve first)
	// joins the job.
	again, more := create(t, h, Request{Image: "registry.example/team/app:v1", Platform: ""})
	if again.ID != first.ID || len(more) != 0 || h.queue.batchCount() != 1 {
		t.Errorf("second Create: job %s (first %s), %d more tasks, %d enqueues; want the same job, enqueued once", again.ID, first.ID, len(more), h.queue.batchCount())
	}
	if h.reg.resolves != 2 {
		t.Errorf("%d resolves; every request must be checked against the registry", h.reg.resolves)
	}
	// A registry login shares a job only with itself: its tasks run with
	// that login, and the job is private to it.
	u := tarport.Credentials{Username: "u", Password: "p"}
	login, _ := create(t, h, Request{Image: "registry.example/team/app:v1", Creds: u})
	sameLogin, _ := create(t, h, Request{Image: "registry.example/team/app:v1", Creds: tarport.Credentials{Username: "u", Password: "p"}})
	otherLogin, _ := create(t, h, Request{Image: "registry.example/team/app:v1", Creds: tarport.Credentials{Username: "w", Password: "p"}})
	if login.ID == first.ID || sameLogin.ID != login.ID || otherLogin.ID == login.ID || otherLogin.ID == first.ID {
		t.Errorf("jobs: anonymous %s, login u %s and %s, login w %s; want u's shared, apart from anonymous and w", first.ID, login.ID, sameLogin.ID, otherLogin.ID)
	}
	if strings.Contains(mustJSON(t, h.jobs.job(t, login.ID)), `"u"`) {
		t.Errorf("the job names the login")
	}
	for _, req := range []Request{
		{Image: "registry.example/team/app:latest"},
		{Image: "registry.example/team/app:v1", Platform: "linux/arm64"},
	} {
		v, _ := create(t, h, req)
		if v.ID == first.ID {
			t.Errorf("Create(%+v) joined job %s of another tag or platform", req, first.ID)
		}
	}

	// Racing identical requests: one job, one enqueue.
	h2 := newHarness(t, Config{})
	h2.serve(ti)
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		wg.Go(func() {
			v, err := h2.svc.Create(context.Background(), Request{Image: "registry.example/team/app:v1"})
			if err != nil {
				t.Error(err)
			}
			ids[i] = v.ID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("concurrent Creates got jobs %v", ids)
		}
	}
	if n := h2.queue.batchCount(); n != 1 {
		t.Errorf("%d enqueues for concurrent identical requests, want 1", n)
	}
}

// TestCreateFailsTheJobWhenTheQueueFails: the job is failed (so the next
// request makes a new one) and the caller gets service_unavailable without
// the queue's error text.
func TestCreateFailsTheJobWhenTheQueueFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/app:v1", 4, 1000)
	h.serve(ti)
	h.queue.err = errors.New("sqs: connection refused to 10.0.0.7")
	_, err := h.svc.Create(context.Background(), Request{Image: "registry.example/team/app:v1"})
	if tarport.ErrorCode(err) != tarport.CodeUnavailable || strings.Contains(tarport.ErrorMessage(err), "10.0.0.7") {
		t.Fatalf("Create: %v; want service_unavailable with a safe message", err)
	}
	if h.jobs.count() != 1 {
		t.Fatalf("%d jobs, want the one that failed", h.jobs.count())
	}
	var failed tarport.Job
	for _, j := range h.jobs.all() {
		failed = j
	}
	if failed.Status != tarport.StatusFailed || failed.Error == nil || failed.Error.Code != tarport.CodeUnavailable {
		t.Fatalf("job: status %s, error %+v; want failed with service_unavailable", failed.Status, failed.Error)
	}
	h.queue.mu.Lock()
	h.queue.err = nil
	h.queue.mu.Unlock()
	v, tasks := create(t, h, Request{Image: "registry.example/team/app:v1"})
	if v.ID == failed.ID || len(tasks) != 1 {
		t.Errorf("retry after the queue recovered: job %s (failed %s), %d tasks; want a new job", v.ID, failed.ID, len(tasks))
	}
}

func TestCreatePassesJobStoreErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.serve(newTestImage(t, "registry.example/team/app:v1", 5, 10))
	h.jobs.createErr = tarport.Errorf(tarport.CodeUnavailable, "the job store is offline")
	_, err := h.svc.Create(context.Background(), Request{Image: "registry.example/team/app:v1"})
	if tarport.ErrorCode(err) != tarport.CodeUnavailable || h.queue.batchCount() != 0 {
		t.Errorf("Create: %v, %d enqueues; want service_unavailable and nothing queued", err, h.queue.batchCount())
	}
}

// TestStatusSignsReadyJobsOnly: a ready job gets a link signed at read time
// for LinkTTL; any other job gets none and the signer is not asked.
func TestStatusSignsReadyJobsOnly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{LinkTTL: 17 * time.Minute})
	now := time.Date(2026, 11, 26, 22, 1, 36, 0, time.UTC)
	h.svc.now = func() time.Time { return now }
	for _, st := range []tarport.Status{tarport.StatusQueued, tarport.StatusFetching, tarport.StatusAssembling, tarport.StatusFailed, tarport.StatusReady} {
		id := "job-" + string(st)
		job := tarport.Job{ID: id, Status: st, TarKey: "tars/" + id + ".tar", FileName: "app_v1_linux_amd64.tar", ExpiresAt: now.Add(time.Hour)}
		if st == tarport.StatusFailed {
			job.Error = &tarport.JobError{Code: tarport.CodeDigestMismatch, Message: "bad bytes"}
		}
		h.jobs.put(job)
		before := h.signer.count()
		v, err := h.svc.Status(context.Background(), id, tarport.Credentials{})
		if err != nil {
			t.Fatal(err)
		}
		signed := h.signer.count() - before
		if st != tarport.StatusReady {
			if v.URL != "" || !v.LinkExpiresAt.IsZero() || signed != 0 {
				t.Errorf("%s job: url %q, expires %v, %d signatures; want none", st, v.URL, v.LinkExpiresAt, signed)
			}
			continue
		}
		last := h.signer.calls[len(h.signer.calls)-1]
		if signed != 1 || v.URL == "" || last.key != job.TarKey || last.fileName != job.FileName || last.ttl != 17*time.Minute {
			t.Errorf("ready job: url %q, %d signatures, last %+v", v.URL, signed, last)
		}
		if !v.LinkExpiresAt.Equal(now.Add(17 * time.Minute)) {
			t.Errorf("ready job: expires %v, want now+LinkTTL %v", v.LinkExpiresAt, now.Add(17*time.Minute))
		}
		// Signed afresh at every read, never stored.
		if _, err := h.svc.Status(context.Background(), id, tarport.Credentials{}); err != nil || h.signer.count() != before+2 {
			t.Errorf("second read: %v, %d signatures; want a new one", err, h.signer.count()-before)
		}
		if stored := h.jobs.job(t, id); strings.Contains(mustJSON(t, stored), "signed.example") {
			t.Errorf("the link was stored in the job")
		}
	}
	if _, err := h.svc.Status(context.Background(), "nope", tarport.Credentials{}); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Errorf("Status of an unknown job: %v; want not_found", err)
	}
	h.signer.err = errors.New("expired credentials")
	if _, err := h.svc.Status(context.Background(), "job-ready", tarport.Credentials{}); err == nil || tarport.ErrorCode(err) != tarport.CodeInternal {
		t.Errorf("Status with the signer failing: %v; want an internal error", err)
	}
}

func TestStatusDefaultLinkTTL(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	h.jobs.put(tarport.Job{ID: "j", Status: tarport.StatusReady, TarKey: "tars/j.tar"})
	start := time.Now()
	v, err := h.svc.Status(context.Background(), "j", tarport.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if v.LinkExpiresAt.Before(start.Add(time.Hour)) || v.LinkExpiresAt.After(time.Now().Add(time.Hour)) {
		t.Errorf("expires %v, want about now+1h", v.LinkExpiresAt)
	}
}

// TestLinkNeverOutlivesTheTar: a job expiring sooner than the link TTL
// gets a link that ends with it; an expired job gets none.
func TestLinkNeverOutlivesTheTar(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{LinkTTL: time.Hour})
	h.jobs.put(tarport.Job{ID: "soon", Status: tarport.StatusReady, TarKey: "tars/soon.tar", ExpiresAt: time.Now().Add(10 * time.Minute)})
	v, err := h.svc.Status(context.Background(), "soon", tarport.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if v.LinkExpiresAt.After(time.Now().Add(10 * time.Minute)) {
		t.Errorf("link expires %v, after the job's tar (in 10 min)", v.LinkExpiresAt)
	}
	h.jobs.put(tarport.Job{ID: "gone", Status: tarport.StatusReady, TarKey: "tars/gone.tar", ExpiresAt: time.Now().Add(-time.Second)})
	if _, err := h.svc.Status(context.Background(), "gone", tarport.Credentials{}); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Errorf("Status of an expired job: %v, want not_found", err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWait(t *testing.T) {
	t.Parallel()
	t.Run("returns when the job ends", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		h.jobs.put(tarport.Job{ID: "j", Status: tarport.StatusFetching, TarKey: "tars/j.tar"})
		go func() {
			time.Sleep(150 * time.Millisecond)
			h.jobs.SetStatus(context.Background(), "j", tarport.StatusReady, nil)
		}()
		start := time.Now()
		v, err := h.svc.Wait(context.Background(), "j", 10*time.Second, tarport.Credentials{})
		if err != nil || v.Status != tarport.StatusReady || v.URL == "" {
			t.Fatalf("Wait: %+v, %v; want ready with a link", v, err)
		}
		if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
			t.Errorf("Wait took %v", d)
		}
	})
	t.Run("returns at once for a terminal job", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		h.jobs.put(tarport.Job{ID: "j", Status: tarport.StatusFailed, Error: &tarport.JobError{Code: tarport.CodeUnauthorized, Message: "no"}})
		start := time.Now()
		v, err := h.svc.Wait(context.Background(), "j", 10*time.Second, tarport.Credentials{})
		if err != nil || v.Status != tarport.StatusFailed || time.Since(start) > time.Second {
			t.Errorf("Wait: %s, %v after %v", v.Status, err, time.Since(start))
		}
	})
	t.Run("gives up after its timeout", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		h.jobs.put(tarport.Job{ID: "j", Status: tarport.StatusFetching})
		start := time.Now()
		v, err := h.svc.Wait(context.Background(), "j", 300*time.Millisecond, tarport.Credentials{})
		if err != nil || v.ID != "j" || v.Status != tarport.StatusFetching {
			t.Errorf("Wait: %+v, %v; want the pending job", v, err)
		}
		if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
			t.Errorf("Wait took %v, want about 300ms", d)
		}
	})
	t.Run("stops when the request ends", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		h.jobs.put(tarport.Job{ID: "j", Status: tarport.StatusFetching})
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		v, _ := h.svc.Wait(ctx, "j", time.Minute, tarport.Credentials{})
		if v.Status.Terminal() || time.Since(start) > 2*time.Second {
			t.Errorf("Wait: %s after %v", v.Status, time.Since(start))
		}
	})
	t.Run("unknown job", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		if _, err := h.svc.Wait(context.Background(), "nope", time.Minute, tarport.Credentials{}); tarport.ErrorCode(err) != tarport.CodeNotFound {
			t.Errorf("Wait: %v; want not_found", err)
		}
	})
}

// resumeFixture is an anonymous job cut by a restart after its first layer:
// its manifest has a foreign layer with URLs and annotations.
func resumeFixture(t *testing.T, h *harness) (tarport.Job, testImage) {
	t.Helper()
	ti := newTestImage(t, "registry.example/team/app:v1", 6, 3000, 1000, 2000)
	ti.img.Layers[2].MediaType = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	ti.img.Layers[2].URLs = []string{"https://cdn.example/layer.tgz"}
	ti.img.Layers[2].Annotations = map[string]string{"a": "b"}
	m := map[string]any{}
	if err := json.Unmarshal(ti.img.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	m["layers"] = ti.img.Layers
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	ti.img.Manifest, ti.img.ManifestDigest = raw, digest.FromBytes(raw)
	h.serve(ti)
	v, _ := create(t, h, Request{Image: "registry.example/team/app:v1"})
	return h.jobs.job(t, v.ID), ti
}

func TestResume(t *testing.T) {
	t.Parallel()
	t.Run("private jobs ask for credentials", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		job, _ := resumeFixture(t, h)
		job.Private = true
		h.jobs.put(job)
		before := h.queue.batchCount()
		if err := h.svc.Resume(context.Background(), []tarport.Job{job}); err != nil {
			t.Fatal(err)
		}
		got := h.jobs.job(t, job.ID)
		if got.Status != tarport.StatusFailed || got.Error == nil || got.Error.Code != tarport.CodeCredentialsGone || got.Error.Message == "" {
			t.Errorf("job: %s, %+v; want failed with credentials_required", got.Status, got.Error)
		}
		if h.queue.batchCount() != before {
			t.Errorf("a private job was enqueued without credentials")
		}
	})
	t.Run("anonymous jobs enqueue their unfinished layers", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		job, ti := resumeFixture(t, h)
		// Layer 0 (the biggest) was stored before the restart.
		if _, _, err := h.jobs.FinishLayer(context.Background(), job.ID, 0); err != nil {
			t.Fatal(err)
		}
		job = h.jobs.job(t, job.ID)
		before := len(h.queue.tasks())
		if err := h.svc.Resume(context.Background(), []tarport.Job{job}); err != nil {
			t.Fatal(err)
		}
		tasks := h.queue.tasks()[before:]
		if len(tasks) != 2 {
			t.Fatalf("%d tasks, want the 2 unfinished layers", len(tasks))
		}
		for i, task := range tasks {
			want := ti.img.Layers[i+1]
			if task.JobID != job.ID || task.Layer != i+1 || task.Ref != job.Ref || !task.Creds.Anonymous() {
				t.Errorf("task %d: %+v", i, task)
			}
			if mustJSON(t, task.Desc) != mustJSON(t, want) {
				t.Errorf("task %d descriptor %s, want the manifest's %s", i, mustJSON(t, task.Desc), mustJSON(t, want))
			}
		}
		if got := tasks[1].Desc; len(got.URLs) != 1 || got.URLs[0] != "https://cdn.example/layer.tgz" {
			t.Errorf("foreign layer lost its URLs: %+v", got)
		}
		if got := h.jobs.job(t, job.ID); got.Status.Terminal() {
			t.Errorf("resumed job is %s", got.Status)
		}
	})
	t.Run("a job with every layer stored is stitched", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		job, ti := resumeFixture(t, h)
		for i, l := range job.Layers {
			if err := h.objs.Put(context.Background(), EntryKey(testOrigin, l.Digest), strings.NewReader(string(entryBytes(t, ti.blobs[l.Digest]))), int64(len(entryBytes(t, ti.blobs[l.Digest])))); err != nil {
				t.Fatal(err)
			}
			if _, _, err := h.jobs.FinishLayer(context.Background(), job.ID, i); err != nil {
				t.Fatal(err)
			}
		}
		job = h.jobs.job(t, job.ID)
		before := h.queue.batchCount()
		if err := h.svc.Resume(context.Background(), []tarport.Job{job}); err != nil {
			t.Fatal(err)
		}
		got := h.jobs.job(t, job.ID)
		if got.Status != tarport.StatusReady || h.objs.stitchCount() != 1 || h.queue.batchCount() != before {
			t.Errorf("job %s, %d stitches, %d new enqueues; want ready after one stitch", got.Status, h.objs.stitchCount(), h.queue.batchCount()-before)
		}
		tar, _ := h.objs.object(job.TarKey)
		if d := firstDiff(tar, expectedTar(t, planOf(t, ti.img), ti.blobs)); d != "" {
			t.Errorf("tar: %s", d)
		}
	})
	t.Run("a job whose manifest is gone fails", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		job, _ := resumeFixture(t, h)
		job.Digest = digest.FromString("gone")
		h.jobs.put(job)
		if err := h.svc.Resume(context.Background(), []tarport.Job{job}); err != nil {
			t.Fatal(err)
		}
		if got := h.jobs.job(t, job.ID); got.Status != tarport.StatusFailed || got.Error.Code != tarport.CodeInternal {
			t.Errorf("job %s %+v; want failed", got.Status, got.Error)
		}
	})
	t.Run("queue errors are returned", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, Config{})
		job, _ := resumeFixture(t, h)
		h.queue.err = errors.New("closed")
		if err := h.svc.Resume(context.Background(), []tarport.Job{job}); err == nil {
			t.Error("Resume with the queue down: no error")
		}
	})
}

// TestCreatePassesQueueRefusals: a queue that refuses for its bounds (a
// coded error) is answered with its own code and message, and the job is
// failed so no one joins it.
func TestCreatePassesQueueRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "registry.example/team/app:v1", 6, 1000)
	h.serve(ti)
	refusal := tarport.Errorf(tarport.CodeRateLimited, "4000 layers of your downloads are waiting to start")
	refusal.RetryAfter = 60
	h.queue.err = refusal
	_, err := h.svc.Create(context.Background(), Request{Image: "registry.example/team/app:v1", Client: "198.51.100.1"})
	var coded *tarport.Error
	if !errors.As(err, &coded) || coded.Code != tarport.CodeRateLimited || coded.RetryAfter != 60 || coded.Message != refusal.Message {
		t.Fatalf("Create: %v; want the queue's rate_limited answer", err)
	}
	for _, j := range h.jobs.all() {
		if j.Status != tarport.StatusFailed {
			t.Errorf("job %s is %s, want failed", j.ID, j.Status)
		}
	}
}

// TestLinkWithinTheSignersCredentials: a link's expires_at is when it
// really stops working: the signer's lifetime, when its credentials end
// before LinkTTL.
func TestLinkWithinTheSignersCredentials(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{LinkTTL: time.Hour})
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h.svc.now = func() time.Time { return now }
	h.signer.credentialsLeft = 5 * time.Minute
	job := tarport.Job{ID: "j", Status: tarport.StatusReady, TarKey: "tars/x", FileName: "x.tar", ExpiresAt: now.Add(24 * time.Hour)}
	h.jobs.put(job)
	v, err := h.svc.Status(context.Background(), "j", tarport.Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	if !v.LinkExpiresAt.Equal(now.Add(5 * time.Minute)) {
		t.Fatalf("expires %v, want %v (the signer's credentials end then)", v.LinkExpiresAt, now.Add(5*time.Minute))
	}
}
