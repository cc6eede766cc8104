package boltdb

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarport"
)

// t0 is the fake "now" every test starts at. UTC and without a monotonic
// reading, so times survive the JSON round trip unchanged.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time source safe for concurrent readers.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.set(t0)
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// openJobs opens a fresh store in a temporary directory with a fake clock.
func openJobs(t *testing.T) (*Jobs, *clock, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jobs.db")
	j, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c := newClock()
	j.now = c.now
	j.joinMargin = 0 // the margin has its own test
	t.Cleanup(func() { j.Close() })
	return j, c, path
}

// TestCreateDoesNotJoinAJobAboutToExpire: with under the join margin left,
// a request gets a new job rather than a link that dies in minutes.
func TestCreateDoesNotJoinAJobAboutToExpire(t *testing.T) {
	t.Parallel()
	j, c, _ := openJobs(t)
	j.joinMargin = time.Hour
	old := job("old", "k", 10)
	old.ExpiresAt = c.now().Add(30 * time.Minute)
	if _, created, err := j.Create(context.Background(), old); err != nil || !created {
		t.Fatalf("first Create: %v %v", created, err)
	}
	fresh := job("fresh", "k", 10)
	fresh.ExpiresAt = c.now().Add(24 * time.Hour)
	got, created, err := j.Create(context.Background(), fresh)
	if err != nil || !created || got.ID != "fresh" {
		t.Fatalf("Create next to a job with 30 min left = %s, %v, %v; want the new job", got.ID, created, err)
	}
	if _, err := j.Get(context.Background(), "old"); err != nil {
		t.Fatalf("the old job is still readable until it expires: %v", err)
	}
}

// TestSetStatusNeverMovesBack: a late redelivered task cannot move an
// assembling job back to fetching; failing is always possible.
func TestSetStatusNeverMovesBack(t *testing.T) {
	t.Parallel()
	j, c, _ := openJobs(t)
	a := job("a", "k", 10)
	a.ExpiresAt = c.now().Add(time.Hour)
	if _, _, err := j.Create(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, st := range []tarport.Status{tarport.StatusAssembling, tarport.StatusFetching, tarport.StatusQueued} {
		if err := j.SetStatus(ctx, "a", st, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := j.Get(ctx, "a"); got.Status != tarport.StatusAssembling {
		t.Fatalf("status %s, want assembling", got.Status)
	}
	if err := j.SetStatus(ctx, "a", tarport.StatusFailed, &tarport.JobError{Code: tarport.CodeInternal, Message: "x"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := j.Get(ctx, "a"); got.Status != tarport.StatusFailed {
		t.Fatalf("status %s, want failed", got.Status)
	}
}

// job builds a queued job expiring an hour after t0 with one layer per size.
func job(id, key string, sizes ...int64) tarport.Job {
	j := tarport.Job{
		ID:         id,
		Key:        key,
		Image:      "nginx:1.27",
		Ref:        "docker.io/library/nginx:1.27",
		Platform:   "linux/amd64",
		Digest:     digest.FromString("manifest " + id),
		Status:     tarport.StatusQueued,
		RepoTags:   []string{"nginx:1.27"},
		CreatedAt:  t0,
		UpdatedAt:  t0,
		ExpiresAt:  t0.Add(time.Hour),
		TotalBytes: 0,
	}
	for i, s := range sizes {
		j.Layers = append(j.Layers, tarport.LayerProgress{Digest: digest.FromString(fmt.Sprintf("%s layer %d", id, i)), Size: s})
		j.TotalBytes += s
	}
	j.Remaining = len(sizes)
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

func TestCreateSharesLiveJobByKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// prepare stores the first job and moves it (and the clock) on.
		prepare     func(t *testing.T, j *Jobs, c *clock)
		wantCreated bool // whether the second Create makes a new job
	}{
		{
			name:        "queued job is shared",
			prepare:     func(*testing.T, *Jobs, *clock) {},
			wantCreated: false,
		},
		{
			name: "fetching job is shared",
			prepare: func(t *testing.T, j *Jobs, _ *clock) {
				if err := j.SetStatus(context.Background(), "first", tarport.StatusFetching, nil); err != nil {
					t.Fatal(err)
				}
			},
			wantCreated: false,
		},
		{
			name: "ready job is shared until it expires",
			prepare: func(t *testing.T, j *Jobs, c *clock) {
				if err := j.SetStatus(context.Background(), "first", tarport.StatusReady, nil); err != nil {
					t.Fatal(err)
				}
				c.advance(59 * time.Minute)
			},
			wantCreated: false,
		},
		{
			name: "failed job is replaced",
			prepare: func(t *testing.T, j *Jobs, _ *clock) {
				err := j.SetStatus(context.Background(), "first", tarport.StatusFailed, &tarport.JobError{Code: tarport.CodeUpstream, Message: "boom"})
				if err != nil {
					t.Fatal(err)
				}
			},
			wantCreated: true,
		},
		{
			name:        "expired job is replaced",
			prepare:     func(_ *testing.T, _ *Jobs, c *clock) { c.advance(time.Hour + time.Second) },
			wantCreated: true,
		},
		{
			name:        "job expiring exactly now is replaced",
			prepare:     func(_ *testing.T, _ *Jobs, c *clock) { c.set(t0.Add(time.Hour)) },
			wantCreated: true,
		},
		{
			name: "deleted job's key is free",
			prepare: func(t *testing.T, j *Jobs, _ *clock) {
				if err := j.Delete(context.Background(), job("first", "k")); err != nil {
					t.Fatal(err)
				}
			},
			wantCreated: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			j, c, _ := openJobs(t)
			mustCreate(t, j, job("first", "k", 10))
			tt.prepare(t, j, c)

			second := job("second", "k", 10)
			second.ExpiresAt = c.now().Add(time.Hour)
			live, created, err := j.Create(ctx, second)
			if err != nil {
				t.Fatalf("second Create: %v", err)
			}
			if created != tt.wantCreated {
				t.Fatalf("second Create: created = %v, want %v", created, tt.wantCreated)
			}
			wantID := "first"
			if tt.wantCreated {
				wantID = "second"
			}
			if live.ID != wantID {
				t.Fatalf("second Create returned job %q, want %q", live.ID, wantID)
			}
			// A third request for the key must find whichever job is live now.
			third := job("third", "k", 10)
			third.ExpiresAt = c.now().Add(time.Hour)
			live, created, err = j.Create(ctx, third)
			if err != nil || created || live.ID != wantID {
				t.Fatalf("third Create = (%q, created %v, %v), want (%q, false, nil)", live.ID, created, err, wantID)
			}
			if _, err := j.Get(ctx, "third"); tarport.ErrorCode(err) != tarport.CodeNotFound {
				t.Fatalf("Get(third) after a shared Create: err %v, want not_found (nothing stored)", err)
			}
		})
	}
}

func TestCreateDistinctKeys(t *testing.T) {
	t.Parallel()
	j, _, _ := openJobs(t)
	mustCreate(t, j, job("a", "key-a", 1))
	mustCreate(t, j, job("b", "key-b", 1))
	for _, id := range []string{"a", "b"} {
		mustGet(t, j, id)
	}
}

// TestCreateConcurrentSameKey is the conditional put: of many concurrent
// identical requests exactly one makes the job, and all see that one.
func TestCreateConcurrentSameKey(t *testing.T) {
	t.Parallel()
	j, _, _ := openJobs(t)
	const n = 30
	var wg sync.WaitGroup
	ids := make([]string, n)
	createdCount := atomic.Int32{}
	for i := range n {
		wg.Go(func() {
			live, created, err := j.Create(context.Background(), job(fmt.Sprintf("job-%d", i), "same", 5))
			if err != nil {
				t.Errorf("Create %d: %v", i, err)
				return
			}
			if created {
				createdCount.Add(1)
			}
			ids[i] = live.ID
		})
	}
	wg.Wait()
	if got := createdCount.Load(); got != 1 {
		t.Fatalf("%d Creates reported created=true, want exactly 1", got)
	}
	for i, id := range ids {
		if id != ids[0] {
			t.Fatalf("Create %d returned job %q, Create 0 returned %q: want one shared job", i, id, ids[0])
		}
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		id       string
		clockAt  time.Time
		wantCode tarport.Code // "" for success
	}{
		{name: "live", id: "j", clockAt: t0},
		{name: "one second before expiry", id: "j", clockAt: t0.Add(time.Hour - time.Second)},
		{name: "exactly at expiry", id: "j", clockAt: t0.Add(time.Hour), wantCode: tarport.CodeNotFound},
		{name: "expired", id: "j", clockAt: t0.Add(25 * time.Hour), wantCode: tarport.CodeNotFound},
		{name: "missing", id: "nope", clockAt: t0, wantCode: tarport.CodeNotFound},
		{name: "empty id", id: "", clockAt: t0, wantCode: tarport.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j, c, _ := openJobs(t)
			want := job("j", "k", 100, 200)
			want.IndexDigest = digest.FromString("index")
			want.ConfigDigest = digest.FromString("config")
			want.RefName, want.Name, want.Private = "1.27", "docker.io/library/nginx", true
			want.TarKey, want.FileName = "tars/j.tar", "nginx_1.27.tar"
			mustCreate(t, j, want)
			c.set(tt.clockAt)
			got, err := j.Get(context.Background(), tt.id)
			if tt.wantCode != "" {
				if code := tarport.ErrorCode(err); code != tt.wantCode {
					t.Fatalf("Get(%q) err = %v (code %s), want code %s", tt.id, err, code, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%q): %v", tt.id, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("Get round trip:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestSetStatus(t *testing.T) {
	t.Parallel()
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
		{name: "fetching to assembling", from: tarport.StatusFetching, to: tarport.StatusAssembling, want: tarport.StatusAssembling},
		{name: "assembling to ready", from: tarport.StatusAssembling, to: tarport.StatusReady, want: tarport.StatusReady},
		{name: "fetching to failed", from: tarport.StatusFetching, to: tarport.StatusFailed, toErr: jobErr, want: tarport.StatusFailed, wantErr: jobErr},
		{name: "ready stays ready", from: tarport.StatusReady, to: tarport.StatusFailed, toErr: jobErr, want: tarport.StatusReady},
		{name: "ready is not requeued", from: tarport.StatusReady, to: tarport.StatusFetching, want: tarport.StatusReady},
		{name: "failed stays failed", from: tarport.StatusFailed, fromErr: jobErr, to: tarport.StatusReady, want: tarport.StatusFailed, wantErr: jobErr},
		{name: "failed keeps its first error", from: tarport.StatusFailed, fromErr: jobErr, to: tarport.StatusFailed, toErr: &tarport.JobError{Code: tarport.CodeInternal, Message: "later"}, want: tarport.StatusFailed, wantErr: jobErr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			j, c, _ := openJobs(t)
			jb := job("j", "k", 10)
			jb.Status, jb.Error = tt.from, tt.fromErr
			mustCreate(t, j, jb)
			c.advance(time.Minute)
			if err := j.SetStatus(ctx, "j", tt.to, tt.toErr); err != nil {
				t.Fatalf("SetStatus: %v", err)
			}
			got := mustGet(t, j, "j")
			if got.Status != tt.want || !reflect.DeepEqual(got.Error, tt.wantErr) {
				t.Fatalf("after SetStatus(%s): status %s error %+v, want %s %+v", tt.to, got.Status, got.Error, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSetStatusMissing(t *testing.T) {
	t.Parallel()
	j, _, _ := openJobs(t)
	err := j.SetStatus(context.Background(), "nope", tarport.StatusFetching, nil)
	if code := tarport.ErrorCode(err); code != tarport.CodeNotFound {
		t.Fatalf("SetStatus(missing) err = %v (code %s), want not_found", err, code)
	}
}

func TestAddProgress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		finish bool // finish layer 1 first
		adds   []struct {
			layer int
			delta int64
		}
		want []int64 // done bytes of layers 0 and 1 (sizes 100, 50)
	}{
		{name: "within size", adds: adds(0, 40, 0, 20, 1, 5), want: []int64{60, 5}},
		{name: "clamped to size", adds: adds(0, 90, 0, 90), want: []int64{100, 0}},
		{name: "one huge delta", adds: adds(1, 1<<40), want: []int64{0, 50}},
		{name: "negative delta undoes a retry", adds: adds(0, 70, 0, -30), want: []int64{40, 0}},
		{name: "clamped to zero", adds: adds(0, 10, 0, -50), want: []int64{0, 0}},
		{name: "zero delta", adds: adds(0, 0), want: []int64{0, 0}},
		{name: "layer out of range ignored", adds: adds(-1, 10, 2, 10, 99, 10), want: []int64{0, 0}},
		{name: "finished layer ignored", finish: true, adds: adds(1, -20, 1, 10), want: []int64{0, 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			j, _, _ := openJobs(t)
			mustCreate(t, j, job("j", "k", 100, 50))
			if tt.finish {
				if _, _, err := j.FinishLayer(ctx, "j", 1); err != nil {
					t.Fatal(err)
				}
			}
			for _, a := range tt.adds {
				if err := j.AddProgress(ctx, "j", a.layer, a.delta); err != nil {
					t.Fatalf("AddProgress(%d, %d): %v", a.layer, a.delta, err)
				}
			}
			got := mustGet(t, j, "j")
			for i, w := range tt.want {
				if got.Layers[i].DoneBytes != w {
					t.Errorf("layer %d done bytes = %d, want %d", i, got.Layers[i].DoneBytes, w)
				}
			}
			if d := got.DoneBytes(); d != tt.want[0]+tt.want[1] {
				t.Errorf("job done bytes = %d, want %d", d, tt.want[0]+tt.want[1])
			}
		})
	}
}

func adds(pairs ...int64) []struct {
	layer int
	delta int64
} {
	var out []struct {
		layer int
		delta int64
	}
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, struct {
			layer int
			delta int64
		}{int(pairs[i]), pairs[i+1]})
	}
	return out
}

func TestAddProgressMissing(t *testing.T) {
	t.Parallel()
	j, _, _ := openJobs(t)
	err := j.AddProgress(context.Background(), "nope", 0, 1)
	if code := tarport.ErrorCode(err); code != tarport.CodeNotFound {
		t.Fatalf("AddProgress(missing) err = %v (code %s), want not_found", err, code)
	}
}

func TestFinishLayerSequential(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	j, _, _ := openJobs(t)
	mustCreate(t, j, job("j", "k", 10, 20, 30))
	if err := j.AddProgress(ctx, "j", 2, 7); err != nil {
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
	}
	for i, s := range steps {
		rem, first, err := j.FinishLayer(ctx, "j", s.layer)
		if err != nil || rem != s.wantRemaining || first != s.wantFirst {
			t.Fatalf("step %d FinishLayer(%d) = (%d, %v, %v), want (%d, %v, nil)", i, s.layer, rem, first, err, s.wantRemaining, s.wantFirst)
		}
	}
	got := mustGet(t, j, "j")
	for i, l := range got.Layers {
		if !l.Finished || l.DoneBytes != l.Size {
			t.Errorf("layer %d = %+v, want finished with done bytes = size", i, l)
		}
	}
	if _, _, err := j.FinishLayer(ctx, "nope", 0); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Fatalf("FinishLayer(missing) err = %v, want not_found", err)
	}
}

// TestFinishLayerConcurrentSameLayer: a layer redelivered to many workers
// at once is counted once.
func TestFinishLayerConcurrentSameLayer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	j, _, _ := openJobs(t)
	mustCreate(t, j, job("j", "k", 10, 20, 30))
	const n = 50
	var firsts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Go(func() {
			<-start
			rem, first, err := j.FinishLayer(ctx, "j", 1)
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
	got := mustGet(t, j, "j")
	if got.Remaining != 2 || !got.Layers[1].Finished || got.Layers[1].DoneBytes != 20 {
		t.Fatalf("after the race: remaining %d, layer 1 %+v; want 2 and finished", got.Remaining, got.Layers[1])
	}
	if got.Layers[0].Finished || got.Layers[2].Finished {
		t.Fatalf("other layers finished: %+v", got.Layers)
	}
}

// TestFinishLayerStitchesExactlyOnce races every layer's (redelivered)
// tasks: exactly one call sees remaining == 0 as the first finisher of
// its layer, and that is the one that stitches.
func TestFinishLayerStitchesExactlyOnce(t *testing.T) {
	t.Parallel()
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
			j, _, _ := openJobs(t)
			sizes := make([]int64, tt.layers)
			for i := range sizes {
				sizes[i] = int64(i + 1)
			}
			mustCreate(t, j, job("j", "k", sizes...))
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
						rem, first, err := j.FinishLayer(ctx, "j", l)
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
			got := mustGet(t, j, "j")
			if got.Remaining != 0 || got.DoneBytes() != got.TotalBytes {
				t.Fatalf("job after all layers: remaining %d, done %d of %d", got.Remaining, got.DoneBytes(), got.TotalBytes)
			}
		})
	}
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
			c.set(tt.at)
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
	c.advance(2 * time.Hour) // old expires; a new job takes the key
	fresh := job("new", "k", 1)
	fresh.ExpiresAt = c.now().Add(time.Hour)
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
	again.ExpiresAt = c.now().Add(time.Hour)
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
	mustCreate(t, j, want)
	c.advance(time.Minute)
	if err := j.SetStatus(ctx, "j", tarport.StatusFetching, nil); err != nil {
		t.Fatal(err)
	}
	if err := j.AddProgress(ctx, "j", 1, 150); err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.FinishLayer(ctx, "j", 0); err != nil {
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
	j2.now, j2.joinMargin = c.now, 0
	after := mustGet(t, j2, "j")
	if !reflect.DeepEqual(after, before) {
		t.Fatalf("job after reopen:\n got %+v\nwant %+v", after, before)
	}
	if after.Status != tarport.StatusFetching || after.Remaining != 1 || after.Layers[1].DoneBytes != 150 {
		t.Fatalf("job after reopen lost updates: %+v", after)
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
