package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/infra/local/app"
	"github.com/tarport/tarport/shared/settings"
	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/regtest"
)

// server is a running local tarport for one test.
type server struct {
	*httptest.Server
	app     *app.App
	dataDir string
	logs    *daemon.SyncBuffer
}

func startServer(t *testing.T, env map[string]string) *server {
	t.Helper()
	dataDir := t.TempDir()
	return startServerAt(t, dataDir, env)
}

func startServerAt(t *testing.T, dataDir string, env map[string]string) *server {
	t.Helper()
	// The listener first: its address is the public address links use.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := settings.Parse(func(k string) string {
		switch {
		case k == "TARPORT_DATA_DIR":
			return dataDir
		case k == "TARPORT_WARM_EVERY" && env[k] == "":
			return "0" // tests warm explicitly
		case k == "TARPORT_PUBLIC_URL" && env[k] == "":
			return "http://" + ln.Addr().String()
		}
		return env[k]
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	logs := &daemon.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.New(t.Context(), s, log)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	// The server main runs (its timeouts too), on that listener.
	hs := httptest.NewUnstartedServer(nil)
	hs.Listener.Close()
	hs.Listener, hs.Config = ln, a.Server()
	hs.Start()
	srv := &server{Server: hs, app: a, dataDir: dataDir, logs: logs}
	t.Cleanup(func() {
		srv.Close()
		a.Close()
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return srv
}

// registryEnv trusts a loopback registry (plain HTTP, private address).
func registryEnv(hosts ...string) map[string]string {
	return map[string]string{"TARPORT_INSECURE_REGISTRIES": strings.Join(hosts, ",")}
}

// job is the API's job shape, decoded independently of the server's types.
type job struct {
	ID         string `json:"id"`
	Image      string `json:"image"`
	Platform   string `json:"platform"`
	Digest     string `json:"digest"`
	Status     string `json:"status"`
	TotalBytes int64  `json:"total_bytes"`
	DoneBytes  int64  `json:"done_bytes"`
	Layers     []struct {
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
		DoneBytes int64  `json:"done_bytes"`
	} `json:"layers"`
	URL       string     `json:"url"`
	StreamURL string     `json:"stream_url"`
	ExpiresAt *time.Time `json:"expires_at"`
	Error     *apiError  `json:"error"`
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type errorBody struct {
	Error apiError `json:"error"`
}

// post sends a JSON body and decodes the answer into out; it returns the status.
func post(t *testing.T, url string, body any, out any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("POST %s: %d %s: %v", url, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	return getJSONAs(t, url, "", "", out)
}

// getJSONAs is getJSON with HTTP basic auth, when user is set.
func getJSONAs(t *testing.T, url, user, pass string, out any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %d: %v", url, resp.StatusCode, err)
	}
	return resp.StatusCode
}

type request struct {
	Image    string `json:"image"`
	Platform string `json:"platform,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// create starts a download and fails the test unless it was accepted.
func (s *server) create(t *testing.T, req request) job {
	t.Helper()
	var j job
	if st := post(t, s.URL+"/api/downloads", req, &j); st != http.StatusOK && st != http.StatusAccepted {
		t.Fatalf("POST /api/downloads %+v: status %d, job %+v", req, st, j)
	}
	return j
}

// wait polls a job until it is ready or failed.
func (s *server) wait(t *testing.T, id string, timeout time.Duration) job {
	t.Helper()
	return s.waitAs(t, id, timeout, request{})
}

// waitAs polls a job as the requester of req: with its registry
// credentials (HTTP basic auth), which a private job's link needs.
func (s *server) waitAs(t *testing.T, id string, timeout time.Duration, req request) job {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var j job
		if st := getJSONAs(t, s.URL+"/api/downloads/"+id, req.Username, req.Password, &j); st != http.StatusOK {
			t.Fatalf("GET job %s: status %d %+v", id, st, j)
		}
		if j.Status == "ready" || j.Status == "failed" {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after %s: %+v", id, j.Status, timeout, j)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fetch downloads a ready job's link to a file in the test's temp dir.
func fetch(t *testing.T, j job) string {
	t.Helper()
	if j.Status != "ready" || j.URL == "" {
		t.Fatalf("job not ready: %+v", j)
	}
	resp, err := http.Get(j.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET link: %d %s", resp.StatusCode, b)
	}
	path := filepath.Join(t.TempDir(), "image.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(f, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n != j.TotalBytes {
		t.Fatalf("downloaded %d bytes, job said %d", n, j.TotalBytes)
	}
	return path
}

// download runs a request to a ready tar on disk.
func (s *server) download(t *testing.T, req request) (string, job) {
	t.Helper()
	j := s.create(t, req)
	j = s.waitAs(t, j.ID, 2*time.Minute, req)
	if j.Status != "ready" {
		t.Fatalf("download %+v failed: %+v", req, j.Error)
	}
	return fetch(t, j), j
}

// wantLayers asserts the tar's manifest layers are the pushed image's.
func layerDigests(blobs []regtest.Blob) []string {
	var out []string
	for _, b := range blobs {
		out = append(out, b.Digest)
	}
	return out
}

func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
