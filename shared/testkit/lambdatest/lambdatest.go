// Package lambdatest builds a function the way `sam build` does (the
// Makefile's build-<LogicalId> target) and runs it under the AWS Lambda
// Runtime Interface Emulator, so a test invokes the real bootstrap
// through the real Runtime API.
package lambdatest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tarport/tarport/shared/testkit/daemon"
)

var (
	buildMu sync.Mutex
	builds  = map[string]string{} // logical id -> bootstrap, once per test binary
	buildTo string
)

// Build runs `make build-<logicalID>` as SAM's makefile builder does, for
// this machine's architecture (SAM builds arm64; the emulator runs what
// the host runs), and returns the bootstrap's path. Each function is built
// once per test binary.
func Build(t testing.TB, logicalID string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := builds[logicalID]; ok {
		return p
	}
	if buildTo == "" {
		// Not t.TempDir: the build outlives the test that made it.
		var err error
		if buildTo, err = os.MkdirTemp("", "tarport-lambda-build-"); err != nil {
			t.Fatal(err)
		}
	}
	p, err := Make(context.Background(), logicalID, filepath.Join(buildTo, logicalID), runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	builds[logicalID] = p
	return p
}

// Make is Build without a testing.TB and without its once-per-binary
// cache: it runs `make build-<logicalID>` with ARTIFACTS_DIR=dir and
// returns the bootstrap's path. An empty goarch keeps the Makefile's
// LAMBDA_GOARCH, the architecture `sam build` builds (arm64).
func Make(ctx context.Context, logicalID, dir, goarch string) (string, error) {
	root, err := daemon.RepoRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	args := []string{"--no-print-directory", "-C", root, "build-" + logicalID, "ARTIFACTS_DIR=" + dir}
	if goarch != "" {
		args = append(args, "LAMBDA_GOARCH="+goarch)
	}
	out, err := exec.CommandContext(ctx, "make", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("make build-%s: %v\n%s", logicalID, err, out)
	}
	p := filepath.Join(dir, "bootstrap")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("make build-%s wrote no bootstrap: %v\n%s", logicalID, err, out)
	}
	return p, nil
}

// Function is one function running under the emulator.
type Function struct {
	d      *daemon.Daemon
	client *http.Client
}

// Options for Start.
type Options struct {
	// Env is the function's configuration (KEY=value); the emulator's own
	// variables are added.
	Env []string
	// Timeout is the function's timeout (default 60 s).
	Timeout time.Duration
	// Name is AWS_LAMBDA_FUNCTION_NAME (default "function").
	Name string
}

// Start runs bootstrap under aws-lambda-rie for t and stops it when t ends.
// A missing emulator skips t, or fails it under TARPORT_REQUIRE_TOOLS=1.
func Start(t testing.TB, bootstrap string, opts Options) *Function {
	t.Helper()
	rie := daemon.Binary(t, "aws-lambda-rie")
	f, err := Launch(context.Background(), rie, bootstrap, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	return f
}

// Launch is Start without a testing.TB.
func Launch(ctx context.Context, rie, bootstrap string, opts Options) (*Function, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 60 * time.Second
	}
	if opts.Name == "" {
		opts.Name = "function"
	}
	// The emulator's Runtime API listens on a fixed port unless told
	// otherwise: each function gets its own.
	apiAddr, err := daemon.FreeAddr()
	if err != nil {
		return nil, err
	}
	env := append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"TMPDIR=" + os.TempDir(),
		"AWS_LAMBDA_FUNCTION_NAME=" + opts.Name,
		"AWS_LAMBDA_FUNCTION_TIMEOUT=" + strconv.Itoa(int(opts.Timeout/time.Second)),
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024",
		"LOG_LEVEL=warn",
	}, opts.Env...)
	d, err := daemon.Start(ctx, daemon.Spec{
		Name: "aws-lambda-rie " + opts.Name,
		Bin:  rie,
		Args: func(addr string) []string {
			return []string{"--runtime-interface-emulator-address", addr, "--runtime-api-address", apiAddr, bootstrap}
		},
		Env:       env,
		Dir:       filepath.Dir(bootstrap),
		KillGroup: true,
		Ready: func(ctx context.Context, addr string) error {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
			}
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	return &Function{d: d, client: &http.Client{Timeout: opts.Timeout + 30*time.Second}}, nil
}

// Stop kills the emulator and the function with it (a crashed worker).
func (f *Function) Stop() { f.d.Stop() }

// Log is what the emulator and the function printed.
func (f *Function) Log() string { return f.d.Log() }

// Pid is the emulator's process id; the function's bootstrap runs as its
// child once the first invocation has started it (daemon.Descendants).
func (f *Function) Pid() int { return f.d.Pid() }

// FunctionError is an invocation the function itself failed (an error
// returned by the handler, or a crash).
type FunctionError struct {
	Type, Message string
}

func (e *FunctionError) Error() string {
	return fmt.Sprintf("function error %s: %s", e.Type, e.Message)
}

// Invoke sends event (marshaled to JSON) as one synchronous invocation and
// decodes the function's result into out (if not nil).
func (f *Function) Invoke(ctx context.Context, event, out any) error {
	body, err := json.Marshal(event)
	if err != nil {
		return fmt.Errorf("encoding event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+f.d.Addr+"/2015-03-31/functions/function/invocations", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("invoking: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading the invocation's result: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("invoking: %s: %s", resp.Status, strings.TrimSpace(string(raw)))
	}
	var fe struct {
		Type    string `json:"errorType"`
		Message string `json:"errorMessage"`
	}
	if json.Unmarshal(raw, &fe) == nil && fe.Type != "" {
		return &FunctionError{Type: fe.Type, Message: fe.Message}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("decoding the result %.200q: %w", raw, err)
		}
	}
	return nil
}

// HTTP plays API Gateway's HTTP API: one payload 2.0 event for method and
// target ("/api/search?q=nginx") with a JSON body and any more headers
// ("Authorization: Basic ..."), from a fixed client address, and the
// function's answer.
func (f *Function) HTTP(ctx context.Context, method, target, body string, headers ...string) (events.APIGatewayV2HTTPResponse, error) {
	path, query, _ := strings.Cut(target, "?")
	ev := events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RouteKey:       "$default",
		RawPath:        path,
		RawQueryString: query,
		Headers:        map[string]string{"content-type": "application/json", "host": "api.test", "x-forwarded-proto": "https"},
		Body:           body,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			DomainName: "api.test",
			HTTP:       events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: method, Path: path, SourceIP: "198.51.100.7"},
		},
	}
	for _, h := range headers {
		// "Name: value"; API Gateway hands headers over in lower case.
		name, value, _ := strings.Cut(h, ":")
		ev.Headers[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
	}
	var res events.APIGatewayV2HTTPResponse
	err := f.Invoke(ctx, ev, &res)
	return res, err
}
