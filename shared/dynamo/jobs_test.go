package dynamo

import (
	"context"
	"fmt"
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

// itemSize is an item's size as DynamoDB counts it against the 400 KB
// limit: attribute names plus values; numbers about one byte per two
// digits plus one; lists and maps 3 bytes plus 1 per element.
func itemSize(item map[string]types.AttributeValue) int {
	n := 0
	for name, v := range item {
		n += len(name) + valueSize(v)
	}
	return n
}

func valueSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return (len(strings.TrimLeft(v.Value, "-0"))+1)/2 + 1
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += 1 + valueSize(e)
		}
		return n
	case *types.AttributeValueMemberM:
		return 3 + len(v.Value) + itemSize(v.Value)
	}
	panic(fmt.Sprintf("unexpected attribute value %T", v))
}
