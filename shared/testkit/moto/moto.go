// Package moto runs moto_server, an emulator of AWS's APIs (CloudFormation,
// SQS, DynamoDB, S3, IAM, SNS, CloudWatch, Secrets Manager), for a test, on
// loopback, and gives aws-sdk-go-v2 configuration for it. make test-deps
// installs moto[server] where the machine lacks it (.tools/py).
//
// moto is the stand-in for the AWS APIs nothing else here speaks, and a
// second opinion on the ones dynalite and versitygw speak: a behaviour that
// rests on one stand-in's quirk shows as a failure on the other.
package moto

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/s3test"
)

// Credentials and region the kit's clients sign with.
const (
	AccessKey = "test"
	SecretKey = "test"
	Region    = "us-east-1"
	// Account is moto's default account id.
	Account = "123456789012"
)

// Server is one running moto_server.
type Server struct {
	URL string
	d   *daemon.Daemon
}

// Start runs moto_server for t and stops it when t ends. A missing moto
// skips t, or fails it under TARPORT_REQUIRE_TOOLS=1.
func Start(t testing.TB, env ...string) *Server {
	t.Helper()
	s, err := Launch(context.Background(), daemon.Binary(t, "moto_server"), env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("moto_server output (tail):\n%s", tail(s.d.Log(), 3000))
		}
		s.Stop()
	})
	return s
}

// Launch is Start without a testing.TB, for benchmarks and tools: it runs
// bin (moto_server) with env (nil: the caller's) until Stop or until ctx
// is done.
func Launch(ctx context.Context, bin string, env ...string) (*Server, error) {
	if len(env) == 0 {
		env = nil
	}
	d, err := daemon.Start(ctx, daemon.Spec{
		Name: "moto_server",
		Bin:  bin,
		Args: func(addr string) []string {
			host, port, _ := net.SplitHostPort(addr)
			return []string{"-H", host, "-p", port}
		},
		Env:   env,
		Ready: daemon.HTTPReady(nil, "http", "/moto-api/"),
	})
	if err != nil {
		return nil, fmt.Errorf("starting moto_server: %w", err)
	}
	return &Server{URL: "http://" + d.Addr, d: d}, nil
}

// Stop ends the server.
func (s *Server) Stop() { s.d.Stop() }

// Config is an AWS configuration whose clients all reach this server.
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
		BaseEndpoint: aws.String(s.URL),
	}
}

// Env points the AWS SDKs (and the aws CLI) of a child process here.
func (s *Server) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL=" + s.URL,
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=" + Region,
		"AWS_DEFAULT_REGION=" + Region,
	}
}

// Python returns a python that imports samtranslator (the SAM transform):
// make test-deps' .tools/py first, then python3 on PATH.
func Python(t testing.TB) string {
	t.Helper()
	var candidates []string
	if root, err := daemon.RepoRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, ".tools", "py", "bin", "python"))
	}
	candidates = append(candidates, "python3")
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil && exec.Command(p, "-c", "import samtranslator").Run() == nil {
			return p
		}
	}
	// daemon.Binary decides between skip and failure, and says how to install.
	daemon.Binary(t, "python-with-samtranslator")
	return ""
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return fmt.Sprint("...", s[len(s)-n:])
}

var tableSeq atomic.Int64

// CreateTable creates a fresh table from in (its name is made up) in this
// server's DynamoDB and returns its name.
func (s *Server) CreateTable(t testing.TB, in *dynamodb.CreateTableInput) string {
	t.Helper()
	in.TableName = aws.String(fmt.Sprintf("t%d", tableSeq.Add(1)))
	if _, err := s.DynamoDB().CreateTable(t.Context(), in); err != nil {
		t.Fatalf("creating table: %v", err)
	}
	return *in.TableName
}

// DynamoDB is a client of this server's DynamoDB.
func (s *Server) DynamoDB() *dynamodb.Client { return dynamodb.NewFromConfig(s.Config()) }

var bucketSeq atomic.Int64

// S3 is a client of this server's S3, addressing buckets by path.
func (s *Server) S3() *s3.Client {
	return s3.NewFromConfig(s.Config(), func(o *s3.Options) { o.UsePathStyle = true })
}

// CreateBucket creates a fresh bucket and returns its name.
func (s *Server) CreateBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("bucket-%d", bucketSeq.Add(1))
	if _, err := s.S3().CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("creating bucket: %v", err)
	}
	return name
}

// Client is S3, for test code written against s3test.Server.
func (s *Server) Client() *s3.Client { return s.S3() }

// Uploads lists the bucket's unfinished multipart uploads' keys.
func (s *Server) Uploads(t testing.TB, bucket string) []string {
	return s3test.Uploads(t, s.S3(), bucket)
}

// Keys lists the bucket's objects.
func (s *Server) Keys(t testing.TB, bucket string) []string { return s3test.Keys(t, s.S3(), bucket) }

// HTTPClient is the client that reaches the server (plain HTTP).
func (s *Server) HTTPClient() *http.Client { return http.DefaultClient }

// Log is the server's output.
func (s *Server) Log() string { return s.d.Log() }

// SQS is a client of this server's SQS.
func (s *Server) SQS() *sqs.Client { return sqs.NewFromConfig(s.Config()) }

// CreateQueue creates queue name with attrs and returns its URL.
func (s *Server) CreateQueue(t testing.TB, name string, attrs map[string]string) string {
	t.Helper()
	out, err := s.SQS().CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		t.Fatalf("creating queue %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// QueueARN is the ARN moto gives queue name.
func QueueARN(name string) string { return "arn:aws:sqs:" + Region + ":" + Account + ":" + name }
