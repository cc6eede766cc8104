package boltdb

import (
	"context"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/download/jobstest"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/fakeclock"
)

// TestJobsContract: the behaviour every job store shares.
func TestJobsContract(t *testing.T) {
	t.Parallel()
	jobstest.Run(t, func(t *testing.T, now func() time.Time) jobstest.Store {
		j, err := Open(filepath.Join(t.TempDir(), "jobs.db"))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { j.Close() })
		j.now = now
		return j
	})
}

// t0 is the fake "now" the bbolt-only tests (and the cache's) start at.
var t0 = jobstest.T0

func newClock() *fakeclock.Clock { return fakeclock.At(t0) }

// openJobs opens a fresh store in a temporary directory with a fake clock.
func openJobs(t *testing.T) (*Jobs, *fakeclock.Clock, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jobs.db")
	j, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c := newClock()
	j.now = c.Now
	t.Cleanup(func() { j.Close() })
	return j, c, path
}

// job builds a queued job with one layer per size, expiring an hour after
// t0 plus the join margin (so it is shared until t0+1h).
func job(id, key string, sizes ...int64) tarport.Job {
	j := jobstest.Job(id, key, sizes...)
	j.ExpiresAt = t0.Add(time.Hour + tarport.JoinMargin)
	return j
}

func mustCreate(t *testing.T, j *Jobs, jb tarport.Job) {
	t.Helper()
	if _, created, err := j.Create(context.Background(), jb); err != nil || !created {
		t.Fatalf("Create(%s) = created %v, err %v; want a new job", jb.ID, created, err)
	}
}

func mustGet(t *testing.T, j *Jobs, id string) tarport.Job {
	t.Helper()
	got, err := j.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return got
}

// seedJobs stores a job per status and one expired job, for the listings.
func seedJobs(t *testing.T, j *Jobs) {
	t.Helper()
	for _, s := range []struct {
		id     string
		status tarport.Status
		ttl    time.Duration
	}{
		{"queued", tarport.StatusQueued, time.Hour},
		{"fetching", tarport.StatusFetching, time.Hour},
		{"assembling", tarport.StatusAssembling, time.Hour},
		{"ready", tarport.StatusReady, time.Hour},
		{"failed", tarport.StatusFailed, time.Hour},
		{"queued-expired", tarport.StatusQueued, time.Minute},
		{"ready-expired", tarport.StatusReady, time.Minute},
	} {
		jb := job(s.id, "key-"+s.id, 1)
		jb.Status = s.status
		jb.ExpiresAt = t0.Add(s.ttl)
		mustCreate(t, j, jb)
	}
}

func ids(jobs []tarport.Job) []string {
	out := []string{}
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	slices.Sort(out)
	return out
}

func TestUnfinishedAndExpired(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		at             time.Time
		wantUnfinished []string
		wantExpired    []string
	}{
		{
			name:           "all live",
			at:             t0,
			wantUnfinished: []string{"assembling", "fetching", "queued", "queued-expired"},
			wantExpired:    []string{},
		},
		{
			name:           "short ones expired",
			at:             t0.Add(2 * time.Minute),
			wantUnfinished: []string{"assembling", "fetching", "queued"},
			wantExpired:    []string{"queued-expired", "ready-expired"},
		},
		{
			name:           "everything expired",
			at:             t0.Add(2 * time.Hour),
			wantUnfinished: []string{},
			wantExpired:    []string{"assembling", "failed", "fetching", "queued", "queued-expired", "ready", "ready-expired"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			j, c, _ := openJobs(t)
			seedJobs(t, j)
			c.Set(tt.at)
			un, err := j.Unfinished(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(un); !slices.Equal(got, tt.wantUnfinished) {
				t.Errorf("Unfinished = %v, want %v", got, tt.wantUnfinished)
			}
			ex, err := j.Expired(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(ex); !slices.Equal(got, tt.wantExpired) {
				t.Errorf("Expired = %v, want %v", got, tt.wantExpired)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	j, c, _ := openJobs(t)
	old := job("old", "k", 1)
	mustCreate(t, j, old)
	c.Advance(time.Hour + tarport.JoinMargin) // old expires; a new job takes the key
	fresh := job("new", "k", 1)
	fresh.ExpiresAt = c.Now().Add(time.Hour + tarport.JoinMargin)
	mustCreate(t, j, fresh)

	// The collector deletes the expired job: the key stays with the new one.
	if err := j.Delete(ctx, old); err != nil {
		t.Fatalf("Delete(old): %v", err)
	}
	ex, err := j.Expired(ctx)
	if err != nil || len(ex) != 0 {
		t.Fatalf("Expired after deleting the only expired job = %v, %v; want none", ids(ex), err)
	}
	again := job("again", "k", 1)
	again.ExpiresAt = c.Now().Add(time.Hour + tarport.JoinMargin)
	live, created, err := j.Create(ctx, again)
	if err != nil || created || live.ID != "new" {
		t.Fatalf("Create after deleting the old job = (%q, %v, %v), want the new job shared", live.ID, created, err)
	}

	// Deleting the owner frees the key.
	if err := j.Delete(ctx, fresh); err != nil {
		t.Fatalf("Delete(new): %v", err)
	}
	if _, err := j.Get(ctx, "new"); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Fatalf("Get(new) after Delete: %v, want not_found", err)
	}
	live, created, err = j.Create(ctx, again)
	if err != nil || !created || live.ID != "again" {
		t.Fatalf("Create after deleting the owner = (%q, %v, %v), want a new job", live.ID, created, err)
	}
	// Deleting what is not there is not an error.
	if err := j.Delete(ctx, job("ghost", "ghost-key")); err != nil {
		t.Fatalf("Delete(missing): %v", err)
	}
}

func TestSurvivesReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	j, c, path := openJobs(t)
	want := job("j", "k", 100, 200)
	want.Layers[1].Parts = 3
	mustCreate(t, j, want)
	c.Advance(time.Minute)
	if err := j.SetStatus(ctx, "j", tarport.StatusFetching, nil); err != nil {
		t.Fatal(err)
	}
	if err := j.AddProgress(ctx, "j", 1, 150); err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.FinishLayer(ctx, "j", 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.FinishPart(ctx, "j", 1, 2); err != nil {
		t.Fatal(err)
	}
	before := mustGet(t, j, "j")
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	j2, err := Open(path)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	t.Cleanup(func() { j2.Close() })
	j2.now = c.Now
	after := mustGet(t, j2, "j")
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("job after reopen:\n got %+v\nwant %+v", after, before)
	}
	if after.Status != tarport.StatusFetching || after.Remaining != 1 || after.Layers[1].DoneBytes != 150 {
		t.Fatalf("job after reopen lost updates: %+v", after)
	}
	if rem, first, err := j2.FinishPart(ctx, "j", 1, 2); err != nil || first || rem != 2 {
		t.Fatalf("FinishPart of a part finished before reopening = (%d, %v, %v), want (2, false, nil)", rem, first, err)
	}
	if rem, first, err := j2.FinishPart(ctx, "j", 1, 3); err != nil || !first || rem != 1 {
		t.Fatalf("FinishPart after reopen = (%d, %v, %v), want (1, true, nil)", rem, first, err)
	}
	un, err := j2.Unfinished(ctx)
	if err != nil || !slices.Equal(ids(un), []string{"j"}) {
		t.Fatalf("Unfinished after reopen = %v, %v; want [j]", ids(un), err)
	}
	live, created, err := j2.Create(ctx, job("other", "k", 1))
	if err != nil || created || live.ID != "j" {
		t.Fatalf("Create after reopen = (%q, %v, %v), want the stored job shared", live.ID, created, err)
	}
}

func TestOpenRefusesUnusablePath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct{ name, path string }{
		{"directory", dir},
		{"missing parent", filepath.Join(dir, "no", "such", "jobs.db")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if j, err := Open(tt.path); err == nil {
				j.Close()
				t.Fatalf("Open(%s) succeeded, want an error", tt.path)
			}
		})
	}
}

func TestPartBitmap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		n       int   // parts
		set     []int // bits set, in order, repeats allowed
		wantLen int
	}{
		{name: "one part", n: 1, set: []int{0}, wantLen: 1},
		{name: "byte boundary", n: 8, set: []int{7, 0, 7}, wantLen: 1},
		{name: "past a byte", n: 9, set: []int{8}, wantLen: 2},
		{name: "most parts S3 allows", n: 10_000, set: []int{9_999, 0, 4_096, 9_999}, wantLen: 1_250},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var b partBitmap
			want := map[int]bool{}
			for _, i := range tt.set {
				b = b.with(i, tt.n)
				want[i] = true
			}
			if len(b) != tt.wantLen || b.count() != len(want) {
				t.Fatalf("bitmap of %d parts with %v set: %d bytes, %d set; want %d bytes, %d set", tt.n, tt.set, len(b), b.count(), tt.wantLen, len(want))
			}
			for i := range tt.n + 16 {
				if b.has(i) != want[i] {
					t.Fatalf("has(%d) = %v, want %v", i, b.has(i), want[i])
				}
			}
		})
	}
}
