package s3store

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/download/objectstest"
	"github.com/tarport/tarport/shared/registry"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/moto"
	"github.com/tarport/tarport/shared/testkit/s3test"
)

// The registry client caches manifests in the store; the assertion lives
// here so the adapter itself does not import another adapter.
var _ registry.MetaCache = (*Store)(nil)

// testPartSize is S3's smallest part: multipart uploads with little data.
const testPartSize = 5 << 20

// server is a running S3 API: versitygw (s3test) or moto.
type server interface {
	CreateBucket(t testing.TB) string
	Client() *s3.Client
	HTTPClient() *http.Client
	Uploads(t testing.TB, bucket string) []string
	Keys(t testing.TB, bucket string) []string
	Log() string
}

// env is a store on a fresh bucket of a running S3 API.
type env struct {
	srv    server
	bucket string
	store  *Store
}

// newEnv makes a bucket on srv and a store of it; wrap, when set, stands
// between the store and the server (to inject faults or watch calls).
func newEnv(t *testing.T, srv server, opts Options, wrap func(Client) Client) env {
	t.Helper()
	bucket := srv.CreateBucket(t)
	c := srv.Client()
	var client Client = c
	if wrap != nil {
		client = wrap(c)
	}
	return env{srv: srv, bucket: bucket, store: New(client, s3.NewPresignClient(c), bucket, opts)}
}

// eachServer runs test against versitygw over plain HTTP (the SDK hashes
// bodies) and over TLS (the SDK streams aws-chunked with a trailing CRC32,
// as against real S3), and against moto's S3 (a second opinion: no
// behaviour may rest on one stand-in's quirks), each its own server.
func eachServer(t *testing.T, test func(t *testing.T, srv server)) {
	t.Helper()
	for _, tt := range []struct {
		name  string
		start func(t *testing.T) server
	}{
		{"http", func(t *testing.T) server { return s3test.Start(t) }},
		{"https", func(t *testing.T) server { return s3test.Start(t, s3test.TLS()) }},
		{"moto", func(t *testing.T) server { return moto.Start(t) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			test(t, tt.start(t))
		})
	}
}

func randomBytes(seed uint64, n int) []byte { return objectstest.RandomBytes(seed, n) }

func readAll(t *testing.T, s *Store, key string) []byte { return objectstest.ReadAll(t, s, key) }

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// assertSame compares an object's bytes with what they must be.
func assertSame(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes, want %d; first difference at %d", what, len(got), len(want), firstDiff(got, want))
	}
}

// assertAbsent: key is not an object and no multipart upload of it is
// left open: nothing unverified was published, nothing half-done kept.
func assertAbsent(t *testing.T, e env, key string) {
	t.Helper()
	_, err := e.store.Size(context.Background(), key)
	if tarport.ErrorCode(err) != tarport.CodeNotFound {
		t.Errorf("Size(%s) after a failure = %v, want a not_found error", key, err)
	}
	if ups := e.srv.Uploads(t, e.bucket); slices.Contains(ups, key) {
		t.Errorf("multipart upload of %s left open (open: %q)", key, ups)
	}
}

func TestMissingObject(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		e := newEnv(t, srv, Options{}, nil)
		ctx := context.Background()
		_, err := e.store.Size(ctx, "entries/sha256/nope")
		if tarport.ErrorCode(err) != tarport.CodeNotFound || !strings.Contains(err.Error(), "entries/sha256/nope") {
			t.Errorf("Size of a missing object = %v, want not_found naming the key", err)
		}
		if rc, err := e.store.Get(ctx, "tars/nope.tar"); tarport.ErrorCode(err) != tarport.CodeNotFound {
			if rc != nil {
				rc.Close()
			}
			t.Errorf("Get of a missing object = %v, want not_found", err)
		}
		if _, err := e.store.GetMeta(ctx, testOrigin, digest.FromString("nope")); tarport.ErrorCode(err) != tarport.CodeNotFound {
			t.Errorf("GetMeta of a missing digest = %v, want not_found", err)
		}
	})
}

// TestMeta: manifests and configs round trip under the keys both stores
// use (download.MetaKey), one namespace per origin.
func TestMeta(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		e := newEnv(t, srv, Options{}, nil)
		ctx := context.Background()
		blobs := [][]byte{[]byte(`{"schemaVersion":2}`), {}, randomBytes(7, 100_000)}
		var wantKeys []string
		for _, b := range blobs {
			d := digest.FromBytes(b)
			if err := e.store.PutMeta(ctx, testOrigin, d, b); err != nil {
				t.Fatalf("PutMeta(%s): %v", d, err)
			}
			if err := e.store.PutMeta(ctx, testOrigin, d, b); err != nil {
				t.Fatalf("PutMeta(%s) again: %v", d, err)
			}
			got, err := e.store.GetMeta(ctx, testOrigin, d)
			if err != nil {
				t.Fatalf("GetMeta(%s): %v", d, err)
			}
			assertSame(t, "GetMeta", got, b)
			wantKeys = append(wantKeys, download.MetaKey(testOrigin, d))
			// What one registry served is not read for another.
			if _, err := e.store.GetMeta(ctx, tarport.RegistryOrigin("other.test"), d); tarport.ErrorCode(err) != tarport.CodeNotFound {
				t.Errorf("GetMeta(%s) under another origin = %v, want not_found", d, err)
			}
		}
		keys := srv.Keys(t, e.bucket)
		slices.Sort(keys)
		slices.Sort(wantKeys)
		if !slices.Equal(keys, wantKeys) {
			t.Errorf("keys = %q, want %q (dirstore's layout)", keys, wantKeys)
		}
	})
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want Options
	}{
		{Options{}, Options{PartSize: DefaultPartSize, PartsInFlight: DefaultPartsInFlight, CopyConcurrency: DefaultCopyConcurrency}},
		{Options{PartSize: 1, PartsInFlight: 1, CopyConcurrency: 2}, Options{PartSize: 5 << 20, PartsInFlight: 1, CopyConcurrency: 2}},
		{Options{PartSize: 10 << 30, PartsInFlight: -1}, Options{PartSize: 5 << 30, PartsInFlight: DefaultPartsInFlight, CopyConcurrency: DefaultCopyConcurrency}},
	}
	for _, tt := range tests {
		if got := New(nil, nil, "b", tt.in).opts; got != tt.want {
			t.Errorf("New(%+v) options = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

var errBroken = errors.New("broken on purpose")

// TestObjectsContract: the object store behaviour every store has, on
// each S3 stand-in.
func TestObjectsContract(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		objectstest.Run(t, func(t *testing.T) download.Objects { return newEnv(t, srv, Options{}, nil).store })
	})
}
