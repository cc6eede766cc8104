// Package s3test runs versitygw, an S3-compatible server, for a test: on
// loopback, over plain HTTP or over TLS with a certificate made for the
// test, with its posix backend in the test's temp dir, and gives
// aws-sdk-go-v2 clients for it. versitygw checks signatures, part sizes and
// part ETags as S3 does, so the S3 adapter is tested against S3's rules,
// not a fake's.
package s3test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tarport/tarport/shared/testkit/daemon"
)

// Credentials and region of the server's root account, which the kit's
// clients sign with.
const (
	AccessKey = "test"
	SecretKey = "testtest"
	Region    = "us-east-1"
)

// healthPath answers 200 once the server is up, without a signature.
const healthPath = "/_health"

// Option changes how Start runs the server.
type Option func(*options)

type options struct {
	tls bool
}

// TLS serves HTTPS with a self-signed certificate for 127.0.0.1 made for
// the test. Over HTTPS the SDK streams bodies as aws-chunked with a
// trailing checksum, as it does against real S3; over HTTP it hashes them.
func TLS() Option { return func(o *options) { o.tls = true } }

// Server is one running versitygw.
type Server struct {
	d      *daemon.Daemon
	scheme string
	http   *http.Client
	pool   *x509.CertPool // nil over plain HTTP
	caFile string         // PEM of pool, for subprocesses
}

// Start runs versitygw for t and stops it when t ends. A missing versitygw
// skips t, or fails it under TARPORT_REQUIRE_TOOLS=1.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	bin := daemon.Binary(t, "versitygw")
	s, err := Launch(context.Background(), bin, t.TempDir(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Launch is Start without a testing.TB, for benchmarks and tools: it runs
// the versitygw binary bin with its posix backend (and certificate) under
// dir. The server lives until Stop or until ctx is done.
func Launch(ctx context.Context, bin, dir string, opts ...Option) (*Server, error) {
	var cfg options
	for _, o := range opts {
		o(&cfg)
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	s := &Server{scheme: "http", http: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}
	var tlsArgs []string
	if cfg.tls {
		certFile, keyFile, pool, err := writeCert(dir)
		if err != nil {
			return nil, fmt.Errorf("making a certificate for versitygw: %w", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		s.scheme, s.pool, s.caFile, s.http = "https", pool, certFile, &http.Client{Transport: tr}
		tlsArgs = []string{"--cert", certFile, "--key", keyFile}
	}
	d, err := daemon.Start(ctx, daemon.Spec{
		Name: "versitygw",
		Bin:  bin,
		Args: func(addr string) []string {
			args := []string{"--port", addr, "--access", AccessKey, "--secret", SecretKey, "--region", Region, "--health", healthPath}
			return append(append(args, tlsArgs...), "posix", root)
		},
		Ready: daemon.HTTPReady(s.http, s.scheme, healthPath, http.StatusOK),
	})
	if err != nil {
		s.http.CloseIdleConnections()
		return nil, fmt.Errorf("starting versitygw: %w", err)
	}
	s.d = d
	return s, nil
}

// Stop kills the server. Stopping twice is fine.
func (s *Server) Stop() {
	s.d.Stop()
	s.http.CloseIdleConnections()
}

// Endpoint is the server's URL, for AWS_ENDPOINT_URL_S3. It names the host
// by IP, so the SDK addresses buckets by path, not by virtual host.
func (s *Server) Endpoint() string { return s.scheme + "://" + s.d.Addr }

// Log is what the server printed so far, for failure messages.
func (s *Server) Log() string { return s.d.Log() }

// HTTPClient is a client that trusts the server: for presigned links.
func (s *Server) HTTPClient() *http.Client { return s.http }

// CertPool holds the certificate the server presents; nil over plain HTTP.
func (s *Server) CertPool() *x509.CertPool { return s.pool }

// Env is what a process needs in its environment to reach the server
// through the SDK's default configuration (AWS_CA_BUNDLE trusts the
// test's certificate over TLS).
func (s *Server) Env() []string {
	env := []string{
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint(),
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=" + Region,
	}
	if s.caFile != "" {
		env = append(env, "AWS_CA_BUNDLE="+s.caFile)
	}
	return env
}

// Client returns a client of the server, addressing buckets by path.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
		UsePathStyle: true,
		HTTPClient:   s.http,
	})
}

var bucketSeq atomic.Int64

// CreateBucket creates a bucket under a name unique to t and returns the
// name.
func (s *Server) CreateBucket(t testing.TB) string {
	t.Helper()
	name := bucketName(bucketSeq.Add(1), t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.NewBucket(ctx, name); err != nil {
		t.Fatal(err)
	}
	return name
}

// NewBucket is CreateBucket without a testing.TB: it creates the bucket
// name.
func (s *Server) NewBucket(ctx context.Context, name string) error {
	if _, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		return fmt.Errorf("creating bucket %s: %w\nversitygw output:\n%s", name, err, s.Log())
	}
	return nil
}

// Uploads lists the keys of the bucket's unfinished multipart uploads: a
// test's way to see that a failed upload was aborted.
func (s *Server) Uploads(t testing.TB, bucket string) []string { return Uploads(t, s.Client(), bucket) }

// Keys lists the bucket's objects.
func (s *Server) Keys(t testing.TB, bucket string) []string { return Keys(t, s.Client(), bucket) }

// Uploads lists the keys of a bucket's unfinished multipart uploads
// through any S3 API client.
func Uploads(t testing.TB, c *s3.Client, bucket string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	p := s3.NewListMultipartUploadsPaginator(c, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing multipart uploads of %s: %v", bucket, err)
		}
		for _, u := range out.Uploads {
			keys = append(keys, aws.ToString(u.Key))
		}
	}
	return keys
}

// Keys lists a bucket's objects through any S3 API client.
func Keys(t testing.TB, c *s3.Client, bucket string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("listing objects of %s: %v", bucket, err)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// bucketName keeps a test name within S3's bucket name rules: 3 to 63
// characters of [a-z0-9-], starting and ending with a letter or digit.
func bucketName(seq int64, testName string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		default:
			return '-'
		}
	}, testName)
	name = fmt.Sprintf("t%d-%s", seq, name)
	name = name[:min(len(name), 63)]
	return strings.TrimRight(name, "-")
}
