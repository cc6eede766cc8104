package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// fakeDownloads answers with what the test set, and records the requests.
type fakeDownloads struct {
	mu        sync.Mutex
	create    func(ctx context.Context, req download.Request) (download.View, error)
	status    func(ctx context.Context, id string) (download.View, error)
	wait      func(ctx context.Context, id string, wait time.Duration) (download.View, error)
	creates   []download.Request
	statusIDs []string
	waits     []time.Duration
	creds     []tarport.Credentials // of every Status and Wait
}

var _ Downloads = (*fakeDownloads)(nil)

func (f *fakeDownloads) Create(ctx context.Context, req download.Request) (download.View, error) {
	f.mu.Lock()
	f.creates = append(f.creates, req)
	fn := f.create
	f.mu.Unlock()
	if fn == nil {
		return pendingView(), nil
	}
	return fn(ctx, req)
}

func (f *fakeDownloads) Status(ctx context.Context, id string, creds tarport.Credentials) (download.View, error) {
	f.mu.Lock()
	f.statusIDs = append(f.statusIDs, id)
	f.creds = append(f.creds, creds)
	fn := f.status
	f.mu.Unlock()
	if fn == nil {
		return download.View{}, tarport.Errorf(tarport.CodeNotFound, "no download job %q", id)
	}
	return fn(ctx, id)
}

func (f *fakeDownloads) Wait(ctx context.Context, id string, wait time.Duration, creds tarport.Credentials) (download.View, error) {
	f.mu.Lock()
	f.waits = append(f.waits, wait)
	fn := f.wait
	f.mu.Unlock()
	if fn == nil {
		return f.Status(ctx, id, creds)
	}
	f.mu.Lock()
	f.creds = append(f.creds, creds)
	f.mu.Unlock()
	return fn(ctx, id, wait)
}

func (f *fakeDownloads) credsSeen() []tarport.Credentials {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]tarport.Credentials(nil), f.creds...)
}

func (f *fakeDownloads) createCalls() []download.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]download.Request(nil), f.creates...)
}

var (
	testCreated = time.Date(2026, 11, 26, 22, 1, 36, 0, time.UTC)
	layerA      = digest.FromString("layer a")
	layerB      = digest.FromString("layer b")
)

// pendingView is a job half way through fetching.
func pendingView() download.View {
	return download.View{Job: tarport.Job{
		ID:         "obcrby3ai2ulmkkplkeyyg4zl4",
		Key:        "secret-key",
		Image:      "nginx:1.27",
		Ref:        "docker.io/library/nginx:1.27",
		Platform:   "linux/arm64",
		Digest:     digest.FromString("manifest"),
		Status:     tarport.StatusFetching,
		TotalBytes: 10_000,
		Layers: []tarport.LayerProgress{
			{Digest: layerA, Size: 6000, DoneBytes: 6000, Finished: true},
			{Digest: layerB, Size: 3000, DoneBytes: 1000},
		},
		Remaining: 1,
		TarKey:    "tars/obcrby3ai2ulmkkplkeyyg4zl4.tar",
		FileName:  "nginx_1.27_linux_arm64.tar",
		CreatedAt: testCreated,
		UpdatedAt: testCreated.Add(time.Second),
		ExpiresAt: testCreated.Add(24 * time.Hour),
	}}
}

func readyView(url string) download.View {
	v := pendingView()
	v.Status = tarport.StatusReady
	for i := range v.Layers {
		v.Layers[i].DoneBytes, v.Layers[i].Finished = v.Layers[i].Size, true
	}
	v.Remaining = 0
	v.URL = url
	v.LinkExpiresAt = testCreated.Add(time.Hour).In(time.FixedZone("CET", 3600))
	return v
}

func failedView(code tarport.Code, msg string) download.View {
	v := pendingView()
	v.Status = tarport.StatusFailed
	v.Error = &tarport.JobError{Code: code, Message: msg}
	return v
}

func newTestAPI(t *testing.T, d *fakeDownloads, opts Options) *API {
	t.Helper()
	opts.Downloads = d
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return New(opts)
}

// response is a recorded answer with its body decoded generically.
type response struct {
	status int
	header http.Header
	raw    string
	body   map[string]any
}

func do(t *testing.T, h http.Handler, r *http.Request) response {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := w.Result()
	raw, _ := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			t.Fatalf("%s %s: body %q is not a JSON object: %v", r.Method, r.URL, raw, err)
		}
	}
	return out
}

func post(path, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

// checkError: the answer is exactly {"error":{"code","message"}} as JSON,
// not cached, with the status and code wanted.
func checkError(t *testing.T, res response, status int, code tarport.Code) (message string) {
	t.Helper()
	if res.status != status {
		t.Errorf("status %d, want %d (body %s)", res.status, status, res.raw)
	}
	if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	if len(res.body) != 1 {
		t.Fatalf("body %s: want only an error object", res.raw)
	}
	e, ok := res.body["error"].(map[string]any)
	if !ok || len(e) != 2 {
		t.Fatalf("body %s: want {\"error\":{\"code\",\"message\"}}", res.raw)
	}
	gotCode, _ := e["code"].(string)
	message, _ = e["message"].(string)
	if gotCode != string(code) || message == "" {
		t.Errorf("error code %q, message %q; want %s with a message", gotCode, message, code)
	}
	return message
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
