package dynamo

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/download/jobstest"
	"github.com/tarport/tarport/shared/testkit/dynalite"
)

// capacityAPI asks DynamoDB what each update consumed and keeps it.
type capacityAPI struct {
	*dynamodb.Client
	mu    sync.Mutex
	units []float64
}

func (c *capacityAPI) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	in.ReturnConsumedCapacity = types.ReturnConsumedCapacityTotal
	out, err := c.Client.UpdateItem(ctx, in, opts...)
	if err == nil && out.ConsumedCapacity != nil {
		c.mu.Lock()
		c.units = append(c.units, aws.ToFloat64(out.ConsumedCapacity.CapacityUnits))
		c.mu.Unlock()
	}
	return out, err
}

// TestProgressWritesStaySmall: a progress write costs one write unit
// whatever the job's size (DynamoDB bills an update by the item it
// changes, and a job of 1000 layers is a 100 KB item), and the job still
// reads back whole.
func TestProgressWritesStaySmall(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	api := &capacityAPI{Client: db.Client()}
	j := NewJobs(api, db.CreateTable(t, Schema()))
	j.now = jobstest.NewClock().Now
	ctx := context.Background()
	sizes := make([]int64, download.MaxLayers)
	for i := range sizes {
		sizes[i] = 1 << 30
	}
	job := jobstest.Job("big", strings.Repeat("k", 64), sizes...)
	if _, _, err := j.Create(ctx, job); err != nil {
		t.Fatal(err)
	}
	if n := itemSize(rawJobItem(t, db.Client(), j.table, jobItemKey("big"))); n < 50_000 {
		t.Fatalf("the job item is %d bytes; the test wants a big one", n)
	}
	api.units = nil
	for _, layer := range []int{0, 500, 999} {
		if err := j.AddProgress(ctx, "big", layer, 4096); err != nil {
			t.Fatal(err)
		}
	}
	if len(api.units) != 3 {
		t.Fatalf("%d updates for 3 progress writes", len(api.units))
	}
	for _, u := range api.units {
		if u != 1 {
			t.Fatalf("a progress write consumed %v units, want 1: %v", u, api.units)
		}
	}
	got, err := j.Get(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Layers) != download.MaxLayers || got.Layers[500].DoneBytes != 4096 || got.Layers[999].DoneBytes != 4096 || got.DoneBytes() != 3*4096 {
		t.Fatalf("read back: %d layers, done %d, %d, total %d", len(got.Layers), got.Layers[500].DoneBytes, got.Layers[999].DoneBytes, got.DoneBytes())
	}
}

// TestJobWrittenBeforeProgressItems: a job stored by the previous layout
// (progress in done_<i>/left_<i> on the job item, no layer count) still
// reads, and its layers still finish and count down, so a deploy in the
// middle of a download does not strand it.
func TestJobWrittenBeforeProgressItems(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	j := newJobs(t, db, jobstest.NewClock().Now)
	ctx := context.Background()
	job := jobstest.Job("old", "k-old", 100, 50)
	item := encodeJob(job)
	delete(item, attrLayerCount)
	for i, l := range job.Layers {
		done, left, _ := layerAttrs(i)
		item[done], item[left] = num(30), num(l.Size-30)
	}
	if _, err := db.Client().PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(j.table), Item: item}); err != nil {
		t.Fatal(err)
	}
	got, err := j.Get(ctx, "old")
	if err != nil || got.Layers[0].DoneBytes != 30 || got.Layers[1].DoneBytes != 30 {
		t.Fatalf("Get = %+v, %v", got.Layers, err)
	}
	for i, want := range []int{1, 0} {
		if rem, first, err := j.FinishLayer(ctx, "old", i); err != nil || !first || rem != want {
			t.Fatalf("FinishLayer(%d) = %d, %v, %v; want %d, true", i, rem, first, err, want)
		}
	}
	if rem, first, err := j.FinishLayer(ctx, "old", 2); err != nil || first || rem != 0 {
		t.Fatalf("FinishLayer(2) of a 2-layer job = %d, %v, %v", rem, first, err)
	}
	if got, _ := j.Get(ctx, "old"); got.DoneBytes() != 150 {
		t.Fatalf("finished: %d done bytes, want 150", got.DoneBytes())
	}
}

// TestNewJobFinishedByPreviousCode: during a deploy (or after a rollback)
// an assemble function of the previous layout finishes layers of jobs the
// new code made, with its own update: the job still counts down and reads
// finished.
func TestNewJobFinishedByPreviousCode(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	j := newJobs(t, db, jobstest.NewClock().Now)
	ctx := context.Background()
	if _, _, err := j.Create(ctx, jobstest.Job("mixed", "k-mixed", 100, 50)); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		// The previous FinishLayer, verbatim.
		done, left, fin := layerAttrs(i)
		_, err := db.Client().UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                aws.String(j.table),
			Key:                      jobItemKey("mixed"),
			UpdateExpression:         aws.String("SET #fin = :true, #done = #done + #left, #left = :zero, #upd = :now ADD #rem :minus"),
			ConditionExpression:      aws.String("attribute_exists(#left) AND attribute_not_exists(#fin)"),
			ExpressionAttributeNames: map[string]string{"#fin": fin, "#done": done, "#left": left, "#upd": attrJobUpdated, "#rem": attrJobRemaining},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":true": &types.AttributeValueMemberBOOL{Value: true}, ":zero": num(0), ":minus": num(-1), ":now": num(1),
			},
		})
		if err != nil {
			t.Fatalf("the previous FinishLayer(%d) on a new job: %v", i, err)
		}
	}
	got, err := j.Get(ctx, "mixed")
	if err != nil || got.Remaining != 0 || got.DoneBytes() != 150 || !got.Layers[0].Finished {
		t.Fatalf("after the previous code finished it: %+v, %v", got, err)
	}
}
