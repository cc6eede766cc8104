package dynamo

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/tarport/tarport/shared/discovery"
	"github.com/tarport/tarport/shared/discovery/cachetest"
	"github.com/tarport/tarport/shared/dockerhub"
	"github.com/tarport/tarport/shared/testkit/dynalite"
	"github.com/tarport/tarport/shared/testkit/fakehub"
)

// newCache is a cache in a fresh table of db, reading time from now.
func newCache(t *testing.T, db *dynalite.Server, now func() time.Time) *Cache {
	t.Helper()
	c := NewCache(db.Client(), db.CreateTable(t, Schema()))
	c.now = now
	return c
}

// TestCacheContract: the behaviour every discovery cache shares, against
// a real DynamoDB API.
func TestCacheContract(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	cachetest.Run(t, func(t *testing.T, now func() time.Time) discovery.Cache {
		return newCache(t, db, now)
	})
}

// TestCacheItemShape: the TTL attribute DynamoDB deletes by is DeleteAt
// rounded up to a whole second (never before the service lets go of the
// item), and an entry that is never deleted has none.
func TestCacheItemShape(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	c := newCache(t, db, time.Now)
	ctx := context.Background()
	at := time.Unix(1_900_000_000, 1).UTC()
	if err := c.Set(ctx, "k", discovery.Entry{Value: []byte("x"), StoredAt: at, ExpiresAt: at, DeleteAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "forever", discovery.Entry{Value: []byte("x"), StoredAt: at, ExpiresAt: at}); err != nil {
		t.Fatal(err)
	}
	item := rawItem(t, db, c.table, "cache#k")
	if n, ok := item[AttrTTL].(*types.AttributeValueMemberN); !ok || n.Value != "1900000001" {
		t.Fatalf("%s = %#v, want N 1900000001", AttrTTL, item[AttrTTL])
	}
	if _, ok := rawItem(t, db, c.table, "cache#forever")[AttrTTL]; ok {
		t.Fatalf("an entry without DeleteAt has a TTL attribute")
	}
}

// TestCacheHashesLongKeys: a key over the limit is stored under its hash,
// within DynamoDB's 2048-byte partition key limit.
func TestCacheHashesLongKeys(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	c := newCache(t, db, time.Now)
	key := "v1:details:" + strings.Repeat("x", 2100) // over DynamoDB's limit unhashed
	e := discovery.Entry{Value: []byte("v"), StoredAt: cachetest.T0}
	if err := c.Set(context.Background(), key, e); err != nil {
		t.Fatal(err)
	}
	pk := cacheKey(key)[AttrPK].(*types.AttributeValueMemberS).Value
	if len(pk) > 100 || !strings.HasPrefix(pk, "cache#sha256:") {
		t.Fatalf("stored under %q", pk)
	}
	if rawItem(t, db, c.table, pk) == nil {
		t.Fatal("no item under the hashed key")
	}
}

// TestCacheRefusesOversizedValues: a value over the item limit is an
// error before any call, not a failed write DynamoDB reports late.
func TestCacheRefusesOversizedValues(t *testing.T) {
	t.Parallel()
	c := NewCache(nil, "never-called") // a call would panic on the nil API
	err := c.Set(context.Background(), "k", discovery.Entry{Value: make([]byte, maxItemBytes+1)})
	if err == nil || !strings.Contains(err.Error(), "item limit") {
		t.Fatalf("Set of an oversized value: %v", err)
	}
}

// TestCacheRejectsForeignItems: an item without the cache's attributes is
// an error, not an empty value handed to the service.
func TestCacheRejectsForeignItems(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	c := newCache(t, db, time.Now)
	_, err := db.Client().PutItem(context.Background(), &dynamodb.PutItemInput{
		TableName: aws.String(c.table),
		Item:      cacheKey("k"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, found, err := c.Get(context.Background(), "k"); err == nil || found {
		t.Fatalf("Get of a foreign item: found=%v err=%v", found, err)
	}
}

// TestCacheErrorsSayWhat: a missing table is an error naming the key.
func TestCacheErrorsSayWhat(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	c := NewCache(db.Client(), "no-such-table")
	if _, _, err := c.Get(context.Background(), "v1:popular:50"); err == nil || !strings.Contains(err.Error(), "v1:popular:50") {
		t.Fatalf("Get on a missing table: %v", err)
	}
	if err := c.Set(context.Background(), "v1:popular:50", discovery.Entry{}); err == nil {
		t.Fatal("Set on a missing table succeeded")
	}
}

// TestDiscoveryOnDynamoDB: the discovery service over this cache, with
// the client configured the way the Lambdas are (the SDK's defaults and
// AWS_ENDPOINT_URL_DYNAMODB): 100 concurrent identical searches cost
// Docker Hub one call, and a second service (another Lambda instance)
// answers from the table without calling it.
func TestDiscoveryOnDynamoDB(t *testing.T) {
	db := dynalite.Start(t)
	table := db.CreateTable(t, Schema())
	for _, kv := range db.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	hub := fakehub.New(t, fakehub.FixturesDir(t))
	hub.Delay(100 * time.Millisecond) // so the searches overlap
	newService := func() *discovery.Service {
		return discovery.New(dockerhub.New(hub.URL, hub.Client()), NewCache(dynamodb.NewFromConfig(cfg), table), discovery.Config{})
	}

	first := newService()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			if _, err := first.Search(context.Background(), "nginx", 1, 10); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := hub.TotalHits(); n != 1 {
		t.Fatalf("100 concurrent searches made %d upstream calls, want 1", n)
	}

	res, err := newService().Search(context.Background(), "nginx", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Cached || len(res.Value.Results) == 0 {
		t.Fatalf("second instance: cached=%v, %d results", res.Cached, len(res.Value.Results))
	}
	if n := hub.TotalHits(); n != 1 {
		t.Fatalf("a cached search called upstream (%d calls)", n)
	}
}

func rawItem(t *testing.T, db *dynalite.Server, table, pk string) map[string]types.AttributeValue {
	t.Helper()
	out, err := db.Client().GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{AttrPK: &types.AttributeValueMemberS{Value: pk}, AttrSK: &types.AttributeValueMemberS{Value: cacheSK}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Item
}
