package dynamo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// JobsAPI is what the job store needs of a DynamoDB client.
type JobsAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
}

// A job is one item, pk "job#<id>", sk "job", so that every state change
// is one conditional or atomic write of one item. Everything an update
// changes is a top-level attribute: the status, the error, the remaining
// count and, per layer i, fin_<i> (present once finished). The layers'
// digests, sizes and part counts never change and sit in one list; a
// split layer also counts its parts (jobs_parts.go). Times are Unix
// nanoseconds; expires_at is the TTL.
//
// A layer's progress is an item of its own in the job's partition, sk
// "layer#<i, 5 digits>": done and left (done and size-done bytes, changed
// together so a condition on either clamps progress to [0, size] without
// reading the size). DynamoDB bills a write by the size of the item it
// changes, so a progress write, once a second per running task, costs one
// unit however many layers the job has. A finished layer reads as done
// whatever its progress item says. Get reads the job and its layers with
// one Query of the partition.
//
// A job key's item, pk "key#<key>", sk "key", names the job requests with
// that key join (job_id); Create changes it only by conditional puts.
const (
	jobPrefix    = "job#"
	jobSK        = "job"
	jobKeyPrefix = "key#"
	jobKeySK     = "key"

	attrJobID           = "id"
	attrJobKey          = "job_key"
	attrJobImage        = "image"
	attrJobRef          = "ref"
	attrJobPlatform     = "platform"
	attrJobDigest       = "digest"
	attrJobIndexDigest  = "index_digest"
	attrJobConfigDigest = "config_digest"
	attrJobRepoTags     = "repo_tags"
	attrJobRefName      = "ref_name"
	attrJobName         = "name"
	attrJobPrivate      = "private"
	attrJobStatus       = "status"
	attrJobTotal        = "total_bytes"
	attrJobLayers       = "layers" // [{d: digest, s: size}]
	attrJobRemaining    = "remaining"
	attrJobError        = "error"  // {code, message}
	attrJobBundle       = "bundle" // JSON of Job.Bundle, for a job of several images
	attrJobTarKey       = "tar_key"
	attrJobFileName     = "file_name"
	attrJobCreated      = "created_ns"
	attrJobUpdated      = "updated_ns"
	attrJobExpires      = "expires_ns"
	attrKeyJobID        = "job_id"

	// createAttempts bounds Create's loop: each further attempt means
	// another request changed the key item in between.
	createAttempts = 8
	// progressAttempts bounds AddProgress's: it retries only when a
	// concurrent add moved the layer across the clamp it was about to use.
	progressAttempts = 8
)

// layerAttrs names layer i's top-level attributes on the job item: fin_<i>
// its finish flag; done_<i> and left_<i> where jobs written before progress
// items kept progress (still read, for jobs that span a deploy).
func layerAttrs(i int) (done, left, fin string) {
	n := strconv.Itoa(i)
	return "done_" + n, "left_" + n, "fin_" + n
}

// Progress items' sort keys and attributes.
const (
	layerSKPrefix = "layer#"
	attrDone      = "done"
	attrLeft      = "left"
	// attrLayerCount, on the job item, bounds the layer an update may name.
	attrLayerCount = "layer_count"
)

func layerItemKey(id string, layer int) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: jobPrefix + id},
		AttrSK: &types.AttributeValueMemberS{Value: fmt.Sprintf("%s%05d", layerSKPrefix, layer)},
	}
}

// Jobs is the job store on DynamoDB.
type Jobs struct {
	api   JobsAPI
	table string
	now   func() time.Time
}

var _ download.Jobs = (*Jobs)(nil)

// NewJobs returns a job store in table.
func NewJobs(api JobsAPI, table string) *Jobs {
	return &Jobs{api: api, table: table, now: time.Now}
}

// Create stores job unless a joinable job has its key.
//
// The key item decides, without a transaction: a Create makes its job
// the key's only by a put conditioned on the key item being absent or
// still naming the job this Create read and found not joinable. Not
// joinable is final (failed is terminal, expiry fixed) and ids are never
// reused, so nothing another request did in between can be overwritten;
// losers re-read the key and join the winner, whose job item was written
// before its key item, so a consistent read finds it.
func (j *Jobs) Create(ctx context.Context, job tarport.Job) (tarport.Job, bool, error) {
	if err := checkItemSize(job); err != nil {
		return tarport.Job{}, false, fmt.Errorf("creating job %s: %w", job.ID, err)
	}
	written := false
	dropOrphan := func() {
		if written { // nobody else knows its id: best effort, else TTL takes it
			_, _ = j.api.DeleteItem(context.WithoutCancel(ctx), &dynamodb.DeleteItemInput{TableName: aws.String(j.table), Key: jobItemKey(job.ID)})
		}
	}
	for range createAttempts {
		owner, err := j.keyOwner(ctx, job.Key)
		if err != nil {
			dropOrphan()
			return tarport.Job{}, false, fmt.Errorf("creating job %s: %w", job.ID, err)
		}
		if owner == job.ID && written {
			return job, true, nil // our own claim, retried by the SDK after it landed
		}
		if owner != "" {
			live, err := j.load(ctx, owner)
			switch {
			case err == nil && live.Joinable(j.now()):
				dropOrphan()
				return live, false, nil
			case err != nil && tarport.ErrorCode(err) != tarport.CodeNotFound:
				dropOrphan()
				return tarport.Job{}, false, fmt.Errorf("creating job %s: %w", job.ID, err)
			}
		}
		if !written {
			if err := j.putJob(ctx, job); err != nil {
				return tarport.Job{}, false, fmt.Errorf("creating job %s: %w", job.ID, err)
			}
			written = true
		}
		claimed, err := j.claimKey(ctx, job, owner)
		if err != nil {
			dropOrphan()
			return tarport.Job{}, false, fmt.Errorf("creating job %s: %w", job.ID, err)
		}
		if claimed {
			return job, true, nil
		}
	}
	dropOrphan()
	return tarport.Job{}, false, fmt.Errorf("creating job %s: key %s changed %d times while claiming it", job.ID, short(job.Key), createAttempts)
}

// keyOwner returns the id the key item names, or "".
func (j *Jobs) keyOwner(ctx context.Context, key string) (string, error) {
	out, err := j.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(j.table),
		Key:            jobKeyItemKey(key),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return "", fmt.Errorf("reading job key %s: %w", short(key), err)
	}
	if out.Item == nil {
		return "", nil
	}
	id, ok := out.Item[attrKeyJobID].(*types.AttributeValueMemberS)
	if !ok {
		return "", fmt.Errorf("reading job key %s: item has no string %q", short(key), attrKeyJobID)
	}
	return id.Value, nil
}

func (j *Jobs) putJob(ctx context.Context, job tarport.Job) error {
	// The progress items first: once the job item is there, tasks may add.
	if err := j.putLayers(ctx, job); err != nil {
		return err
	}
	_, err := j.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(j.table),
		Item:                     encodeJob(job),
		ConditionExpression:      aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#pk": AttrPK},
	})
	if conditionFailed(err) {
		return fmt.Errorf("writing job item: id %s is taken", job.ID)
	}
	if err != nil {
		return fmt.Errorf("writing job item: %w", err)
	}
	return nil
}

// putLayers writes the job's progress items, 25 to a batch (DynamoDB's
// most), retrying what DynamoDB leaves unprocessed.
func (j *Jobs) putLayers(ctx context.Context, job tarport.Job) error {
	var reqs []types.WriteRequest
	for i, l := range job.Layers {
		item := layerItemKey(job.ID, i)
		item[attrDone] = num(l.DoneBytes)
		item[attrLeft] = num(l.Size - l.DoneBytes)
		if ttl, ok := ttlSeconds(job.ExpiresAt); ok {
			item[AttrTTL] = ttl
		}
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item}})
	}
	for len(reqs) > 0 {
		n := min(len(reqs), 25)
		batch := reqs[:n]
		reqs = reqs[n:]
		for attempt := 0; len(batch) > 0; attempt++ {
			if attempt == progressAttempts {
				return fmt.Errorf("writing progress items: %d still unprocessed", len(batch))
			}
			if attempt > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
				}
			}
			out, err := j.api.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{j.table: batch}})
			if err != nil {
				return fmt.Errorf("writing progress items: %w", err)
			}
			batch = out.UnprocessedItems[j.table]
		}
	}
	return nil
}

// claimKey points job's key at it if the key item is absent or still
// names stale (a job found not joinable); false if someone was faster.
func (j *Jobs) claimKey(ctx context.Context, job tarport.Job, stale string) (bool, error) {
	item := jobKeyItemKey(job.Key)
	item[attrKeyJobID] = &types.AttributeValueMemberS{Value: job.ID}
	if ttl, ok := ttlSeconds(job.ExpiresAt); ok {
		item[AttrTTL] = ttl
	}
	in := &dynamodb.PutItemInput{
		TableName:                aws.String(j.table),
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(#pk)"),
		ExpressionAttributeNames: map[string]string{"#pk": AttrPK},
	}
	if stale != "" {
		in.ConditionExpression = aws.String("attribute_not_exists(#pk) OR #owner = :stale")
		in.ExpressionAttributeNames["#owner"] = attrKeyJobID
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":stale": &types.AttributeValueMemberS{Value: stale}}
	}
	_, err := j.api.PutItem(ctx, in)
	if conditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("writing job key %s: %w", short(job.Key), err)
	}
	return true, nil
}

// Get returns a job that exists and has not expired; DynamoDB's TTL
// deletes late, so an expired item may still be there.
func (j *Jobs) Get(ctx context.Context, id string) (tarport.Job, error) {
	job, err := j.load(ctx, id)
	if err != nil {
		return tarport.Job{}, err
	}
	if job.Expired(j.now()) {
		return tarport.Job{}, errJobNotFound(id)
	}
	return job, nil
}

// load reads a job and its progress items, expired or not, with one
// consistent Query of its partition.
func (j *Jobs) load(ctx context.Context, id string) (tarport.Job, error) {
	if !validID(id) {
		return tarport.Job{}, errJobNotFound(id)
	}
	var item map[string]types.AttributeValue
	progress := map[int]map[string]types.AttributeValue{}
	p := dynamodb.NewQueryPaginator(j.api, &dynamodb.QueryInput{
		TableName:                 aws.String(j.table),
		KeyConditionExpression:    aws.String("#pk = :pk"),
		ExpressionAttributeNames:  map[string]string{"#pk": AttrPK},
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: jobPrefix + id}},
		ConsistentRead:            aws.Bool(true),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return tarport.Job{}, fmt.Errorf("reading job %s: %w", id, err)
		}
		for _, it := range page.Items {
			sk, _ := it[AttrSK].(*types.AttributeValueMemberS)
			switch {
			case sk == nil:
			case sk.Value == jobSK:
				item = it
			case strings.HasPrefix(sk.Value, layerSKPrefix):
				if i, err := strconv.Atoi(strings.TrimPrefix(sk.Value, layerSKPrefix)); err == nil {
					progress[i] = it
				}
			}
		}
	}
	if item == nil {
		return tarport.Job{}, errJobNotFound(id)
	}
	job, err := decodeJob(item, progress)
	if err != nil {
		return tarport.Job{}, fmt.Errorf("decoding job %s: %w", id, err)
	}
	return job, nil
}

// read returns a job's item, read consistently (it decides what comes
// next), with only the named attributes if any.
func (j *Jobs) read(ctx context.Context, id string, attrs ...string) (map[string]types.AttributeValue, error) {
	if !validID(id) {
		return nil, errJobNotFound(id)
	}
	in := &dynamodb.GetItemInput{
		TableName:      aws.String(j.table),
		Key:            jobItemKey(id),
		ConsistentRead: aws.Bool(true),
	}
	if len(attrs) > 0 {
		in.ExpressionAttributeNames = map[string]string{"#pk": AttrPK}
		proj := []string{"#pk"}
		for i, a := range attrs {
			p := "#a" + strconv.Itoa(i)
			in.ExpressionAttributeNames[p] = a
			proj = append(proj, p)
		}
		in.ProjectionExpression = aws.String(strings.Join(proj, ", "))
	}
	out, err := j.api.GetItem(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("reading job %s: %w", id, err)
	}
	if out.Item == nil {
		return nil, errJobNotFound(id)
	}
	return out.Item, nil
}

// SetStatus moves a non-terminal job forward to status (a late,
// redelivered task never moves it back) or to failed: one update
// conditioned on the statuses it may come from.
func (j *Jobs) SetStatus(ctx context.Context, id string, status tarport.Status, jobErr *tarport.JobError) error {
	if !validID(id) {
		return errJobNotFound(id)
	}
	names := map[string]string{"#st": attrJobStatus, "#upd": attrJobUpdated, "#err": attrJobError}
	values := map[string]types.AttributeValue{
		":st":  &types.AttributeValueMemberS{Value: string(status)},
		":now": nanos(j.now()),
	}
	var from []string
	for i, s := range []tarport.Status{tarport.StatusQueued, tarport.StatusFetching, tarport.StatusAssembling} {
		if s.CanBecome(status) {
			p := ":from" + strconv.Itoa(i)
			values[p] = &types.AttributeValueMemberS{Value: string(s)}
			from = append(from, p)
		}
	}
	update := "SET #st = :st, #upd = :now REMOVE #err"
	if jobErr != nil {
		update = "SET #st = :st, #upd = :now, #err = :err"
		values[":err"] = encodeJobError(jobErr)
	}
	_, err := j.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(j.table),
		Key:                       jobItemKey(id),
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String("#st IN (" + strings.Join(from, ", ") + ")"),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	})
	if conditionFailed(err) {
		// Missing, or a status it must not leave: tell the two apart.
		_, err = j.read(ctx, id, attrJobStatus)
	}
	if err != nil {
		return fmt.Errorf("updating job %s: %w", id, err)
	}
	return nil
}

// AddProgress adds delta done bytes to one unfinished layer, within
// [0, size]. The common case is one update conditioned on the room left
// (left_<i> for a gain, done_<i> for a loss); a delta past the bound
// pins the layer at it instead, conditioned on it still being past.
func (j *Jobs) AddProgress(ctx context.Context, id string, layer int, delta int64) error {
	if !validID(id) {
		return errJobNotFound(id)
	}
	if layer < 0 {
		return j.exists(ctx, id)
	}
	// grow gains what shrink loses; their sum stays the layer's size.
	grow, shrink, amount := attrDone, attrLeft, delta
	if delta < 0 {
		grow, shrink, amount = attrLeft, attrDone, -delta
	}
	names := map[string]string{"#grow": grow, "#shrink": shrink}
	steps := []struct{ update, cond string }{
		{"SET #grow = #grow + :a, #shrink = #shrink - :a", "#shrink >= :a"},
		{"SET #grow = #grow + #shrink, #shrink = :zero", "#shrink < :a"},
	}
	for range progressAttempts {
		for _, st := range steps {
			values := map[string]types.AttributeValue{":a": num(amount)}
			if strings.Contains(st.update, ":zero") {
				values[":zero"] = num(0)
			}
			_, err := j.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
				TableName:                 aws.String(j.table),
				Key:                       layerItemKey(id, layer),
				UpdateExpression:          aws.String(st.update),
				ConditionExpression:       aws.String(st.cond),
				ExpressionAttributeNames:  names,
				ExpressionAttributeValues: values,
			})
			if err == nil {
				return nil
			}
			if !conditionFailed(err) {
				return fmt.Errorf("updating job %s: %w", id, err)
			}
		}
		// Neither applied: a missing job or layer (nothing to do), or a
		// concurrent add moved the layer between the two conditions (try
		// again). A finished layer reads as done whatever this item says.
		out, err := j.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(j.table), Key: layerItemKey(id, layer), ConsistentRead: aws.Bool(true)})
		if err != nil {
			return fmt.Errorf("updating job %s: %w", id, err)
		}
		if _, ok := out.Item[attrLeft]; !ok {
			return j.exists(ctx, id) // no such layer: nothing to do
		}
	}
	return fmt.Errorf("updating job %s: layer %d kept changing under %d attempts to add %d bytes", id, layer, progressAttempts, delta)
}

// exists is nil for a stored job, else its not_found error.
func (j *Jobs) exists(ctx context.Context, id string) error {
	if _, err := j.read(ctx, id, attrJobID); err != nil {
		return fmt.Errorf("updating job %s: %w", id, err)
	}
	return nil
}

// FinishLayer marks a layer done once: one update that sets its flag,
// conditioned on the flag being unset, and counts remaining down in the
// same write, so exactly one caller sees each count.
func (j *Jobs) FinishLayer(ctx context.Context, id string, layer int) (int, bool, error) {
	if !validID(id) {
		return 0, false, errJobNotFound(id)
	}
	var item map[string]types.AttributeValue
	first, err := false, error(nil)
	if layer >= 0 {
		item, first, err = j.finish(ctx, id, layer)
	}
	if !first && err == nil {
		// Finished before, or no such layer: report the count as it is.
		item, err = j.read(ctx, id, attrJobRemaining)
	}
	if err != nil {
		return 0, false, fmt.Errorf("finishing layer %d of job %s: %w", layer, id, err)
	}
	remaining, err := intAttr(item, attrJobRemaining)
	if err != nil {
		return 0, false, fmt.Errorf("finishing layer %d of job %s: %w", layer, id, err)
	}
	return int(remaining), first, nil
}

// finish sets layer's flag and counts remaining down, in one update
// conditioned on the flag being unset; false when the condition refused.
func (j *Jobs) finish(ctx context.Context, id string, layer int) (map[string]types.AttributeValue, bool, error) {
	_, left, fin := layerAttrs(layer)
	out, err := j.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:        aws.String(j.table),
		Key:              jobItemKey(id),
		UpdateExpression: aws.String("SET #fin = :true, #upd = :now ADD #rem :minus"),
		// A layer of the job: below its layer count, or in an item written
		// before progress items, one with a left_<i>.
		ConditionExpression:      aws.String("attribute_not_exists(#fin) AND (#n > :i OR attribute_exists(#left))"),
		ExpressionAttributeNames: map[string]string{"#fin": fin, "#left": left, "#n": attrLayerCount, "#upd": attrJobUpdated, "#rem": attrJobRemaining},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":true":  &types.AttributeValueMemberBOOL{Value: true},
			":i":     num(int64(layer)),
			":minus": num(-1),
			":now":   nanos(j.now()),
		},
		ReturnValues: types.ReturnValueUpdatedNew,
	})
	if conditionFailed(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return out.Attributes, true, nil
}

func conditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

func errJobNotFound(id string) error {
	return tarport.Errorf(tarport.CodeNotFound, "no download job %q (it may have expired)", id)
}

// validID says whether id can name an item: ids come from URLs, and one
// too long for a partition key cannot exist.
func validID(id string) bool { return len(id) <= maxKeyBytes }

func jobItemKey(id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: jobPrefix + id},
		AttrSK: &types.AttributeValueMemberS{Value: jobSK},
	}
}

func jobKeyItemKey(key string) map[string]types.AttributeValue {
	if len(key) > maxKeyBytes {
		sum := sha256.Sum256([]byte(key))
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: jobKeyPrefix + key},
		AttrSK: &types.AttributeValueMemberS{Value: jobKeySK},
	}
}

// ttlSeconds is t for the TTL attribute, rounded up: DynamoDB must not
// drop an item the service still serves.
func ttlSeconds(t time.Time) (types.AttributeValue, bool) {
	if t.IsZero() {
		return nil, false
	}
	sec := t.Unix()
	if t.Nanosecond() > 0 {
		sec++
	}
	return num(sec), true
}

func num(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}
