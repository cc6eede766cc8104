package download

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarport"
)

// bundleImages serves two images of different repositories that share
// their first (big) layer, and a third of another registry sharing none.
func bundleImages(t *testing.T, h *harness) []testImage {
	t.Helper()
	a := newTestImage(t, "registry.example/team/web:1", 51, 6<<20, 1000)
	b := newTestImage(t, "registry.example/team/api:2", 51, 6<<20, 3000)
	c := newTestImage(t, "other.example/tools/cli:3", 52, 2000)
	for _, ti := range []testImage{a, b, c} {
		h.serve(ti)
	}
	if a.img.Layers[0].Digest != b.img.Layers[0].Digest {
		t.Fatal("the images do not share their base")
	}
	return []testImage{a, b, c}
}

func refsOf(tis []testImage) []string {
	var out []string
	for _, ti := range tis {
		out = append(out, ti.img.Ref.CommonName())
	}
	return out
}

func blobsOf(tis []testImage) map[digest.Digest][]byte {
	out := map[digest.Digest][]byte{}
	for _, ti := range tis {
		maps.Copy(out, ti.blobs)
	}
	return out
}

// TestBundle: several images in one job: each distinct layer one task (for
// the first image listing it, from that image's registry), the shared base
// once, every image's progress, and the tar of PlanImages, stitched and
// streamed alike.
func TestBundle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	tis := bundleImages(t, h)
	v, tasks := create(t, h, Request{Images: refsOf(tis)})
	imgs := []tarport.Image{tis[0].img, tis[1].img, tis[2].img}
	want := expectedTar(t, planOf(t, imgs...), blobsOf(tis))
	if v.TotalBytes != int64(len(want)) || len(v.Bundle) != 3 || v.Ref != "" || v.Digest != "" {
		t.Fatalf("job of %d bytes (want %d), bundle %+v, ref %q", v.TotalBytes, len(want), v.Bundle, v.Ref)
	}
	if v.Image != "registry.example/team/web:1 + 2 more" || !strings.HasPrefix(v.FileName, "bundle_3-images_linux_amd64") {
		t.Fatalf("named %q, file %q", v.Image, v.FileName)
	}
	if len(v.Layers) != 4 || len(tasks) != 4 {
		t.Fatalf("%d layers, %d tasks; want the 4 distinct layers", len(v.Layers), len(tasks))
	}
	byDigest := map[digest.Digest]Task{}
	for _, task := range tasks {
		byDigest[task.Desc.Digest] = task
	}
	for i, ti := range tis {
		ji := v.Bundle[i]
		if ji.Ref != ti.img.Ref.CommonName() || ji.Digest != ti.img.ManifestDigest || len(ji.Layers) != len(ti.img.Layers) {
			t.Fatalf("image %d recorded as %+v", i, ji)
		}
		for _, l := range ti.img.Layers[1:] { // its own layers: fetched for it
			if byDigest[l.Digest].Ref != ti.img.Ref.CommonName() {
				t.Fatalf("layer %s of image %d fetched for %s", l.Digest, i, byDigest[l.Digest].Ref)
			}
		}
	}
	if byDigest[tis[0].img.Layers[0].Digest].Ref != tis[0].img.Ref.CommonName() {
		t.Fatal("the shared base is not fetched for the first image listing it")
	}
	rc, err := h.svc.Stream(context.Background(), h.jobs.job(t, v.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	streamed := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(rc)
		streamed <- b
	}()
	runQueued(t, h, 1, true)
	job := h.jobs.job(t, v.ID)
	tar, _ := h.objs.object(job.TarKey)
	if job.Status != tarport.StatusReady {
		t.Fatalf("job %s %+v", job.Status, job.Error)
	}
	if d := firstDiff(tar, want); d != "" {
		t.Fatalf("stitched tar: %s", d)
	}
	if d := firstDiff(<-streamed, want); d != "" {
		t.Fatalf("streamed tar: %s", d)
	}
	if n := h.reg.openCount(tis[0].img.Layers[0].Digest); n != 1 {
		t.Fatalf("the shared base was read %d times", n)
	}
}

// TestBundleOfOneImage: a bundle naming one image (in any spelling, any
// number of times) is that image's job: the same key, joined, the same tar.
func TestBundleOfOneImage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	ti := newTestImage(t, "docker.io/library/nginx:latest", 53, 3000)
	h.serve(ti)
	one, _ := create(t, h, Request{Image: "nginx"})
	bundle, tasks := create(t, h, Request{Images: []string{"nginx", "library/nginx:latest", "docker.io/library/nginx"}})
	if bundle.ID != one.ID || len(tasks) != 0 || bundle.Bundle != nil {
		t.Fatalf("bundle %s (%d tasks, bundle %+v); want it to join job %s", bundle.ID, len(tasks), bundle.Bundle, one.ID)
	}
}

// TestBundleRefused: what cannot be a bundle is refused before any layer
// is fetched, naming the image at fault.
func TestBundleRefused(t *testing.T) {
	t.Parallel()
	many := make([]string, MaxBundle+1)
	for i := range many {
		many[i] = fmt.Sprintf("registry.example/team/app%d:1", i)
	}
	for _, tc := range []struct {
		name string
		req  func(tis []testImage) Request
		cfg  Config
		code tarport.Code
		says string
	}{
		{"missing image", func(tis []testImage) Request {
			return Request{Images: append(refsOf(tis), "registry.example/team/ghost:9")}
		}, Config{}, tarport.CodeNotFound, "registry.example/team/ghost:9"},
		{"bad reference", func(tis []testImage) Request {
			return Request{Images: append(refsOf(tis), "Bad Name")}
		}, Config{}, tarport.CodeInvalidReference, `"Bad Name"`},
		{"too many", func([]testImage) Request { return Request{Images: many} }, Config{}, tarport.CodeTooLarge, "at most 50"},
		{"too big together", func(tis []testImage) Request { return Request{Images: refsOf(tis)} },
			Config{MaxImageBytes: 6<<20 + 5000}, tarport.CodeTooLarge, "add up to"},
		{"image and images", func(tis []testImage) Request { return Request{Image: "nginx", Images: refsOf(tis)} },
			Config{}, tarport.CodeInvalid, "not both"},
		{"a login for several registries", func(tis []testImage) Request {
			return Request{Images: refsOf(tis), Creds: tarport.Credentials{Username: "alice", Password: "pw"}}
		}, Config{}, tarport.CodeInvalid, "registry.example, other.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, tc.cfg)
			tis := bundleImages(t, h)
			_, err := h.svc.Create(context.Background(), tc.req(tis))
			if tarport.ErrorCode(err) != tc.code || !strings.Contains(tarport.ErrorMessage(err), tc.says) {
				t.Fatalf("error %v (code %s); want %s saying %q", err, tarport.ErrorCode(err), tc.code, tc.says)
			}
			if len(h.queue.tasks()) != 0 || h.jobs.count() != 0 || h.reg.totalOpens() != 0 {
				t.Fatalf("a refused bundle queued %d tasks, stored %d jobs", len(h.queue.tasks()), h.jobs.count())
			}
		})
	}
}

// TestBundlePrivateLink: a private bundle's link is given only to creds
// every one of its images' registries still lets read it.
func TestBundlePrivateLink(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	tis := bundleImages(t, h)[:2] // one registry's: a login goes to one
	creds := tarport.Credentials{Username: "alice", Password: "pw"}
	v, _ := create(t, h, Request{Images: refsOf(tis), Creds: creds})
	runQueued(t, h, 2, false)
	if _, err := h.svc.Status(context.Background(), v.ID, creds); err != nil {
		t.Fatal(err)
	}
	if h.reg.manifestChecks != 2 {
		t.Fatalf("%d manifest checks; want one per image", h.reg.manifestChecks)
	}
	h.reg.denied = map[string]bool{"alice": true}
	if got, err := h.svc.Status(context.Background(), v.ID, creds); err == nil || got.URL != "" {
		t.Fatalf("a refused login got %+v", got)
	}
	// The images are checked at once, not one after another (50 slow
	// registries would outlast the check's 15 s): the first check waits
	// for the second to start.
	h.reg.denied = nil
	second := make(chan struct{})
	var calls atomic.Int32
	var overlapped atomic.Bool
	h.reg.onManifestCheck = func() {
		if calls.Add(1) == 2 {
			close(second)
			return
		}
		select {
		case <-second:
			overlapped.Store(true)
		case <-time.After(5 * time.Second):
		}
	}
	if _, err := h.svc.Status(context.Background(), v.ID, creds); err != nil || !overlapped.Load() {
		t.Fatalf("Status: %v; checks overlapped: %v", err, overlapped.Load())
	}
}

// TestBundleResume: after a restart a bundle's unfinished layers are
// queued again, each for the image that lists it first.
func TestBundleResume(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	tis := bundleImages(t, h)
	v, _ := create(t, h, Request{Images: refsOf(tis)})
	before := len(h.queue.tasks())
	if err := h.svc.Resume(context.Background(), []tarport.Job{h.jobs.job(t, v.ID)}); err != nil {
		t.Fatal(err)
	}
	resumed := h.queue.tasks()[before:]
	if len(resumed) != 4 {
		t.Fatalf("%d tasks resumed, want 4", len(resumed))
	}
	for _, task := range resumed {
		if task.Desc.Digest == tis[2].img.Layers[0].Digest && task.Ref != tis[2].img.Ref.CommonName() {
			t.Fatalf("the third image's layer resumed for %s", task.Ref)
		}
	}
	runQueued(t, h, 4, false)
	if job := h.jobs.job(t, v.ID); job.Status != tarport.StatusReady {
		t.Fatalf("job %s", job.Status)
	}
}

// TestBundleKeepsRetryAfter: a registry's "try again in N s" inside a
// bundle reaches the client with the image named.
func TestBundleKeepsRetryAfter(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{})
	tis := bundleImages(t, h)
	limited := tarport.Errorf(tarport.CodeRateLimited, "the registry asks to slow down")
	limited.RetryAfter = 42
	h.reg.resolveErr = limited
	_, err := h.svc.Create(context.Background(), Request{Images: refsOf(tis)})
	var e *tarport.Error
	if !errors.As(err, &e) || e.Code != tarport.CodeRateLimited || e.RetryAfter != 42 || !strings.HasPrefix(e.Message, "image ") {
		t.Fatalf("error %#v; want rate_limited, Retry-After 42, the image named", err)
	}
}
