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
}

// A job is one item, pk "job#<id>", sk "job", so that every operation is
// one conditional or atomic write of one item. Everything an update
// changes is a top-level attribute: the status, the error, the remaining
// count and, per layer i, done_<i> and left_<i> (done and size-done
// bytes, changed together so a condition on either clamps progress to
// [0, size] without reading the size) and fin_<i> (present once
// finished). The layers' digests, sizes and part counts never change and
// sit in one list; a split layer also counts its parts (jobs_parts.go).
// Times are Unix nanoseconds; expires_at is the TTL.
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
	attrJobError        = "error" // {code, message}
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

// layerAttrs names layer i's top-level attributes.
func layerAttrs(i int) (done, left, fin string) {
	n := strconv.Itoa(i)
	return "done_" + n, "left_" + n, "fin_" + n
}

// Jobs is the job store on DynamoDB.
type Jobs struct {
	api   JobsAPI
	table string
	now   func() time.Time
	// joinMargin is the time a job must have left for a request to join
	// it: a requester should not be handed a link to a tar about to go.
	joinMargin time.Duration
}

var _ download.Jobs = (*Jobs)(nil)

// NewJobs returns a job store in table.
func NewJobs(api JobsAPI, table string) *Jobs {
	return &Jobs{api: api, table: table, now: time.Now, joinMargin: time.Hour}
}

func (j *Jobs) joinable(job tarport.Job) bool {
	return job.Status != tarport.StatusFailed && j.now().Add(j.joinMargin).Before(job.ExpiresAt)
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
			case err == nil && j.joinable(live):
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
	if !j.now().Before(job.ExpiresAt) {
		return tarport.Job{}, errJobNotFound(id)
	}
	return job, nil
}

// load reads a job, expired or not.
func (j *Jobs) load(ctx context.Context, id string) (tarport.Job, error) {
	item, err := j.read(ctx, id)
	if err != nil {
		return tarport.Job{}, err
	}
	job, err := decodeJob(item)
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
		if status == tarport.StatusFailed || s.Rank() <= status.Rank() {
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
	done, left, fin := layerAttrs(layer)
	// grow gains what shrink loses; their sum stays the layer's size.
	grow, shrink, amount := done, left, delta
	if delta < 0 {
		grow, shrink, amount = left, done, -delta
	}
	names := map[string]string{"#grow": grow, "#shrink": shrink, "#fin": fin, "#upd": attrJobUpdated}
	steps := []struct{ update, cond string }{
		{"SET #grow = #grow + :a, #shrink = #shrink - :a, #upd = :now", "attribute_not_exists(#fin) AND #shrink >= :a"},
		{"SET #grow = #grow + #shrink, #shrink = :zero, #upd = :now", "attribute_not_exists(#fin) AND #shrink < :a"},
	}
	for range progressAttempts {
		for _, st := range steps {
			values := map[string]types.AttributeValue{":a": num(amount), ":now": nanos(j.now())}
			if strings.Contains(st.update, ":zero") {
				values[":zero"] = num(0)
			}
			_, err := j.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
				TableName:                 aws.String(j.table),
				Key:                       jobItemKey(id),
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
		// Neither applied: a missing job, a layer out of range or
		// finished (nothing to do), or a concurrent add moved the layer
		// between the two conditions (try again).
		item, err := j.read(ctx, id, left, fin)
		if err != nil {
			return fmt.Errorf("updating job %s: %w", id, err)
		}
		if _, ok := item[left]; !ok {
			return nil
		}
		if _, ok := item[fin]; ok {
			return nil
		}
	}
	return fmt.Errorf("updating job %s: layer %d kept changing under %d attempts to add %d bytes", id, layer, progressAttempts, delta)
}

// FinishLayer marks a layer done once: one update that sets its flag,
// conditioned on the flag being unset, and counts remaining down in the
// same write, so exactly one caller sees each count.
func (j *Jobs) FinishLayer(ctx context.Context, id string, layer int) (int, bool, error) {
	if !validID(id) {
		return 0, false, errJobNotFound(id)
	}
	done, left, fin := layerAttrs(layer)
	out, err := j.api.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:        aws.String(j.table),
		Key:              jobItemKey(id),
		UpdateExpression: aws.String("SET #fin = :true, #done = #done + #left, #left = :zero, #upd = :now ADD #rem :minus"),
		// left_<i> exists for every layer of a stored job.
		ConditionExpression:      aws.String("attribute_exists(#left) AND attribute_not_exists(#fin)"),
		ExpressionAttributeNames: map[string]string{"#fin": fin, "#done": done, "#left": left, "#upd": attrJobUpdated, "#rem": attrJobRemaining},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":true":  &types.AttributeValueMemberBOOL{Value: true},
			":zero":  num(0),
			":minus": num(-1),
			":now":   nanos(j.now()),
		},
		ReturnValues: types.ReturnValueUpdatedNew,
	})
	first := err == nil
	var item map[string]types.AttributeValue
	if first {
		item = out.Attributes
	} else if conditionFailed(err) {
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
