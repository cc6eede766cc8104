// Package jobstest holds the behaviour every job store (download.Jobs and
// download.PartedJobs) must have, as one suite that each implementation's
// tests run against a real store: sharing jobs by key, status that never
// moves back, clamped progress, each split layer's parts counted once,
// exactly one stitcher however workers race, and one holder of each split
// layer's lease.
package jobstest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/fakeclock"
)

// T0 is the fake "now" each case starts at.
var T0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	// TTL is how long after T0 the jobs built by Job expire (the
	// service's default job lifetime).
	TTL = 24 * time.Hour
	// JoinMargin is the time a job must have left for a new request to
	// join it: the domain's rule, which every store applies (no store
	// has a knob for it).
	JoinMargin = tarport.JoinMargin
)

// Clock is the kits' settable clock.
type Clock = fakeclock.Clock

// NewClock returns a clock at T0.
func NewClock() *Clock { return fakeclock.At(T0) }

// Store is a job store: both stores count split layers' parts too.
type Store interface {
	download.Jobs
	download.PartedJobs
}

// Open returns a fresh, empty store that reads time from now and keeps
// its default join margin (JoinMargin).
type Open func(t *testing.T, now func() time.Time) Store

// Run runs the suite as parallel subtests of t.
func Run(t *testing.T, open Open) { RunSkipping(t, open, nil) }

// RunSkipping is Run for a stand-in known to differ from the real store in
// some cases: each case named in skip is skipped with the reason given,
// which must say what differs and what the real store documents.
func RunSkipping(t *testing.T, open Open, skip map[string]string) {
	cases := []struct {
		name string
		run  func(*testing.T, fresh)
	}{
		{"RoundTrip", roundTrip},
		{"GetMissing", getMissing},
		{"GetExpiry", getExpiry},
		{"CreateDistinctKeys", createDistinctKeys},
		{"CreateSameJobTwice", createSameJobTwice},
		{"CreateSharesLiveJobByKey", createSharesLiveJobByKey},
		{"CreateDoesNotJoinAJobAboutToExpire", createDoesNotJoinAJobAboutToExpire},
		{"CreateConcurrentSameKey", createConcurrentSameKey},
		{"CreateConcurrentReplacesDeadJob", createConcurrentReplacesDeadJob},
		{"SetStatus", setStatus},
		{"SetStatusNeverMovesBack", setStatusNeverMovesBack},
		{"MissingJob", missingJob},
		{"AddProgress", addProgress},
		{"AddProgressConcurrent", addProgressConcurrent},
		{"FinishLayerSequential", finishLayerSequential},
		{"FinishLayerConcurrentSameLayer", finishLayerConcurrentSameLayer},
		{"FinishLayerStitchesExactlyOnce", finishLayerStitchesExactlyOnce},
		{"FinishPartSequential", finishPartSequential},
		{"FinishPartRedelivered", finishPartRedelivered},
		{"FinishPartConcurrentSamePart", finishPartConcurrentSamePart},
		{"FinishPartEachLayerOnce", finishPartEachLayerOnce},
		{"FinishPartErrors", finishPartErrors},
		{"FinishPartExpiredJob", finishPartExpiredJob},
		{"FinishPartTerminalJob", finishPartTerminalJob},
		{"LeaseSplitHeld", leaseSplitHeld},
		{"LeaseSplitTakeover", leaseSplitTakeover},
		{"LeaseSplitLapsed", leaseSplitLapsed},
		{"LeaseSplitConcurrent", leaseSplitConcurrent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if why, ok := skip[c.name]; ok {
				t.Skip(why)
			}
			c.run(t, func(t *testing.T) (Store, *Clock) {
				clk := NewClock()
				return open(t, clk.Now), clk
			})
		})
	}
}

// fresh opens an empty store with its own clock at T0.
type fresh func(t *testing.T) (Store, *Clock)

// Job builds a queued job created at T0, expiring TTL later, with one
// layer per size.
func Job(id, key string, sizes ...int64) tarport.Job {
	j := tarport.Job{
		ID:        id,
		Key:       key,
		Image:     "nginx:1.27",
		Ref:       "docker.io/library/nginx:1.27",
		Platform:  "linux/amd64",
		Digest:    digest.FromString("manifest " + id),
		Status:    tarport.StatusQueued,
		RepoTags:  []string{"nginx:1.27"},
		TarKey:    "tars/" + id + ".tar",
		CreatedAt: T0,
		UpdatedAt: T0,
		ExpiresAt: T0.Add(TTL),
	}
	for i, s := range sizes {
		j.Layers = append(j.Layers, tarport.LayerProgress{Digest: digest.FromString(fmt.Sprintf("%s layer %d", id, i)), Size: s})
		j.TotalBytes += s
	}
	j.Remaining = len(sizes)
	return j
}

// Equal reports whether two jobs have the same fields, times compared as
// instants (a store may hand them back in another location).
func Equal(a, b tarport.Job) bool {
	return reflect.DeepEqual(utcTimes(a), utcTimes(b))
}

func utcTimes(j tarport.Job) tarport.Job {
	j.CreatedAt, j.UpdatedAt, j.ExpiresAt = j.CreatedAt.UTC(), j.UpdatedAt.UTC(), j.ExpiresAt.UTC()
	return j
}

func mustCreate(t *testing.T, s download.Jobs, j tarport.Job) {
	t.Helper()
	live, created, err := s.Create(context.Background(), j)
	if err != nil || !created || !Equal(live, j) {
		t.Fatalf("Create(%s) = (%s, created %v, %v); want the new job", j.ID, live.ID, created, err)
	}
}

func mustGet(t *testing.T, s download.Jobs, id string) tarport.Job {
	t.Helper()
	got, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return got
}

func mustMiss(t *testing.T, s download.Jobs, id string) {
	t.Helper()
	got, err := s.Get(context.Background(), id)
	if code := tarport.ErrorCode(err); code != tarport.CodeNotFound {
		t.Fatalf("Get(%.40q) = (%s, %v) code %s, want not_found", id, got.ID, err, code)
	}
}

// roundTrip: every field comes back as stored, nanoseconds included, and
// absent slices and errors stay absent.
func roundTrip(t *testing.T, open fresh) {
	s, _ := open(t)
	full := Job("full", "key-full", 100, 200, 300, 20<<30)
	full.IndexDigest = digest.FromString("index")
	full.ConfigDigest = digest.FromString("config")
	full.RepoTags = []string{"nginx:1.27", "nginx:latest", "registry.example/ünï/code:v1"}
	full.RefName, full.Name, full.Private = "1.27", "docker.io/library/nginx", true
	full.FileName = "nginx_1.27_linux_amd64.tar"
	full.Status = tarport.StatusFailed
	full.Error = &tarport.JobError{Code: tarport.CodeDigestMismatch, Message: `layer "x" did not match ✗`}
	full.Layers[0].DoneBytes = 40
	full.Layers[1].DoneBytes, full.Layers[1].Finished = 200, true
	full.Layers[3].DoneBytes = 10 << 30
	full.Layers[3].Parts = 4096 // split for its size
	full.Remaining = 3
	full.CreatedAt = T0.Add(123)
	full.UpdatedAt = T0.Add(time.Minute + 456)
	full.ExpiresAt = T0.Add(TTL + 789)

	bare := tarport.Job{ID: "bare", Key: "key-bare", Status: tarport.StatusQueued, ExpiresAt: T0.Add(TTL)}
	empty := bare
	empty.ID, empty.Key = "empty", "key-empty"
	empty.RepoTags, empty.Layers, empty.Error = []string{}, []tarport.LayerProgress{}, &tarport.JobError{}

	bundle := Job("bundle", "key-bundle", 100, 200, 300)
	bundle.Image = "nginx:1.27 + 1 more"
	bundle.Bundle = []tarport.JobImage{
		{Image: "nginx:1.27", Ref: "docker.io/library/nginx:1.27", Digest: digest.FromString("m1"), IndexDigest: digest.FromString("i1"),
			ConfigDigest: digest.FromString("c1"), RepoTags: []string{"nginx:1.27"}, RefName: "1.27", Name: "docker.io/library/nginx", Layers: []int{0, 1}},
		{Image: "registry.example/ünï/code@sha256:ab", Ref: "registry.example/ünï/code@sha256:ab", Digest: digest.FromString("m2"),
			ConfigDigest: digest.FromString("c2"), Name: "registry.example/ünï/code", Layers: []int{1, 2}},
	}

	for _, want := range []tarport.Job{full, bare, empty, bundle} {
		mustCreate(t, s, want)
		if got := mustGet(t, s, want.ID); !Equal(got, want) {
			t.Errorf("Get round trip of %s:\n got %+v\nwant %+v", want.ID, got, want)
		}
	}
}

func getMissing(t *testing.T, open fresh) {
	s, _ := open(t)
	mustCreate(t, s, Job("j", "k", 1))
	for _, id := range []string{"nope", "", "k", "J", "j ", "jöb", strings.Repeat("j", 4096)} {
		mustMiss(t, s, id)
	}
}

// getExpiry: an expired job is gone, whether or not the store has
// deleted it yet.
func getExpiry(t *testing.T, open fresh) {
	s, clk := open(t)
	want := Job("j", "k", 1)
	mustCreate(t, s, want)
	clk.Set(want.ExpiresAt.Add(-time.Nanosecond))
	if got := mustGet(t, s, "j"); !Equal(got, want) {
		t.Fatalf("Get just before expiry = %+v, want %+v", got, want)
	}
	clk.Set(want.ExpiresAt)
	mustMiss(t, s, "j")
	clk.Advance(25 * time.Hour)
	mustMiss(t, s, "j")
}

func createDistinctKeys(t *testing.T, open fresh) {
	s, _ := open(t)
	a, b := Job("a", "key-a", 1), Job("b", "key-b", 2)
	mustCreate(t, s, a)
	mustCreate(t, s, b)
	for _, want := range []tarport.Job{a, b} {
		if got := mustGet(t, s, want.ID); !Equal(got, want) {
			t.Errorf("Get(%s) = %+v, want %+v", want.ID, got, want)
		}
	}
}

// createSameJobTwice: a repeated Create (a retried request) finds the job
// it stored and shares it.
func createSameJobTwice(t *testing.T, open fresh) {
	s, _ := open(t)
	j := Job("j", "k", 1)
	mustCreate(t, s, j)
	if err := s.SetStatus(context.Background(), "j", tarport.StatusFetching, nil); err != nil {
		t.Fatal(err)
	}
	want := mustGet(t, s, "j")
	live, created, err := s.Create(context.Background(), j)
	if err != nil || created || !Equal(live, want) {
		t.Fatalf("Create of a stored job = (%+v, created %v, %v), want the stored job shared", live, created, err)
	}
}

// createSharesLiveJobByKey: a request joins the job with its key while
// that job is live and has more than JoinMargin left; otherwise it gets a
// new job, and the next request joins that one.
func createSharesLiveJobByKey(t *testing.T, open fresh) {
	moveTo := func(st tarport.Status, jerr *tarport.JobError) func(*testing.T, download.Jobs, *Clock) {
		return func(t *testing.T, s download.Jobs, _ *Clock) {
			if err := s.SetStatus(context.Background(), "first", st, jerr); err != nil {
				t.Fatal(err)
			}
		}
	}
	at := func(d time.Duration) func(*testing.T, download.Jobs, *Clock) {
		return func(_ *testing.T, _ download.Jobs, c *Clock) { c.Set(T0.Add(d)) }
	}
	tests := []struct {
		name string
		// prepare moves the first job (and the clock) on.
		prepare     []func(*testing.T, download.Jobs, *Clock)
		wantCreated bool
	}{
		{name: "queued job is shared"},
		{name: "fetching job is shared", prepare: ops(moveTo(tarport.StatusFetching, nil))},
		{name: "assembling job is shared", prepare: ops(moveTo(tarport.StatusAssembling, nil))},
		{name: "ready job is shared with more than the margin left", prepare: ops(moveTo(tarport.StatusReady, nil), at(TTL-JoinMargin-time.Nanosecond))},
		{name: "ready job with exactly the margin left is replaced", prepare: ops(moveTo(tarport.StatusReady, nil), at(TTL-JoinMargin)), wantCreated: true},
		{name: "fetching job with under the margin left is replaced", prepare: ops(moveTo(tarport.StatusFetching, nil), at(TTL-time.Minute)), wantCreated: true},
		{name: "failed job is replaced", prepare: ops(moveTo(tarport.StatusFailed, &tarport.JobError{Code: tarport.CodeUpstream, Message: "boom"})), wantCreated: true},
		{name: "job expiring exactly now is replaced", prepare: ops(at(TTL)), wantCreated: true},
		{name: "expired job is replaced", prepare: ops(at(TTL + time.Second)), wantCreated: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, clk := open(t)
			mustCreate(t, s, Job("first", "k", 10))
			for _, p := range tt.prepare {
				p(t, s, clk)
			}
			var before tarport.Job
			if clk.Now().Before(T0.Add(TTL)) {
				before = mustGet(t, s, "first")
			}

			second := Job("second", "k", 10)
			second.CreatedAt, second.UpdatedAt, second.ExpiresAt = clk.Now(), clk.Now(), clk.Now().Add(TTL)
			live, created, err := s.Create(ctx, second)
			if err != nil {
				t.Fatalf("second Create: %v", err)
			}
			if created != tt.wantCreated {
				t.Fatalf("second Create: created = %v, want %v", created, tt.wantCreated)
			}
			want := before
			if tt.wantCreated {
				want = second
				// The job it replaced is left as it was, to be read until it expires.
				if !before.ExpiresAt.IsZero() {
					if got := mustGet(t, s, "first"); !Equal(got, before) {
						t.Fatalf("replaced job changed:\n got %+v\nwant %+v", got, before)
					}
				}
			} else {
				mustMiss(t, s, "second") // nothing of a joined request is stored
			}
			if !Equal(live, want) {
				t.Fatalf("second Create returned\n %+v\nwant %+v", live, want)
			}

			// A third request for the key finds whichever job is live now.
			third := Job("third", "k", 10)
			third.ExpiresAt = clk.Now().Add(TTL)
			live, created, err = s.Create(ctx, third)
			if err != nil || created || live.ID != want.ID {
				t.Fatalf("third Create = (%q, created %v, %v), want (%q, false, nil)", live.ID, created, err, want.ID)
			}
			mustMiss(t, s, "third")
		})
	}
}

func ops(fs ...func(*testing.T, download.Jobs, *Clock)) []func(*testing.T, download.Jobs, *Clock) {
	return fs
}

// createDoesNotJoinAJobAboutToExpire: with under the join margin left, a
// request gets a new job rather than a link that dies in minutes; a
// store's first job is stored whatever its expiry.
func createDoesNotJoinAJobAboutToExpire(t *testing.T, open fresh) {
	s, clk := open(t)
	ctx := context.Background()
	old := Job("old", "k", 10)
	old.ExpiresAt = clk.Now().Add(30 * time.Minute)
	mustCreate(t, s, old)
	mustCreate(t, s, Job("fresh", "k", 10))
	if got := mustGet(t, s, "old"); !Equal(got, old) {
		t.Fatalf("the old job is still readable until it expires: got %+v", got)
	}
	live, created, err := s.Create(ctx, Job("third", "k", 10))
	if err != nil || created || live.ID != "fresh" {
		t.Fatalf("third Create = (%q, created %v, %v), want the fresh job shared", live.ID, created, err)
	}
}

// createConcurrentSameKey is the conditional put: of many concurrent
// identical requests exactly one makes the job, all get that one, and
// nothing of the others is left stored.
func createConcurrentSameKey(t *testing.T, open fresh) {
	s, clk := open(t)
	winner := raceCreates(t, s, clk, "same", 50)
	for i := range 50 {
		if id := fmt.Sprintf("job-%d", i); id != winner.ID {
			mustMiss(t, s, id)
		}
	}
}

// createConcurrentReplacesDeadJob: many requests racing to replace a
// failed or expired job make exactly one new job and all share it.
func createConcurrentReplacesDeadJob(t *testing.T, open fresh) {
	for _, dead := range []string{"failed", "expired"} {
		t.Run(dead, func(t *testing.T) {
			t.Parallel()
			s, clk := open(t)
			mustCreate(t, s, Job("dead", "same", 5))
			if dead == "failed" {
				if err := s.SetStatus(context.Background(), "dead", tarport.StatusFailed, &tarport.JobError{Code: tarport.CodeInternal, Message: "x"}); err != nil {
					t.Fatal(err)
				}
			} else {
				clk.Set(T0.Add(TTL))
			}
			if winner := raceCreates(t, s, clk, "same", 50); winner.ID == "dead" {
				t.Fatalf("the %s job was shared", dead)
			}
		})
	}
}

// raceCreates runs n concurrent Creates of jobs job-<i> with key, made
// now, and returns the one job they all got.
func raceCreates(t *testing.T, s download.Jobs, clk *Clock, key string, n int) tarport.Job {
	t.Helper()
	var wg sync.WaitGroup
	start := make(chan struct{})
	lives := make([]tarport.Job, n)
	var createdCount atomic.Int32
	for i := range n {
		wg.Go(func() {
			<-start
			jb := Job(fmt.Sprintf("job-%d", i), key, 5)
			jb.CreatedAt, jb.UpdatedAt, jb.ExpiresAt = clk.Now(), clk.Now(), clk.Now().Add(TTL)
			live, created, err := s.Create(context.Background(), jb)
			if err != nil {
				t.Errorf("Create %d: %v", i, err)
				return
			}
			if created {
				createdCount.Add(1)
			}
			lives[i] = live
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if got := createdCount.Load(); got != 1 {
		t.Fatalf("%d of %d concurrent Creates reported created=true, want exactly 1", got, n)
	}
	for i, live := range lives {
		if !Equal(live, lives[0]) {
			t.Fatalf("Create %d returned job %q, Create 0 returned %q: want one shared job", i, live.ID, lives[0].ID)
		}
	}
	if got := mustGet(t, s, lives[0].ID); !Equal(got, lives[0]) {
		t.Fatalf("the shared job as stored:\n got %+v\nwant %+v", got, lives[0])
	}
	return lives[0]
}

func setStatus(t *testing.T, open fresh) {
	jobErr := &tarport.JobError{Code: tarport.CodeDigestMismatch, Message: "layer bytes did not match"}
	tests := []struct {
		name    string
		from    tarport.Status
		fromErr *tarport.JobError
		to      tarport.Status
		toErr   *tarport.JobError
		want    tarport.Status
		wantErr *tarport.JobError
	}{
		{name: "queued to fetching", from: tarport.StatusQueued, to: tarport.StatusFetching, want: tarport.StatusFetching},
		{name: "queued to ready", from: tarport.StatusQueued, to: tarport.StatusReady, want: tarport.StatusReady},
		{name: "fetching to fetching", from: tarport.StatusFetching, to: tarport.StatusFetching, want: tarport.StatusFetching},
		{name: "fetching to assembling", from: tarport.StatusFetching, to: tarport.StatusAssembling, want: tarport.StatusAssembling},
		{name: "assembling to ready", from: tarport.StatusAssembling, to: tarport.StatusReady, want: tarport.StatusReady},
		{name: "assembling not back to fetching", from: tarport.StatusAssembling, to: tarport.StatusFetching, want: tarport.StatusAssembling},
		{name: "fetching not back to queued", from: tarport.StatusFetching, to: tarport.StatusQueued, want: tarport.StatusFetching},
		{name: "queued to failed", from: tarport.StatusQueued, to: tarport.StatusFailed, toErr: jobErr, want: tarport.StatusFailed, wantErr: jobErr},
		{name: "fetching to failed", from: tarport.StatusFetching, to: tarport.StatusFailed, toErr: jobErr, want: tarport.StatusFailed, wantErr: jobErr},
		{name: "assembling to failed", from: tarport.StatusAssembling, to: tarport.StatusFailed, toErr: jobErr, want: tarport.StatusFailed, wantErr: jobErr},
		{name: "ready stays ready", from: tarport.StatusReady, to: tarport.StatusFailed, toErr: jobErr, want: tarport.StatusReady},
		{name: "ready is not requeued", from: tarport.StatusReady, to: tarport.StatusFetching, want: tarport.StatusReady},
		{name: "failed stays failed", from: tarport.StatusFailed, fromErr: jobErr, to: tarport.StatusReady, want: tarport.StatusFailed, wantErr: jobErr},
		{name: "failed keeps its first error", from: tarport.StatusFailed, fromErr: jobErr, to: tarport.StatusFailed, toErr: &tarport.JobError{Code: tarport.CodeInternal, Message: "later"}, want: tarport.StatusFailed, wantErr: jobErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, clk := open(t)
			jb := Job("j", "k", 10)
			jb.Status, jb.Error = tt.from, tt.fromErr
			mustCreate(t, s, jb)
			clk.Advance(time.Minute)
			if err := s.SetStatus(ctx, "j", tt.to, tt.toErr); err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
			got := mustGet(t, s, "j")
			if got.Status != tt.want || !reflect.DeepEqual(got.Error, tt.wantErr) {
				t.Fatalf("after SetStatus(%s): status %s error %+v, want %s %+v", tt.to, got.Status, got.Error, tt.want, tt.wantErr)
			}
			if got.Status != tt.from && !got.UpdatedAt.Equal(clk.Now()) {
				t.Errorf("UpdatedAt = %s after a change at %s", got.UpdatedAt, clk.Now())
			}
			// Nothing else moves.
			want := jb
			want.Status, want.Error, want.UpdatedAt = got.Status, got.Error, got.UpdatedAt
			if !Equal(got, want) {
				t.Errorf("SetStatus changed more than the status:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// setStatusNeverMovesBack: late redelivered tasks cannot move an
// assembling job back; failing is always possible, and then final.
func setStatusNeverMovesBack(t *testing.T, open fresh) {
	s, _ := open(t)
	ctx := context.Background()
	mustCreate(t, s, Job("a", "k", 10))
	steps := []struct {
		to   tarport.Status
		want tarport.Status
	}{
		{tarport.StatusFetching, tarport.StatusFetching},
		{tarport.StatusAssembling, tarport.StatusAssembling},
		{tarport.StatusFetching, tarport.StatusAssembling},
		{tarport.StatusQueued, tarport.StatusAssembling},
		{tarport.StatusFailed, tarport.StatusFailed},
		{tarport.StatusReady, tarport.StatusFailed},
		{tarport.StatusQueued, tarport.StatusFailed},
	}
	for i, st := range steps {
		if err := s.SetStatus(ctx, "a", st.to, nil); err != nil {
			t.Fatalf("step %d SetStatus(%s): %v", i, st.to, err)
		}
		if got := mustGet(t, s, "a"); got.Status != st.want {
			t.Fatalf("step %d SetStatus(%s): status %s, want %s", i, st.to, got.Status, st.want)
		}
	}
}

// missingJob: every operation on a job that is not there says so.
func missingJob(t *testing.T, open fresh) {
	s, _ := open(t)
	ctx := context.Background()
	mustCreate(t, s, Job("j", "k", 10))
	for _, id := range []string{"nope", "", strings.Repeat("j", 4096)} {
		checks := map[string]error{
			"SetStatus":         s.SetStatus(ctx, id, tarport.StatusFetching, nil),
			"SetStatus(failed)": s.SetStatus(ctx, id, tarport.StatusFailed, &tarport.JobError{Code: tarport.CodeInternal, Message: "x"}),
			"AddProgress":       s.AddProgress(ctx, id, 0, 1),
			"AddProgress(-1)":   s.AddProgress(ctx, id, -1, 1),
		}
		_, _, checks["FinishLayer"] = s.FinishLayer(ctx, id, 0)
		_, _, checks["FinishLayer(-1)"] = s.FinishLayer(ctx, id, -1)
		_, _, checks["FinishPart"] = s.FinishPart(ctx, id, 0, 1)
		_, _, checks["FinishPart(-1, 0)"] = s.FinishPart(ctx, id, -1, 0)
		_, _, checks["FinishPart(0, 0)"] = s.FinishPart(ctx, id, 0, 0)
		for op, err := range checks {
			if code := tarport.ErrorCode(err); code != tarport.CodeNotFound {
				t.Errorf("%s(%.20q) err = %v (code %s), want not_found", op, id, err, code)
			}
		}
		mustMiss(t, s, id) // and nothing was made up
	}
}

type add struct {
	layer int
	delta int64
}

func addProgress(t *testing.T, open fresh) {
	tests := []struct {
		name   string
		finish bool // finish layer 1 first
		adds   []add
		want   []int64 // done bytes of layers 0 and 1 (sizes 100, 50)
	}{
		{name: "within size", adds: []add{{0, 40}, {0, 20}, {1, 5}}, want: []int64{60, 5}},
		{name: "up to size exactly", adds: []add{{0, 60}, {0, 40}, {1, 50}}, want: []int64{100, 50}},
		{name: "clamped to size", adds: []add{{0, 90}, {0, 90}}, want: []int64{100, 0}},
		{name: "clamped to size then taken back", adds: []add{{0, 90}, {0, 90}, {0, -30}}, want: []int64{70, 0}},
		{name: "one huge delta", adds: []add{{1, 1 << 40}}, want: []int64{0, 50}},
		{name: "negative delta undoes a retry", adds: []add{{0, 70}, {0, -30}}, want: []int64{40, 0}},
		{name: "clamped to zero", adds: []add{{0, 10}, {0, -50}}, want: []int64{0, 0}},
		{name: "clamped to zero then counted again", adds: []add{{0, 10}, {0, -50}, {0, 20}}, want: []int64{20, 0}},
		{name: "one huge negative delta", adds: []add{{0, 10}, {0, -1 << 40}}, want: []int64{0, 0}},
		{name: "zero delta", adds: []add{{0, 0}}, want: []int64{0, 0}},
		{name: "layer out of range ignored", adds: []add{{-1, 10}, {2, 10}, {99, 10}}, want: []int64{0, 0}},
		{name: "finished layer ignored", finish: true, adds: []add{{1, -20}, {1, 10}}, want: []int64{0, 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, _ := open(t)
			mustCreate(t, s, Job("j", "k", 100, 50))
			if tt.finish {
				if _, _, err := s.FinishLayer(ctx, "j", 1); err != nil {
					t.Fatal(err)
				}
			}
			for _, a := range tt.adds {
				if err := s.AddProgress(ctx, "j", a.layer, a.delta); err != nil {
					t.Fatalf("AddProgress(%d, %d): %v", a.layer, a.delta, err)
				}
			}
			got := mustGet(t, s, "j")
			for i, w := range tt.want {
				if got.Layers[i].DoneBytes != w {
					t.Errorf("layer %d done bytes = %d, want %d", i, got.Layers[i].DoneBytes, w)
				}
			}
			if d := got.DoneBytes(); d != tt.want[0]+tt.want[1] {
				t.Errorf("job done bytes = %d, want %d", d, tt.want[0]+tt.want[1])
			}
			wantRemaining := 2
			if tt.finish {
				wantRemaining = 1
			}
			if got.Layers[0].Finished || got.Layers[1].Finished != tt.finish || got.Remaining != wantRemaining {
				t.Errorf("AddProgress moved the finish state: %+v remaining %d", got.Layers, got.Remaining)
			}
		})
	}
}

// addProgressConcurrent: concurrent adds are all counted, and the clamp
// holds under contention.
func addProgressConcurrent(t *testing.T, open fresh) {
	s, _ := open(t)
	ctx := context.Background()
	mustCreate(t, s, Job("j", "k", 1000, 100))
	const n = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			if err := s.AddProgress(ctx, "j", 0, 7); err != nil {
				t.Errorf("AddProgress: %v", err)
			}
			if err := s.AddProgress(ctx, "j", 1, 3); err != nil {
				t.Errorf("AddProgress: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	got := mustGet(t, s, "j")
	if got.Layers[0].DoneBytes != 7*n || got.Layers[1].DoneBytes != 100 {
		t.Fatalf("done bytes after %d concurrent adds = %d, %d; want %d, 100", n, got.Layers[0].DoneBytes, got.Layers[1].DoneBytes, 7*n)
	}
	// Taking back more than is there stops at zero, however it interleaves.
	for range n {
		wg.Go(func() {
			if err := s.AddProgress(ctx, "j", 1, -3); err != nil {
				t.Errorf("AddProgress: %v", err)
			}
		})
	}
	wg.Wait()
	if got := mustGet(t, s, "j"); got.Layers[1].DoneBytes != 0 {
		t.Fatalf("done bytes after taking back %d = %d, want 0", 3*n, got.Layers[1].DoneBytes)
	}
}

func finishLayerSequential(t *testing.T, open fresh) {
	s, clk := open(t)
	ctx := context.Background()
	mustCreate(t, s, Job("j", "k", 10, 20, 30))
	if err := s.AddProgress(ctx, "j", 2, 7); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		layer         int
		wantRemaining int
		wantFirst     bool
	}{
		{layer: 2, wantRemaining: 2, wantFirst: true},
		{layer: 2, wantRemaining: 2, wantFirst: false}, // a redelivered task
		{layer: -1, wantRemaining: 2, wantFirst: false},
		{layer: 3, wantRemaining: 2, wantFirst: false},
		{layer: 0, wantRemaining: 1, wantFirst: true},
		{layer: 1, wantRemaining: 0, wantFirst: true},
		{layer: 1, wantRemaining: 0, wantFirst: false},
		{layer: 0, wantRemaining: 0, wantFirst: false},
	}
	for i, st := range steps {
		clk.Advance(time.Second)
		rem, first, err := s.FinishLayer(ctx, "j", st.layer)
		if err != nil || rem != st.wantRemaining || first != st.wantFirst {
			t.Fatalf("step %d FinishLayer(%d) = (%d, %v, %v), want (%d, %v, nil)", i, st.layer, rem, first, err, st.wantRemaining, st.wantFirst)
		}
		got := mustGet(t, s, "j")
		if st.wantFirst && !got.UpdatedAt.Equal(clk.Now()) {
			t.Errorf("step %d: UpdatedAt = %s after a change at %s", i, got.UpdatedAt, clk.Now())
		}
		// A stitch's lease runs from UpdatedAt: a redelivered task that
		// changes nothing must not renew it.
		if !st.wantFirst && got.UpdatedAt.Equal(clk.Now()) {
			t.Errorf("step %d: FinishLayer(%d) changed nothing but moved UpdatedAt to %s", i, st.layer, got.UpdatedAt)
		}
	}
	got := mustGet(t, s, "j")
	for i, l := range got.Layers {
		if !l.Finished || l.DoneBytes != l.Size {
			t.Errorf("layer %d = %+v, want finished with done bytes = size", i, l)
		}
	}
	if got.Remaining != 0 || got.DoneBytes() != got.TotalBytes {
		t.Errorf("job after all layers: remaining %d, done %d of %d", got.Remaining, got.DoneBytes(), got.TotalBytes)
	}
}

// finishLayerConcurrentSameLayer: a layer redelivered to many workers at
// once is counted once.
func finishLayerConcurrentSameLayer(t *testing.T, open fresh) {
	s, _ := open(t)
	ctx := context.Background()
	mustCreate(t, s, Job("j", "k", 10, 20, 30))
	const n = 50
	var firsts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			rem, first, err := s.FinishLayer(ctx, "j", 1)
			if err != nil {
				t.Errorf("FinishLayer: %v", err)
				return
			}
			if rem != 2 {
				t.Errorf("remaining = %d, want 2", rem)
			}
			if first {
				firsts.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := firsts.Load(); got != 1 {
		t.Fatalf("%d of %d concurrent FinishLayer calls reported first, want 1", got, n)
	}
	got := mustGet(t, s, "j")
	if got.Remaining != 2 || !got.Layers[1].Finished || got.Layers[1].DoneBytes != 20 {
		t.Fatalf("after the race: remaining %d, layer 1 %+v; want 2 and finished", got.Remaining, got.Layers[1])
	}
	if got.Layers[0].Finished || got.Layers[2].Finished {
		t.Fatalf("other layers finished: %+v", got.Layers)
	}
}

// finishLayerStitchesExactlyOnce races every layer's (redelivered) tasks,
// with progress writes in between: exactly one call sees remaining == 0
// as the first finisher of its layer, and that is the one that stitches.
func finishLayerStitchesExactlyOnce(t *testing.T, open fresh) {
	tests := []struct {
		layers, callsPerLayer int
	}{
		{layers: 1, callsPerLayer: 50},
		{layers: 5, callsPerLayer: 10},
		{layers: 25, callsPerLayer: 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d layers x %d", tt.layers, tt.callsPerLayer), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s, _ := open(t)
			sizes := make([]int64, tt.layers)
			for i := range sizes {
				sizes[i] = int64(i + 1)
			}
			mustCreate(t, s, Job("j", "k", sizes...))
			var (
				mu        sync.Mutex
				stitchers int
				firsts    = make([]int, tt.layers)
				remSeen   []int
			)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for l := range tt.layers {
				for range tt.callsPerLayer {
					wg.Go(func() {
						<-start
						if err := s.AddProgress(ctx, "j", l, 1); err != nil {
							t.Errorf("AddProgress(%d): %v", l, err)
						}
						rem, first, err := s.FinishLayer(ctx, "j", l)
						if err != nil {
							t.Errorf("FinishLayer(%d): %v", l, err)
							return
						}
						mu.Lock()
						defer mu.Unlock()
						if first {
							firsts[l]++
							remSeen = append(remSeen, rem)
						}
						if rem == 0 && first {
							stitchers++
						}
					})
				}
			}
			close(start)
			wg.Wait()
			if stitchers != 1 {
				t.Fatalf("%d calls saw remaining==0 && first, want exactly 1", stitchers)
			}
			for l, n := range firsts {
				if n != 1 {
					t.Errorf("layer %d: %d first finishers, want 1", l, n)
				}
			}
			// The first finishers saw every count from layers-1 down to 0 once.
			slices.Sort(remSeen)
			for i, r := range remSeen {
				if r != i {
					t.Fatalf("remaining counts seen by first finishers = %v, want 0..%d", remSeen, tt.layers-1)
				}
			}
			got := mustGet(t, s, "j")
			if got.Remaining != 0 || got.DoneBytes() != got.TotalBytes {
				t.Fatalf("job after all layers: remaining %d, done %d of %d", got.Remaining, got.DoneBytes(), got.TotalBytes)
			}
		})
	}
}

// SplitJob builds Job(id, key, sizes...) with layer i split into parts[i]
// range tasks (0: fetched whole).
func SplitJob(id, key string, sizes []int64, parts []int) tarport.Job {
	j := Job(id, key, sizes...)
	for i, p := range parts {
		j.Layers[i].Parts = p
	}
	return j
}

type partStep struct {
	layer, part   int
	wantRemaining int
	wantFirst     bool
}

// runPartSteps calls FinishPart for each step, a second apart, and checks
// its answer and that only a first call moves UpdatedAt.
func runPartSteps(t *testing.T, s Store, clk *Clock, id string, steps []partStep) {
	t.Helper()
	ctx := context.Background()
	for i, st := range steps {
		before := mustGet(t, s, id).UpdatedAt
		clk.Advance(time.Second)
		rem, first, err := s.FinishPart(ctx, id, st.layer, st.part)
		if err != nil || rem != st.wantRemaining || first != st.wantFirst {
			t.Fatalf("step %d FinishPart(%d, %d) = (%d, %v, %v), want (%d, %v, nil)", i, st.layer, st.part, rem, first, err, st.wantRemaining, st.wantFirst)
		}
		want := before
		if st.wantFirst {
			want = clk.Now()
		}
		if got := mustGet(t, s, id).UpdatedAt; !got.Equal(want) {
			t.Errorf("step %d FinishPart(%d, %d): UpdatedAt = %s, want %s", i, st.layer, st.part, got, want)
		}
	}
}

// finishPartSequential counts a split layer's parts down in any order to
// 0, other layers apart, and leaves the layer's finish and the job's
// remaining count to FinishLayer; other writes in between keep the
// finished parts.
func finishPartSequential(t *testing.T, open fresh) {
	s, clk := open(t)
	ctx := context.Background()
	want := SplitJob("j", "k", []int64{10, 20 << 30, 30, 40 << 30}, []int{0, 4, 0, 3})
	mustCreate(t, s, want)
	runPartSteps(t, s, clk, "j", []partStep{
		{layer: 1, part: 3, wantRemaining: 3, wantFirst: true},
		{layer: 3, part: 3, wantRemaining: 2, wantFirst: true}, // the last part first
		{layer: 1, part: 1, wantRemaining: 2, wantFirst: true},
	})
	// Other writes keep the finished parts.
	if err := s.AddProgress(ctx, "j", 1, 5<<30); err != nil {
		t.Fatal(err)
	}
	if err := s.SetStatus(ctx, "j", tarport.StatusFetching, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.FinishLayer(ctx, "j", 0); err != nil {
		t.Fatal(err)
	}
	runPartSteps(t, s, clk, "j", []partStep{
		{layer: 1, part: 3, wantRemaining: 2, wantFirst: false},
		{layer: 1, part: 4, wantRemaining: 1, wantFirst: true},
		{layer: 3, part: 1, wantRemaining: 1, wantFirst: true},
		{layer: 1, part: 2, wantRemaining: 0, wantFirst: true},
		{layer: 1, part: 2, wantRemaining: 0, wantFirst: false},
		{layer: 3, part: 2, wantRemaining: 0, wantFirst: true},
	})
	got := mustGet(t, s, "j")
	want.Status, want.UpdatedAt = tarport.StatusFetching, got.UpdatedAt
	want.Layers[0].Finished, want.Layers[0].DoneBytes = true, 10
	want.Layers[1].DoneBytes = 5 << 30
	want.Remaining = 3
	if !Equal(got, want) {
		t.Fatalf("FinishPart changed more than the parts:\n got %+v\nwant %+v", got, want)
	}
	// The split layer is finished as any other, once.
	for i, wantRem := range []int{2, 1} {
		layer := []int{1, 3}[i]
		if rem, first, err := s.FinishLayer(ctx, "j", layer); err != nil || !first || rem != wantRem {
			t.Fatalf("FinishLayer(%d) = (%d, %v, %v), want (%d, true, nil)", layer, rem, first, err, wantRem)
		}
	}
	if rem, first, err := s.FinishPart(ctx, "j", 1, 4); err != nil || first || rem != 0 {
		t.Fatalf("FinishPart of a finished layer = (%d, %v, %v), want (0, false, nil)", rem, first, err)
	}
}

// finishPartRedelivered: a part's task delivered again, before or after
// the layer's other parts, is never counted twice, and a one-part layer
// counts like any other.
func finishPartRedelivered(t *testing.T, open fresh) {
	s, clk := open(t)
	mustCreate(t, s, SplitJob("j", "k", []int64{30 << 20, 1 << 20}, []int{3, 1}))
	runPartSteps(t, s, clk, "j", []partStep{
		{layer: 0, part: 2, wantRemaining: 2, wantFirst: true},
		{layer: 0, part: 2, wantRemaining: 2, wantFirst: false},
		{layer: 0, part: 2, wantRemaining: 2, wantFirst: false},
		{layer: 0, part: 1, wantRemaining: 1, wantFirst: true},
		{layer: 0, part: 2, wantRemaining: 1, wantFirst: false},
		{layer: 0, part: 1, wantRemaining: 1, wantFirst: false},
		{layer: 0, part: 3, wantRemaining: 0, wantFirst: true},
		{layer: 0, part: 3, wantRemaining: 0, wantFirst: false},
		{layer: 0, part: 1, wantRemaining: 0, wantFirst: false},
		{layer: 1, part: 1, wantRemaining: 0, wantFirst: true},
		{layer: 1, part: 1, wantRemaining: 0, wantFirst: false},
	})
}

// finishPartConcurrentSamePart: a part redelivered to many workers at
// once is counted once.
func finishPartConcurrentSamePart(t *testing.T, open fresh) {
	s, _ := open(t)
	ctx := context.Background()
	mustCreate(t, s, SplitJob("j", "k", []int64{10, 50 << 20}, []int{0, 5}))
	const n = 50
	var firsts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			rem, first, err := s.FinishPart(ctx, "j", 1, 2)
			if err != nil {
				t.Errorf("FinishPart: %v", err)
				return
			}
			if rem != 4 {
				t.Errorf("remaining = %d, want 4", rem)
			}
			if first {
				firsts.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := firsts.Load(); got != 1 {
		t.Fatalf("%d of %d concurrent FinishPart calls reported first, want 1", got, n)
	}
	if rem, first, err := s.FinishPart(ctx, "j", 1, 1); err != nil || !first || rem != 3 {
		t.Fatalf("FinishPart of another part after the race = (%d, %v, %v), want (3, true, nil)", rem, first, err)
	}
}

// finishPartEachLayerOnce races every part's (redelivered) tasks of three
// split layers and the tasks of two whole layers, as workers run them:
// for each split layer exactly one call sees first && remaining == 0 and
// goes on to FinishLayer; exactly one FinishLayer then stitches.
func finishPartEachLayerOnce(t *testing.T, open fresh) {
	ctx := context.Background()
	s, _ := open(t)
	parts := []int{7, 0, 16, 30, 0}
	sizes := []int64{70 << 20, 1, 160 << 20, 300 << 20, 2}
	mustCreate(t, s, SplitJob("j", "k", sizes, parts))
	const deliveries = 3
	var (
		mu        sync.Mutex
		lastParts = make([]int, len(parts)) // calls that saw first && remaining == 0
		remSeen   = make([][]int, len(parts))
		stitchers int
	)
	finishLayer := func(layer int) {
		rem, first, err := s.FinishLayer(ctx, "j", layer)
		if err != nil {
			t.Errorf("FinishLayer(%d): %v", layer, err)
			return
		}
		if first && rem == 0 {
			mu.Lock()
			stitchers++
			mu.Unlock()
		}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for layer, p := range parts {
		if p == 0 {
			for range deliveries {
				wg.Go(func() { <-start; finishLayer(layer) })
			}
			continue
		}
		for part := 1; part <= p; part++ {
			for range deliveries {
				wg.Go(func() {
					<-start
					rem, first, err := s.FinishPart(ctx, "j", layer, part)
					if err != nil {
						t.Errorf("FinishPart(%d, %d): %v", layer, part, err)
						return
					}
					if !first {
						return
					}
					mu.Lock()
					remSeen[layer] = append(remSeen[layer], rem)
					if rem == 0 {
						lastParts[layer]++
					}
					mu.Unlock()
					if rem == 0 { // the split layer is all in: verify it, then finish it
						finishLayer(layer)
					}
				})
			}
		}
	}
	close(start)
	wg.Wait()
	for layer, p := range parts {
		if p == 0 {
			continue
		}
		if lastParts[layer] != 1 {
			t.Errorf("layer %d: %d calls saw first && remaining == 0, want 1", layer, lastParts[layer])
		}
		// Its first finishers saw every count from p-1 down to 0 once.
		seen := slices.Sorted(slices.Values(remSeen[layer]))
		if len(seen) != p || seen[0] != 0 || seen[p-1] != p-1 || len(slices.Compact(seen)) != p {
			t.Errorf("layer %d: first finishers saw remaining %v, want 0..%d once each", layer, remSeen[layer], p-1)
		}
	}
	if stitchers != 1 {
		t.Fatalf("%d FinishLayer calls saw remaining==0 && first, want exactly 1", stitchers)
	}
	got := mustGet(t, s, "j")
	if got.Remaining != 0 || got.DoneBytes() != got.TotalBytes {
		t.Fatalf("job after all layers: remaining %d, done %d of %d", got.Remaining, got.DoneBytes(), got.TotalBytes)
	}
	for i, l := range got.Layers {
		if l.Parts != parts[i] {
			t.Errorf("layer %d parts = %d, want %d", i, l.Parts, parts[i])
		}
	}
}

// finishPartErrors: a layer that is not split, or a layer or part out of
// range, is the caller's bug: an error that is not not_found (the job is
// there), and nothing changes.
func finishPartErrors(t *testing.T, open fresh) {
	s, clk := open(t)
	ctx := context.Background()
	mustCreate(t, s, SplitJob("j", "k", []int64{10, 40 << 20}, []int{0, 4}))
	if _, _, err := s.FinishPart(ctx, "j", 1, 2); err != nil {
		t.Fatal(err)
	}
	before := mustGet(t, s, "j")
	clk.Advance(time.Minute)
	for _, c := range []struct {
		name        string
		layer, part int
	}{
		{"unsplit layer", 0, 1},
		{"negative layer", -1, 1},
		{"layer past the end", 2, 1},
		{"layer far past the end", 999, 1},
		{"part 0", 1, 0},
		{"negative part", 1, -1},
		{"part past the end", 1, 5},
		{"part far past the end", 1, 10_001},
		{"both out of range", -1, 0},
	} {
		rem, first, err := s.FinishPart(ctx, "j", c.layer, c.part)
		if err == nil || first || tarport.ErrorCode(err) == tarport.CodeNotFound {
			t.Errorf("%s: FinishPart(%d, %d) = (%d, %v, %v), want an error that is not not_found", c.name, c.layer, c.part, rem, first, err)
		}
	}
	if got := mustGet(t, s, "j"); !Equal(got, before) {
		t.Fatalf("failed FinishPart calls changed the job:\n got %+v\nwant %+v", got, before)
	}
	if rem, first, err := s.FinishPart(ctx, "j", 1, 2); err != nil || first || rem != 3 {
		t.Fatalf("FinishPart(1, 2) after the errors = (%d, %v, %v), want (3, false, nil)", rem, first, err)
	}
}

// finishPartExpiredJob: an expired job is gone to FinishPart too, even
// while the store still holds it.
func finishPartExpiredJob(t *testing.T, open fresh) {
	s, clk := open(t)
	ctx := context.Background()
	jb := SplitJob("j", "k", []int64{30 << 20}, []int{3})
	mustCreate(t, s, jb)
	if _, _, err := s.FinishPart(ctx, "j", 0, 1); err != nil {
		t.Fatal(err)
	}
	clk.Set(jb.ExpiresAt.Add(-time.Nanosecond))
	if rem, first, err := s.FinishPart(ctx, "j", 0, 2); err != nil || !first || rem != 1 {
		t.Fatalf("FinishPart just before expiry = (%d, %v, %v), want (1, true, nil)", rem, first, err)
	}
	clk.Set(jb.ExpiresAt)
	for _, p := range []struct{ layer, part int }{{0, 3}, {0, 1}, {1, 1}, {0, 4}, {-1, 0}} {
		if _, _, err := s.FinishPart(ctx, "j", p.layer, p.part); tarport.ErrorCode(err) != tarport.CodeNotFound {
			t.Errorf("FinishPart(%d, %d) of an expired job: %v, want not_found", p.layer, p.part, err)
		}
	}
}

// finishPartTerminalJob: a finished or failed job counts parts as any
// other (a late task of a failed job is harmless).
func finishPartTerminalJob(t *testing.T, open fresh) {
	for _, st := range []tarport.Status{tarport.StatusReady, tarport.StatusFailed} {
		t.Run(string(st), func(t *testing.T) {
			t.Parallel()
			s, clk := open(t)
			jb := SplitJob("j", "k", []int64{20 << 20}, []int{2})
			jb.Status = st
			if st == tarport.StatusFailed {
				jb.Error = &tarport.JobError{Code: tarport.CodeUpstream, Message: "x"}
			}
			mustCreate(t, s, jb)
			runPartSteps(t, s, clk, "j", []partStep{
				{layer: 0, part: 2, wantRemaining: 1, wantFirst: true},
				{layer: 0, part: 2, wantRemaining: 1, wantFirst: false},
				{layer: 0, part: 1, wantRemaining: 0, wantFirst: true},
			})
			if got := mustGet(t, s, "j"); got.Status != st || !reflect.DeepEqual(got.Error, jb.Error) {
				t.Fatalf("FinishPart moved a %s job: %s %+v", st, got.Status, got.Error)
			}
		})
	}
}

// lease is job's lease on a split layer, with upload up, for an hour.
func lease(job, up string) tarport.SplitLease {
	return tarport.SplitLease{Job: job, Upload: up, Until: T0.Add(time.Hour)}
}

func mustLease(t *testing.T, s Store, key string, l tarport.SplitLease, prev string, want tarport.SplitLease) {
	t.Helper()
	got, err := s.LeaseSplit(context.Background(), key, l, prev)
	if err != nil {
		t.Fatalf("LeaseSplit(%s, %+v, prev %q): %v", key, l, prev, err)
	}
	if got.Job != want.Job || got.Upload != want.Upload || !got.Until.Equal(want.Until) {
		t.Fatalf("LeaseSplit(%s, %+v, prev %q) = %+v, want %+v", key, l, prev, got, want)
	}
}

// leaseSplitHeld: the first job takes a free lease; another job, and the
// holder itself asking again with another upload (a redelivery), get the
// lease as held; another key is a lease of its own.
func leaseSplitHeld(t *testing.T, open fresh) {
	s, _ := open(t)
	a := lease("job-a", "up-a")
	mustLease(t, s, "k", a, "", a)
	mustLease(t, s, "k", lease("job-b", "up-b"), "", a)
	mustLease(t, s, "k", lease("job-a", "up-a2"), "", a)
	// prev names a job that does not hold it: no takeover.
	mustLease(t, s, "k", lease("job-b", "up-b"), "job-c", a)
	b := lease("job-b", "up-b")
	mustLease(t, s, "other", b, "", b)
}

// leaseSplitTakeover: a job that saw the holder end takes the lease over,
// once: a second waiter naming the same ended holder gets the new one.
func leaseSplitTakeover(t *testing.T, open fresh) {
	s, _ := open(t)
	a, b := lease("job-a", "up-a"), lease("job-b", "up-b")
	mustLease(t, s, "k", a, "", a)
	mustLease(t, s, "k", b, "job-a", b)
	mustLease(t, s, "k", lease("job-c", "up-c"), "job-a", b)
}

// leaseSplitLapsed: a lease past its end yields to anyone.
func leaseSplitLapsed(t *testing.T, open fresh) {
	s, clk := open(t)
	a := lease("job-a", "up-a")
	mustLease(t, s, "k", a, "", a)
	clk.Advance(time.Hour - time.Second)
	mustLease(t, s, "k", lease("job-b", "up-b"), "", a)
	clk.Advance(time.Second)
	b := tarport.SplitLease{Job: "job-b", Upload: "up-b", Until: T0.Add(3 * time.Hour)}
	mustLease(t, s, "k", b, "", b)
}

// leaseSplitConcurrent: jobs racing for a free lease all see one holder,
// and it is one of them.
func leaseSplitConcurrent(t *testing.T, open fresh) {
	s, _ := open(t)
	const n = 20
	got := make([]tarport.SplitLease, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			l, err := s.LeaseSplit(context.Background(), "k", lease(fmt.Sprintf("job-%d", i), fmt.Sprintf("up-%d", i)), "")
			if err != nil {
				t.Errorf("LeaseSplit: %v", err)
			}
			got[i] = l
		})
	}
	close(start)
	wg.Wait()
	if !strings.HasPrefix(got[0].Job, "job-") || got[0].Upload != "up-"+strings.TrimPrefix(got[0].Job, "job-") {
		t.Fatalf("lease %+v is none of the racers'", got[0])
	}
	for i, l := range got {
		if l.Job != got[0].Job || l.Upload != got[0].Upload || !l.Until.Equal(got[0].Until) {
			t.Fatalf("racer %d sees %+v, racer 0 %+v", i, l, got[0])
		}
	}
}
