// Package dynalite runs npm dynalite, a DynamoDB-compatible server, for a
// test: on loopback, with its data in the test's temp dir, and gives an
// aws-sdk-go-v2 client for it. infra/dev/install-deps.sh installs dynalite
// into .tools/node; TARPORT_DYNALITE_CLI points at another cli.js.
package dynalite

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/tarport/tarport/shared/testkit/daemon"
)

// Credentials and region the kit's clients sign with; dynalite checks that
// requests are signed, not by whom.
const (
	AccessKey = "test"
	SecretKey = "testtest"
	Region    = "us-east-1"
)

// Server is one running dynalite.
type Server struct {
	d *daemon.Daemon
}

// Start runs dynalite for t and stops it when t ends. A missing node or
// dynalite skips t, or fails it under TARPORT_REQUIRE_TOOLS=1.
func Start(t testing.TB) *Server {
	t.Helper()
	node := daemon.Binary(t, "node", "nodejs")
	cli, err := FindCLI()
	if err != nil {
		if os.Getenv("TARPORT_REQUIRE_TOOLS") == "1" {
			t.Fatalf("%v; install it with: make test-deps", err)
		}
		t.Skipf("%v (install: make test-deps; TARPORT_REQUIRE_TOOLS=1 turns this skip into a failure)", err)
	}
	s, err := Launch(context.Background(), node, cli, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Launch is Start without a testing.TB, for benchmarks and tools: it runs
// dynalite's cli.js (FindCLI) under node with its data in dir. The server
// lives until Stop or until ctx is done.
func Launch(ctx context.Context, node, cli, dir string) (*Server, error) {
	d, err := daemon.Start(ctx, daemon.Spec{
		Name: "dynalite",
		Bin:  node,
		Args: func(addr string) []string {
			_, port, _ := net.SplitHostPort(addr)
			// --createTableMs 0: tables are ACTIVE at once, as tests want.
			return []string{cli, "--host", "127.0.0.1", "--port", port, "--path", dir, "--createTableMs", "0"}
		},
		Ready: func(ctx context.Context, addr string) error {
			_, err := newClient("http://"+addr).ListTables(ctx, &dynamodb.ListTablesInput{})
			return err
		},
	})
	if err != nil {
		return nil, fmt.Errorf("starting dynalite: %w", err)
	}
	return &Server{d: d}, nil
}

// Stop kills the server. Stopping twice is fine.
func (s *Server) Stop() { s.d.Stop() }

// Endpoint is the server's URL, for AWS_ENDPOINT_URL_DYNAMODB.
func (s *Server) Endpoint() string { return "http://" + s.d.Addr }

// Env is what a process needs in its environment to reach the server
// through the SDK's default configuration.
func (s *Server) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL_DYNAMODB=" + s.Endpoint(),
		"AWS_ACCESS_KEY_ID=" + AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + SecretKey,
		"AWS_REGION=" + Region,
	}
}

// Client returns a client of the server.
func (s *Server) Client() *dynamodb.Client { return newClient(s.Endpoint()) }

// CreateTable creates a table from in (as the product's schema gives it),
// under a name unique to t, and returns the name.
func (s *Server) CreateTable(t testing.TB, in *dynamodb.CreateTableInput) string {
	t.Helper()
	name := fmt.Sprintf("t%d-%s", tableSeq.Add(1), sanitize(t.Name()))
	if err := s.NewTable(context.Background(), name, in); err != nil {
		t.Fatal(err)
	}
	return name
}

// NewTable is CreateTable without a testing.TB: it creates the table name
// from in and waits until it is ACTIVE.
func (s *Server) NewTable(ctx context.Context, name string, in *dynamodb.CreateTableInput) error {
	in.TableName = aws.String(name)
	if _, err := s.Client().CreateTable(ctx, in); err != nil {
		return fmt.Errorf("creating table %s: %w\ndynalite output:\n%s", name, err, s.d.Log())
	}
	// Even with --createTableMs 0 the table turns ACTIVE a tick later.
	w := dynamodb.NewTableExistsWaiter(s.Client(), func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 10*time.Millisecond, 100*time.Millisecond
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 10*time.Second); err != nil {
		return fmt.Errorf("waiting for table %s: %w", name, err)
	}
	return nil
}

func newClient(endpoint string) *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		Region:       Region,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
}

// FindCLI looks for dynalite's cli.js: $TARPORT_DYNALITE_CLI, then the
// repository's .tools/node.
func FindCLI() (string, error) {
	if p := os.Getenv("TARPORT_DYNALITE_CLI"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("TARPORT_DYNALITE_CLI=%s: %w", p, err)
		}
		return p, nil
	}
	root, err := daemon.RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".tools", "node", "node_modules", "dynalite", "cli.js")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("dynalite: not at %s and $TARPORT_DYNALITE_CLI unset: %w", p, errors.Join(daemon.ErrToolNotFound, err))
	}
	return p, nil
}
