package s3test

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestBucketName(t *testing.T) {
	t.Parallel()
	valid := regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)
	for _, name := range []string{
		"TestPut",
		"TestPut/multipart_over_https",
		"Test" + strings.Repeat("Long_Name/", 20),
		"TestEndsWith" + strings.Repeat("-", 70),
		"Ünïcode ✓",
	} {
		got := bucketName(12345, name)
		if !valid.MatchString(got) {
			t.Errorf("bucketName(%q) = %q: not a valid S3 bucket name", name, got)
		}
	}
	if bucketName(1, "TestX") == bucketName(2, "TestX") {
		t.Error("two buckets of one test share a name")
	}
}

// TestServer drives each flavour of the server through the kit's client:
// a bucket, an object written and read back, a presigned GET fetched with
// the kit's HTTP client.
func TestServer(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts []Option
	}{
		{"http", nil},
		{"https", []Option{TLS()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			srv := Start(t, tt.opts...)
			if want := tt.name + "://127.0.0.1:"; !strings.HasPrefix(srv.Endpoint(), want) {
				t.Fatalf("Endpoint() = %q, want it to start with %q", srv.Endpoint(), want)
			}
			if (srv.CertPool() != nil) != (tt.name == "https") {
				t.Errorf("CertPool() = %v over %s", srv.CertPool(), tt.name)
			}
			bucket := srv.CreateBucket(t)
			c := srv.Client()
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("a/b"), Body: strings.NewReader("hello")}); err != nil {
				t.Fatalf("PutObject: %v\n%s", err, srv.Log())
			}
			if keys := srv.Keys(t, bucket); !slices.Equal(keys, []string{"a/b"}) {
				t.Errorf("Keys = %q, want [a/b]", keys)
			}
			up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("pending")})
			if err != nil {
				t.Fatalf("CreateMultipartUpload: %v", err)
			}
			if keys := srv.Uploads(t, bucket); !slices.Equal(keys, []string{"pending"}) {
				t.Errorf("Uploads = %q, want [pending]", keys)
			}
			if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("pending"), UploadId: up.UploadId}); err != nil {
				t.Fatalf("AbortMultipartUpload: %v", err)
			}
			if keys := srv.Uploads(t, bucket); len(keys) != 0 {
				t.Errorf("Uploads after abort = %q, want none", keys)
			}

			req, err := s3.NewPresignClient(c).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("a/b")},
				s3.WithPresignExpires(time.Minute))
			if err != nil {
				t.Fatalf("PresignGetObject: %v", err)
			}
			resp, err := srv.HTTPClient().Get(req.URL)
			if err != nil {
				t.Fatalf("GET presigned: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "hello" {
				t.Fatalf("GET presigned: %s %q, want 200 hello", resp.Status, body)
			}
			if tt.name == "https" {
				if _, err := http.Get(srv.Endpoint() + healthPath); err == nil {
					t.Error("a client without the test's certificate trusted the server")
				}
			}
		})
	}
}

// TestEnv reaches the server the way a subprocess does: the SDK's default
// configuration from Env alone. t.Setenv rules out t.Parallel here.
func TestEnv(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []Option
	}{
		{"http", nil},
		{"https", []Option{TLS()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := Start(t, tt.opts...)
			bucket := srv.CreateBucket(t)
			for _, kv := range srv.Env() {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
			t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
			ctx := context.Background()
			cfg, err := config.LoadDefaultConfig(ctx)
			if err != nil {
				t.Fatalf("LoadDefaultConfig: %v", err)
			}
			c := s3.NewFromConfig(cfg)
			if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k"), Body: strings.NewReader("x")}); err != nil {
				t.Fatalf("PutObject with the SDK's default configuration: %v", err)
			}
			if keys := srv.Keys(t, bucket); !slices.Equal(keys, []string{"k"}) {
				t.Errorf("Keys = %q, want [k]", keys)
			}
		})
	}
}
