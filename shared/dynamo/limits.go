package dynamo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tarport/tarport/shared/limits"
)

// LimitsAPI is what the limit counters need of a DynamoDB client.
type LimitsAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, opts ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
}

// Limit items, each small and written with one conditional update, so
// every Lambda instance counts against the same numbers without
// transactions:
//
//   - a request bucket: pk "rate#<client>", sk "rate", "tat" the GCRA time
//     in Unix microseconds;
//   - an hour of bytes: pk "use#<key>", sk "h#<Unix hour start, 12 digits>",
//     "bytes";
//   - a charge mark: pk "mark#<key>", sk "mark".
//
// Each has expires_at; DynamoDB's TTL deletes late, so readers compare
// times themselves (a stale tat is in the past and counts as none).
const (
	ratePrefix = "rate#"
	usePrefix  = "use#"
	markPrefix = "mark#"
	attrTAT    = "tat"
	attrBytes  = "bytes"
)

// Limits is the limits.Store on DynamoDB.
type Limits struct {
	api   LimitsAPI
	table string
}

var _ limits.Store = (*Limits)(nil)

// NewLimits returns the counters in table.
func NewLimits(api LimitsAPI, table string) *Limits { return &Limits{api: api, table: table} }

// Take applies limits.Admit as two conditional updates: an idle bucket
// (no tat, or one in the past) is set to now+every; a busy one moves on
// by every while it stays within the burst. Both refused, a consistent
// read tells which and, for a full bucket, the wait.
func (l *Limits) Take(ctx context.Context, key string, now time.Time, every time.Duration, burst, cost int) (time.Duration, error) {
	k := itemKey(ratePrefix+key, "rate")
	nowUS, costUS := now.UnixMicro(), int64(cost)*every.Microseconds()
	if cost > burst {
		return time.Duration(cost-burst) * every, nil // never passes at once
	}
	for range 4 {
		ok, err := l.update(ctx, &dynamodb.UpdateItemInput{
			Key:                 k,
			UpdateExpression:    aws.String("SET #tat = :next, #exp = :exp"),
			ConditionExpression: aws.String("attribute_not_exists(#tat) OR #tat <= :now"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":next": num(nowUS + costUS), ":now": num(nowUS), ":exp": ttl(now.Add(time.Duration(cost) * every)),
			},
		}, attrTAT)
		if ok || err != nil {
			return 0, err
		}
		// tat > now: pass while tat + cost*every - now <= burst*every.
		maxTAT := nowUS + int64(burst-cost)*every.Microseconds()
		ok, err = l.update(ctx, &dynamodb.UpdateItemInput{
			Key:                 k,
			UpdateExpression:    aws.String("SET #tat = #tat + :every, #exp = :exp"),
			ConditionExpression: aws.String("#tat > :now AND #tat <= :max"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":every": num(costUS), ":now": num(nowUS), ":max": num(maxTAT),
				":exp": ttl(now.Add(time.Duration(burst+1) * every)),
			},
		}, attrTAT)
		if ok || err != nil {
			return 0, err
		}
		tat, found, err := l.tat(ctx, k)
		if err != nil {
			return 0, err
		}
		if found && tat > maxTAT {
			return time.Duration(tat-maxTAT) * time.Microsecond, nil
		}
		// The bucket emptied or filled between the calls: again.
	}
	return 0, fmt.Errorf("counting a request of %s: the bucket kept changing", key)
}

func (l *Limits) tat(ctx context.Context, k map[string]types.AttributeValue) (int64, bool, error) {
	out, err := l.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(l.table), Key: k, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return 0, false, fmt.Errorf("reading a request bucket: %w", err)
	}
	v, ok := out.Item[attrTAT].(*types.AttributeValueMemberN)
	if !ok {
		return 0, false, nil
	}
	tat, err := strconv.ParseInt(v.Value, 10, 64)
	return tat, err == nil, err
}

func (l *Limits) Usage(ctx context.Context, key string, since time.Time) ([]limits.Bucket, error) {
	in := &dynamodb.QueryInput{
		TableName:                aws.String(l.table),
		KeyConditionExpression:   aws.String("#pk = :pk AND #sk >= :since"),
		ExpressionAttributeNames: map[string]string{"#pk": AttrPK, "#sk": AttrSK},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": str(usePrefix + key), ":since": str(hourSK(since)),
		},
		ConsistentRead: aws.Bool(true),
	}
	var out []limits.Bucket
	// At most 24 small items: one page.
	page, err := l.api.Query(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("reading the usage of %s: %w", key, err)
	}
	for _, item := range page.Items {
		sk, _ := item[AttrSK].(*types.AttributeValueMemberS)
		n, _ := item[attrBytes].(*types.AttributeValueMemberN)
		if sk == nil || n == nil || len(sk.Value) < 3 {
			return nil, fmt.Errorf("reading the usage of %s: a malformed item", key)
		}
		hour, err1 := strconv.ParseInt(sk.Value[2:], 10, 64)
		bytes, err2 := strconv.ParseInt(n.Value, 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("reading the usage of %s: %w", key, err)
		}
		out = append(out, limits.Bucket{Hour: time.Unix(hour, 0).UTC(), Bytes: bytes})
	}
	return out, nil
}

func (l *Limits) Add(ctx context.Context, key string, hour time.Time, n, max int64) (bool, error) {
	in := &dynamodb.UpdateItemInput{
		Key:              itemKey(usePrefix+key, hourSK(hour)),
		UpdateExpression: aws.String("ADD #bytes :n SET #exp = :exp"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":n": num(n), ":exp": ttl(hour.Add(limits.Day + time.Hour)),
		},
	}
	if max >= 0 {
		in.ConditionExpression = aws.String("attribute_not_exists(#bytes) OR #bytes <= :room")
		in.ExpressionAttributeValues[":room"] = num(max - n)
		if max-n < 0 {
			return false, nil
		}
	}
	ok, err := l.update(ctx, in, attrBytes)
	if err != nil {
		return false, fmt.Errorf("counting bytes of %s: %w", key, err)
	}
	return ok, nil
}

func (l *Limits) Mark(ctx context.Context, key string, now time.Time, ttlFor time.Duration) (bool, error) {
	_, err := l.api.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(l.table),
		Item:                     map[string]types.AttributeValue{AttrPK: str(markPrefix + key), AttrSK: str("mark"), AttrTTL: ttl(now.Add(ttlFor))},
		ConditionExpression:      aws.String("attribute_not_exists(#pk) OR #exp <= :now"),
		ExpressionAttributeNames: map[string]string{"#pk": AttrPK, "#exp": AttrTTL},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now": ttl(now),
		},
	})
	if conditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("marking a charge: %w", err)
	}
	return true, nil
}

func (l *Limits) Marked(ctx context.Context, key string, now time.Time) (bool, error) {
	out, err := l.api.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(l.table), Key: itemKey(markPrefix+key, "mark"), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return false, fmt.Errorf("reading a charge mark: %w", err)
	}
	exp, ok := out.Item[AttrTTL].(*types.AttributeValueMemberN)
	if !ok {
		return false, nil
	}
	secs, err := strconv.ParseInt(exp.Value, 10, 64)
	return err == nil && secs > now.Unix(), nil
}

// update runs a conditional update naming attr and the TTL; false when
// the condition refused it.
func (l *Limits) update(ctx context.Context, in *dynamodb.UpdateItemInput, attr string) (bool, error) {
	in.TableName = aws.String(l.table)
	in.ExpressionAttributeNames = map[string]string{"#exp": AttrTTL, "#" + attr: attr}
	_, err := l.api.UpdateItem(ctx, in)
	if conditionFailed(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("updating a limit counter: %w", err)
	}
	return true, nil
}

func itemKey(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{AttrPK: str(pk), AttrSK: str(sk)}
}

// hourSK sorts hours as strings: fixed-width Unix seconds.
func hourSK(t time.Time) string { return fmt.Sprintf("h#%012d", t.Unix()) }

func str(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

// ttl is an expires_at value for a time that is never zero.
func ttl(t time.Time) types.AttributeValue {
	v, _ := ttlSeconds(t)
	return v
}
