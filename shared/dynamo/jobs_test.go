package dynamo

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/download/jobstest"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/dynalite"
)

// newJobs is a job store in a fresh table of db, reading time from now.
func newJobs(t *testing.T, db *dynalite.Server, now func() time.Time) *Jobs {
	t.Helper()
	j := NewJobs(db.Client(), db.CreateTable(t, Schema()))
	j.now = now
	return j
}

// TestJobsContract: the behaviour every job store shares, against a real
// DynamoDB API.
func TestJobsContract(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	jobstest.Run(t, func(t *testing.T, now func() time.Time) jobstest.Store {
		return newJobs(t, db, now)
	})
}

// TestJobsThousandLayers: a job of download.MaxLayers layers fits in one
// item, with room to spare in its largest state (every layer finished),
// and takes updates at both ends of its layer list.
func TestJobsThousandLayers(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	j := newJobs(t, db, jobstest.NewClock().Now)
	ctx := context.Background()
	sizes := make([]int64, download.MaxLayers)
	for i := range sizes {
		sizes[i] = 9<<30 + int64(i)*123_456_789 // over 8 GiB: the longest numbers
	}
	want := jobstest.Job("big", strings.Repeat("k", 64), sizes...)
	want.RepoTags = []string{"registry.example.com/some/long/repository/name:v1.2.3"}
	for i := range want.Layers {
		if len(want.Layers[i].Digest.String()) != 71 {
			t.Fatalf("digest %q is not 71 characters", want.Layers[i].Digest)
		}
		// All but the last finished (a stitch away), the last part way.
		want.Layers[i].DoneBytes, want.Layers[i].Finished = sizes[i], i < len(sizes)-1
	}
	want.Layers[len(sizes)-1].DoneBytes = 0
	want.Remaining = 1
	if _, created, err := j.Create(ctx, want); err != nil || !created {
		t.Fatalf("Create of %d layers: created %v, %v", len(sizes), created, err)
	}
	if got, err := j.Get(ctx, "big"); err != nil || !jobstest.Equal(got, want) {
		t.Fatalf("Get of %d layers: %v (equal %v)", len(sizes), err, jobstest.Equal(got, want))
	}
	last := len(sizes) - 1
	if err := j.AddProgress(ctx, "big", last, sizes[last]/2); err != nil {
		t.Fatalf("AddProgress(%d): %v", last, err)
	}
	if rem, first, err := j.FinishLayer(ctx, "big", 0); err != nil || first || rem != 1 {
		t.Fatalf("FinishLayer(0) again = %d, %v, %v; want 1, false", rem, first, err)
	}
	if rem, first, err := j.FinishLayer(ctx, "big", last); err != nil || !first || rem != 0 {
		t.Fatalf("FinishLayer(%d) = %d, %v, %v; want 0, true", last, rem, first, err)
	}
	got, err := j.Get(ctx, "big")
	if err != nil || got.DoneBytes() != got.TotalBytes || got.Remaining != 0 {
		t.Fatalf("after finishing every layer: %v, done %d of %d, remaining %d", err, got.DoneBytes(), got.TotalBytes, got.Remaining)
	}
	size := itemSize(rawJobItem(t, db.Client(), j.table, jobItemKey("big")))
	t.Logf("a finished job of %d layers is a %d-byte item", len(sizes), size)
	// DynamoDB's limit is 400 KB; keep room for fields added later.
	if size > 200_000 {
		t.Fatalf("a finished job of %d layers is %d bytes, want under 200 KB", len(sizes), size)
	}
}

// bigSplitJob is a job of download.MaxLayers layers with the longest
// sizes and digests, the first split layers of which have parts each.
func bigSplitJob(id string, split, parts int) tarport.Job {
	sizes := make([]int64, download.MaxLayers)
	for i := range sizes {
		sizes[i] = 9<<30 + int64(i)*123_456_789
	}
	job := jobstest.Job(id, strings.Repeat("k", 64), sizes...)
	job.RepoTags = []string{"registry.example.com/some/long/repository/name:v1.2.3"}
	for i := range split {
		job.Layers[i].Parts = parts
	}
	return job
}

// TestJobsSplitLayerItemSize: a realistic big job, one layer of 1,024
// parts next to 999 small layers, counts its last parts once under
// concurrent, redelivered calls, and its item stays small. The first
// parts are written straight into the item: a thousand updates of a
// 100 KB item take dynalite some 15 s, and the suite races the updates.
func TestJobsSplitLayerItemSize(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	j := newJobs(t, db, jobstest.NewClock().Now)
	ctx := context.Background()
	const parts, seeded = 1024, 1000
	sizes := make([]int64, download.MaxLayers)
	sizes[0] = parts * 64 << 20
	for i := 1; i < len(sizes); i++ {
		sizes[i] = 30<<20 + int64(i)*7_777
	}
	want := jobstest.SplitJob("split", "k", sizes, []int{parts})
	if _, created, err := j.Create(ctx, want); err != nil || !created {
		t.Fatalf("Create: created %v, %v", created, err)
	}
	item := rawJobItem(t, db.Client(), j.table, jobItemKey("split"))
	done := make([]string, seeded)
	for p := range done {
		done[p] = strconv.Itoa(p + 1)
	}
	pl, pf := partAttrs(0)
	item[pl], item[pf] = num(parts-seeded), &types.AttributeValueMemberNS{Value: done}
	if _, err := db.Client().PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(j.table), Item: item}); err != nil {
		t.Fatal(err)
	}

	// Eight workers take the other parts, each delivered twice, and a
	// few of the seeded ones again.
	var calls []int
	for p := seeded + 1; p <= parts; p++ {
		calls = append(calls, p, p)
	}
	calls = append(calls, 1, 500, seeded)
	next := make(chan int)
	go func() {
		for _, p := range calls {
			next <- p
		}
		close(next)
	}()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		firsts = map[int]int{} // remaining seen by first callers
	)
	for range 8 {
		wg.Go(func() {
			for p := range next {
				rem, first, err := j.FinishPart(ctx, "split", 0, p)
				if err != nil {
					t.Errorf("FinishPart(0, %d): %v", p, err)
					continue
				}
				if first {
					if p <= seeded {
						t.Errorf("FinishPart(0, %d) of a finished part reported first", p)
					}
					mu.Lock()
					firsts[rem]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(firsts) != parts-seeded {
		t.Fatalf("first callers saw %d distinct counts, want %d", len(firsts), parts-seeded)
	}
	for rem, n := range firsts {
		if rem < 0 || rem >= parts-seeded || n != 1 {
			t.Fatalf("first callers saw remaining %d %d times, want each of 0..%d once", rem, n, parts-seeded-1)
		}
	}
	if got, err := j.Get(ctx, "split"); err != nil || !jobstest.Equal(got, want) {
		t.Fatalf("Get after every part = %s, %v; want the job as created", got.ID, err)
	}
	size := itemSize(rawJobItem(t, db.Client(), j.table, jobItemKey("split")))
	t.Logf("a job of %d layers, one in %d parts all finished, is a %d-byte item (largest estimate %d)", len(sizes), parts, size, largestItemSize(want))
	if size > 150_000 || size > largestItemSize(want) {
		t.Fatalf("item is %d bytes, want under 150 KB and under the estimate %d", size, largestItemSize(want))
	}
}

// TestJobsLargestItemFits: Create refuses a job whose item could outgrow
// DynamoDB's limit, and the largest job it takes fits, every layer and
// part finished, where dynalite checks the 400 KB limit.
func TestJobsLargestItemFits(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	j := newJobs(t, db, jobstest.NewClock().Now)
	ctx := context.Background()
	const parts = 10_000 // S3's most for one layer's entry
	split := 0
	for largestItemSize(bigSplitJob("x", split+1, parts)) <= maxJobItemBytes {
		split++
	}
	t.Logf("%d layers take up to %d layers of %d parts", download.MaxLayers, split, parts)
	if split < 5 {
		t.Fatalf("only %d layers of %d parts fit next to %d layers, want at least 5", split, parts, download.MaxLayers)
	}
	tooBig := bigSplitJob("too-big", split+1, parts)
	if _, _, err := j.Create(ctx, tooBig); tarport.ErrorCode(err) != tarport.CodeTooLarge {
		t.Fatalf("Create of a job that may outgrow an item: %v, want too_large", err)
	}
	if _, err := j.Get(ctx, "too-big"); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Fatalf("a refused job was stored: %v", err)
	}

	largest := bigSplitJob("largest", split, parts)
	if _, created, err := j.Create(ctx, largest); err != nil || !created {
		t.Fatalf("Create of the largest job: %v, %v", created, err)
	}
	// Its item in its largest state, written whole: the suite shows the
	// updates get there, one part at a time.
	item := rawJobItem(t, db.Client(), j.table, jobItemKey("largest"))
	all := make([]string, parts)
	for p := range all {
		all[p] = strconv.Itoa(p + 1)
	}
	for i, l := range largest.Layers {
		done, left, fin := layerAttrs(i)
		item[done], item[left], item[fin] = num(l.Size), num(0), &types.AttributeValueMemberBOOL{Value: true}
		if l.Parts > 0 {
			pl, pf := partAttrs(i)
			item[pl], item[pf] = num(0), &types.AttributeValueMemberNS{Value: all}
		}
	}
	item[attrJobRemaining] = num(0)
	size := itemSize(item)
	t.Logf("the largest job finished is a %d-byte item (estimate %d)", size, largestItemSize(largest))
	if size > largestItemSize(largest) {
		t.Fatalf("the estimate %d is below the item's size %d", largestItemSize(largest), size)
	}
	if _, err := db.Client().PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(j.table), Item: item}); err != nil {
		t.Fatalf("storing the largest job finished: %v", err)
	}
	rem, first, err := j.FinishPart(ctx, "largest", split-1, parts)
	if err != nil || first || rem != 0 {
		t.Fatalf("FinishPart on the largest job finished = (%d, %v, %v), want (0, false, nil)", rem, first, err)
	}
}

// TestJobsTTLAttribute: the job item and its key item carry the job's
// expiry as the TTL, in Unix seconds rounded up (never before the service
// lets go of the job).
func TestJobsTTLAttribute(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	j := newJobs(t, db, jobstest.NewClock().Now)
	ctx := context.Background()
	for _, tt := range []struct {
		id      string
		expires time.Time
		want    string
	}{
		{"whole", time.Unix(1_900_000_000, 0), "1900000000"},
		{"fraction", time.Unix(1_900_000_000, 1), "1900000001"},
	} {
		jb := jobstest.Job(tt.id, "key-"+tt.id, 1)
		jb.ExpiresAt = tt.expires.UTC()
		if _, _, err := j.Create(ctx, jb); err != nil {
			t.Fatal(err)
		}
		for _, key := range []map[string]types.AttributeValue{jobItemKey(tt.id), jobKeyItemKey("key-" + tt.id)} {
			item := rawJobItem(t, db.Client(), j.table, key)
			if n, ok := item[AttrTTL].(*types.AttributeValueMemberN); !ok || n.Value != tt.want {
				t.Errorf("%v: %s = %#v, want N %s", key[AttrPK], AttrTTL, item[AttrTTL], tt.want)
			}
		}
	}
}

// TestJobsExpiredItemIsMissing: TTL deletes hours late, so an expired job
// still in the table is missing to readers and its key is free.
func TestJobsExpiredItemIsMissing(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	clk := jobstest.NewClock()
	j := newJobs(t, db, clk.Now)
	ctx := context.Background()
	old := jobstest.Job("old", "k", 1)
	if _, _, err := j.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	clk.Set(old.ExpiresAt)
	if rawJobItem(t, db.Client(), j.table, jobItemKey("old")) == nil {
		t.Fatal("the expired item is gone from the table; the test needs it there")
	}
	if _, err := j.Get(ctx, "old"); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Fatalf("Get of an expired item still in the table: %v, want not_found", err)
	}
	fresh := jobstest.Job("fresh", "k", 1)
	fresh.ExpiresAt = clk.Now().Add(jobstest.TTL)
	if live, created, err := j.Create(ctx, fresh); err != nil || !created || live.ID != "fresh" {
		t.Fatalf("Create next to an expired job = (%s, %v, %v), want a new job", live.ID, created, err)
	}
	owner := rawJobItem(t, db.Client(), j.table, jobKeyItemKey("k"))[attrKeyJobID]
	if s, ok := owner.(*types.AttributeValueMemberS); !ok || s.Value != "fresh" {
		t.Fatalf("key item names %#v, want fresh", owner)
	}
}

// TestJobsCreateRacesFailure: requests racing a job's failure either join
// it (before it failed) or share one new job; one made after the failure
// never gets the failed job.
func TestJobsCreateRacesFailure(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	for round := range 5 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			clk := jobstest.NewClock()
			j := newJobs(t, db, clk.Now)
			ctx := context.Background()
			if _, _, err := j.Create(ctx, jobstest.Job("doomed", "k", 1)); err != nil {
				t.Fatal(err)
			}
			const n = 30
			type result struct {
				id      string
				created bool
			}
			results := make([]result, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					<-start
					live, created, err := j.Create(ctx, jobstest.Job(fmt.Sprintf("job-%d", i), "k", 1))
					if err != nil {
						t.Errorf("Create %d: %v", i, err)
					}
					results[i] = result{live.ID, created}
				})
			}
			var afterFailure result
			wg.Go(func() {
				<-start
				if err := j.SetStatus(ctx, "doomed", tarport.StatusFailed, &tarport.JobError{Code: tarport.CodeUpstream, Message: "x"}); err != nil {
					t.Errorf("SetStatus: %v", err)
				}
				live, created, err := j.Create(ctx, jobstest.Job("after", "k", 1))
				if err != nil {
					t.Errorf("Create after the failure: %v", err)
				}
				afterFailure = result{live.ID, created}
			})
			close(start)
			wg.Wait()
			if afterFailure.id == "doomed" || afterFailure.id == "" {
				t.Fatalf("a request after the failure got %q", afterFailure.id)
			}
			newJobs := map[string]bool{afterFailure.id: true}
			created := 0
			for _, r := range append(results, afterFailure) {
				if r.created {
					created++
				}
				if r.id != "doomed" {
					newJobs[r.id] = true
				}
			}
			if created != 1 || len(newJobs) != 1 {
				t.Fatalf("%d created, new jobs handed out %v; want one new job shared", created, newJobs)
			}
			live, isNew, err := j.Create(ctx, jobstest.Job("last", "k", 1))
			if err != nil || isNew || live.ID != afterFailure.id {
				t.Fatalf("Create after the race = (%s, %v, %v), want %s shared", live.ID, isNew, err, afterFailure.id)
			}
		})
	}
}

// TestJobsLongKeysAndIDs: a job key over DynamoDB's key limit is stored
// by its hash; an id too long for a key is simply not found.
func TestJobsLongKeysAndIDs(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	j := newJobs(t, db, jobstest.NewClock().Now)
	ctx := context.Background()
	key := strings.Repeat("k", 3000)
	if _, created, err := j.Create(ctx, jobstest.Job("a", key, 1)); err != nil || !created {
		t.Fatalf("Create with a long key: %v %v", created, err)
	}
	if live, created, err := j.Create(ctx, jobstest.Job("b", key, 1)); err != nil || created || live.ID != "a" || live.Key != key {
		t.Fatalf("second Create with the long key = (%s, %v, %v)", live.ID, created, err)
	}
	if _, err := j.Get(ctx, strings.Repeat("x", 3000)); tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Fatalf("Get of a 3000-character id: %v, want not_found", err)
	}
}

// TestJobsRejectsForeignItems: an item that is not a job is an error, not
// a zero job handed to the service.
func TestJobsRejectsForeignItems(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	j := newJobs(t, db, jobstest.NewClock().Now)
	ctx := context.Background()
	for id, extra := range map[string]map[string]types.AttributeValue{
		"bare":      {},
		"bad-times": {attrJobID: &types.AttributeValueMemberS{Value: "bad-times"}, attrJobExpires: &types.AttributeValueMemberS{Value: "soon"}},
	} {
		item := jobItemKey(id)
		for k, v := range extra {
			item[k] = v
		}
		if _, err := db.Client().PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(j.table), Item: item}); err != nil {
			t.Fatal(err)
		}
		if got, err := j.Get(ctx, id); err == nil || tarport.ErrorCode(err) == tarport.CodeNotFound {
			t.Errorf("Get of foreign item %s = %+v, %v; want a decoding error", id, got, err)
		}
	}
}

// TestJobsErrorsSayWhat: a failing table is an error naming the job.
func TestJobsErrorsSayWhat(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	j := NewJobs(db.Client(), "no-such-table")
	ctx := context.Background()
	_, _, err := j.Create(ctx, jobstest.Job("j1", "k", 1))
	errs := map[string]error{"Create": err}
	_, errs["Get"] = j.Get(ctx, "j1")
	errs["SetStatus"] = j.SetStatus(ctx, "j1", tarport.StatusFetching, nil)
	errs["AddProgress"] = j.AddProgress(ctx, "j1", 0, 1)
	_, _, errs["FinishLayer"] = j.FinishLayer(ctx, "j1", 0)
	_, _, errs["FinishPart"] = j.FinishPart(ctx, "j1", 0, 1)
	_, _, errs["FinishPart(0, 0)"] = j.FinishPart(ctx, "j1", 0, 0)
	for op, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "j1") || tarport.ErrorCode(err) == tarport.CodeNotFound {
			t.Errorf("%s on a missing table: %v", op, err)
		}
	}
}

func rawJobItem(t *testing.T, c *dynamodb.Client, table string, key map[string]types.AttributeValue) map[string]types.AttributeValue {
	t.Helper()
	out, err := c.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(table), Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}
