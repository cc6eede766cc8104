package dynamo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tarport/tarport/shared/tarport"
)

// A split layer's lease is an item of its own, pk "split#<sha256 of the
// entry's key>" (an origin URL may be long), sk "split": the holder job,
// its upload and the lease's end, which is also the item's TTL.
const (
	splitPrefix = "split#"
	splitSK     = "split"

	attrLeaseJob    = "job"
	attrLeaseUpload = "upload"
	attrLeaseUntil  = "until_ns"

	// leaseAttempts bounds LeaseSplit's loop: an attempt fails only when
	// the lease it was refused by is gone before it is read (TTL).
	leaseAttempts = 3
)

// LeaseSplit takes the lease on key where the held one yields: one put,
// conditioned on no lease, a lapsed one or one held by prev; refused, it
// reads the lease that refused it.
func (j *Jobs) LeaseSplit(ctx context.Context, key string, lease tarport.SplitLease, prev string) (tarport.SplitLease, error) {
	cond := "attribute_not_exists(#pk) OR #until <= :now"
	names := map[string]string{"#pk": AttrPK, "#until": attrLeaseUntil}
	values := map[string]types.AttributeValue{}
	if prev != "" {
		cond += " OR #job = :prev"
		names["#job"] = attrLeaseJob
		values[":prev"] = &types.AttributeValueMemberS{Value: prev}
	}
	item := splitItemKey(key)
	item[attrLeaseJob] = &types.AttributeValueMemberS{Value: lease.Job}
	item[attrLeaseUpload] = &types.AttributeValueMemberS{Value: lease.Upload}
	item[attrLeaseUntil] = nanos(lease.Until)
	if ttl, ok := ttlSeconds(lease.Until); ok {
		item[AttrTTL] = ttl
	}
	for range leaseAttempts {
		values[":now"] = nanos(j.now())
		_, err := j.api.PutItem(ctx, &dynamodb.PutItemInput{
			TableName:                 aws.String(j.table),
			Item:                      item,
			ConditionExpression:       aws.String(cond),
			ExpressionAttributeNames:  names,
			ExpressionAttributeValues: values,
		})
		if err == nil {
			return lease, nil
		}
		if !conditionFailed(err) {
			return tarport.SplitLease{}, fmt.Errorf("leasing split layer %s: %w", key, err)
		}
		held, found, err := j.readLease(ctx, key)
		if err != nil || found {
			return held, err
		}
	}
	return tarport.SplitLease{}, fmt.Errorf("leasing split layer %s: the lease changed %d times while taking it", key, leaseAttempts)
}

// readLease reads key's lease consistently.
func (j *Jobs) readLease(ctx context.Context, key string) (tarport.SplitLease, bool, error) {
	out, err := j.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(j.table),
		Key:            splitItemKey(key),
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return tarport.SplitLease{}, false, fmt.Errorf("reading the lease of split layer %s: %w", key, err)
	}
	if out.Item == nil {
		return tarport.SplitLease{}, false, nil
	}
	d := itemDecoder{item: out.Item}
	held := tarport.SplitLease{Job: d.str(attrLeaseJob), Upload: d.str(attrLeaseUpload), Until: d.time(attrLeaseUntil)}
	if d.err != nil {
		return tarport.SplitLease{}, false, fmt.Errorf("reading the lease of split layer %s: %w", key, d.err)
	}
	return held, true, nil
}

func splitItemKey(key string) map[string]types.AttributeValue {
	sum := sha256.Sum256([]byte(key))
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: splitPrefix + hex.EncodeToString(sum[:])},
		AttrSK: &types.AttributeValueMemberS{Value: splitSK},
	}
}
