package dynamo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tarport/tarport/shared/discovery"
)

// CacheAPI is what the cache needs of a DynamoDB client.
type CacheAPI interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
}

// Cache items: pk "cache#<key>", sk "cache", the value in "v", the entry's
// times as Unix nanoseconds, and expires_at (the TTL, whole seconds, from
// DeleteAt) so DynamoDB drops the item some time after the service would.
const (
	cachePrefix = "cache#"
	cacheSK     = "cache"
	attrValue   = "v"
	attrStored  = "stored_ns"
	attrFresh   = "fresh_ns"
	attrDelete  = "delete_ns"

	// maxItemBytes leaves room for keys and attributes under DynamoDB's
	// 400 KB item limit; the service already keeps values under 350 KiB.
	maxItemBytes = 390_000
	// maxKeyBytes bounds a partition key (DynamoDB allows 2048 bytes);
	// longer keys are stored by their hash.
	maxKeyBytes = 1024
)

// Cache is the discovery cache on DynamoDB.
type Cache struct {
	api   CacheAPI
	table string
	now   func() time.Time
}

var _ discovery.Cache = (*Cache)(nil)

// NewCache returns a cache in table.
func NewCache(api CacheAPI, table string) *Cache {
	return &Cache{api: api, table: table, now: time.Now}
}

// Get returns the entry under key, expired or not, unless it is past its
// DeleteAt: DynamoDB may not have deleted it yet, but it is gone to us.
// Reads are eventually consistent: a cache can be a second behind.
func (c *Cache) Get(ctx context.Context, key string) (discovery.Entry, bool, error) {
	out, err := c.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(c.table),
		Key:       cacheKey(key),
	})
	if err != nil {
		return discovery.Entry{}, false, fmt.Errorf("reading cache entry %s: %w", short(key), err)
	}
	if out.Item == nil {
		return discovery.Entry{}, false, nil
	}
	e, err := decodeEntry(out.Item)
	if err != nil {
		return discovery.Entry{}, false, fmt.Errorf("reading cache entry %s: %w", short(key), err)
	}
	if !e.DeleteAt.IsZero() && !c.now().Before(e.DeleteAt) {
		return discovery.Entry{}, false, nil
	}
	return e, true, nil
}

// Set stores e under key, replacing what was there.
func (c *Cache) Set(ctx context.Context, key string, e discovery.Entry) error {
	if len(e.Value) > maxItemBytes {
		return fmt.Errorf("writing cache entry %s: value of %d bytes is over DynamoDB's item limit", short(key), len(e.Value))
	}
	item := cacheKey(key)
	item[attrValue] = &types.AttributeValueMemberB{Value: e.Value}
	item[attrStored] = nanos(e.StoredAt)
	item[attrFresh] = nanos(e.ExpiresAt)
	item[attrDelete] = nanos(e.DeleteAt)
	if !e.DeleteAt.IsZero() {
		// Round up: the TTL must not drop an item the service still serves.
		sec := e.DeleteAt.Unix()
		if e.DeleteAt.Nanosecond() > 0 {
			sec++
		}
		item[AttrTTL] = &types.AttributeValueMemberN{Value: strconv.FormatInt(sec, 10)}
	}
	_, err := c.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(c.table), Item: item})
	if err != nil {
		return fmt.Errorf("writing cache entry %s: %w", short(key), err)
	}
	return nil
}

func cacheKey(key string) map[string]types.AttributeValue {
	if len(key) > maxKeyBytes {
		sum := sha256.Sum256([]byte(key))
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	return map[string]types.AttributeValue{
		AttrPK: &types.AttributeValueMemberS{Value: cachePrefix + key},
		AttrSK: &types.AttributeValueMemberS{Value: cacheSK},
	}
}

func decodeEntry(item map[string]types.AttributeValue) (discovery.Entry, error) {
	v, ok := item[attrValue].(*types.AttributeValueMemberB)
	if !ok {
		return discovery.Entry{}, fmt.Errorf("item has no binary %q attribute", attrValue)
	}
	var e discovery.Entry
	e.Value = v.Value
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{attrStored, &e.StoredAt}, {attrFresh, &e.ExpiresAt}, {attrDelete, &e.DeleteAt}} {
		t, err := fromNanos(item[f.name])
		if err != nil {
			return discovery.Entry{}, fmt.Errorf("attribute %s: %w", f.name, err)
		}
		*f.dst = t
	}
	return e, nil
}

// nanos encodes t as Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) types.AttributeValue {
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func fromNanos(av types.AttributeValue) (time.Time, error) {
	n, ok := av.(*types.AttributeValueMemberN)
	if !ok {
		return time.Time{}, fmt.Errorf("missing or not a number")
	}
	v, err := strconv.ParseInt(n.Value, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	if v == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, v).UTC(), nil
}

// short keeps a key readable in an error message.
func short(key string) string {
	if len(key) <= 120 {
		return key
	}
	return key[:120] + "…"
}
