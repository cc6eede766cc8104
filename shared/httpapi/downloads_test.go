package httpapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// TestCreateBodies: what POST bodies are refused before the service sees
// them, and how the accepted ones become a request.
func TestCreateBodies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		body   string
		status int
		code   tarport.Code
		want   download.Request // for accepted bodies
	}{
		{name: "form, not JSON", body: "image=nginx", status: 400, code: tarport.CodeInvalid},
		{name: "empty", body: "", status: 400, code: tarport.CodeInvalid},
		{name: "whitespace only", body: " \n ", status: 400, code: tarport.CodeInvalid},
		{name: "truncated", body: `{"image":"nginx"`, status: 400, code: tarport.CodeInvalid},
		{name: "two objects", body: `{"image":"a"}{"image":"b"}`, status: 400, code: tarport.CodeInvalid},
		{name: "trailing garbage", body: `{"image":"a"} x`, status: 400, code: tarport.CodeInvalid},
		{name: "an array", body: `[{"image":"a"}]`, status: 400, code: tarport.CodeInvalid},
		{name: "wrong type", body: `{"image":42}`, status: 400, code: tarport.CodeInvalid},
		{name: "null", body: `null`, status: 400, code: tarport.CodeInvalid},
		{name: "no image", body: `{"platform":"linux/amd64"}`, status: 400, code: tarport.CodeInvalid},
		{name: "blank image", body: `{"image":"  "}`, status: 400, code: tarport.CodeInvalid},
		{name: "oversized", body: `{"image":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, status: 413, code: tarport.CodeTooLarge},
		{name: "oversized unknown field", body: `{"image":"nginx","pad":"` + strings.Repeat("x", 2*MaxBodyBytes) + `"}`, status: 413, code: tarport.CodeTooLarge},
		{name: "username without password", body: `{"image":"nginx","username":"bob"}`, status: 400, code: tarport.CodeInvalid},
		{name: "password without username", body: `{"image":"nginx","password":"pw"}`, status: 400, code: tarport.CodeInvalid},
		{name: "token without username", body: `{"image":"nginx","token":"pat"}`, status: 400, code: tarport.CodeInvalid},
		{name: "username too long", body: `{"image":"nginx","username":"` + strings.Repeat("u", 257) + `","password":"p"}`, status: 400, code: tarport.CodeInvalid},
		{name: "password too long", body: `{"image":"nginx","username":"u","password":"` + strings.Repeat("p", 8193) + `"}`, status: 400, code: tarport.CodeInvalid},
		{name: "platform too long", body: `{"image":"nginx","platform":"` + strings.Repeat("l", 65) + `"}`, status: 400, code: tarport.CodeInvalidPlatform},

		{name: "image and images", body: `{"image":"nginx","images":["redis"]}`, status: 400, code: tarport.CodeInvalid},
		{name: "images and compose", body: `{"images":["redis"],"compose":"services: {a: {image: x}}"}`, status: 400, code: tarport.CodeInvalid},
		{name: "empty images", body: `{"images":[]}`, status: 400, code: tarport.CodeInvalid},
		{name: "too many images listed", body: `{"images":[` + strings.TrimSuffix(strings.Repeat(`"a",`, 501), ",") + `]}`, status: 413, code: tarport.CodeTooLarge},
		{name: "compose that does not parse", body: `{"compose":"services: ["}`, status: 400, code: tarport.CodeInvalid},
		{name: "compose service without image", body: `{"compose":"services:\n  web:\n    ports: [\"80:80\"]\n"}`, status: 400, code: tarport.CodeInvalid},
		{name: "compose with builds only", body: `{"compose":"services:\n  web:\n    build: .\n"}`, status: 400, code: tarport.CodeInvalid},
		{name: "compose for another platform", body: `{"compose":"services:\n  a: {image: nginx, platform: linux/arm64}\n","platform":"linux/amd64"}`, status: 400, code: tarport.CodeInvalid},
		{name: "compose service on no platform", body: `{"compose":"services:\n  a: {image: nginx, platform: arm64}\n"}`, status: 400, code: tarport.CodeInvalidPlatform},

		{name: "images", body: `{"images":["nginx:1.27","redis"],"platform":"linux/arm64"}`, status: 202,
			want: download.Request{Images: []string{"nginx:1.27", "redis"}, Platform: "linux/arm64"}},
		{name: "compose", body: `{"compose":"services:\n  app:\n    build: .\n  web:\n    image: nginx\n  cache:\n    image: redis:${TAG:-7}\n"}`, status: 202,
			want: download.Request{Images: []string{"redis:7", "nginx"}}},
		{name: "compose's platform", body: `{"compose":"services:\n  a: {image: nginx, platform: linux/aarch64}\n  b: {image: redis}\n"}`, status: 202,
			want: download.Request{Images: []string{"nginx", "redis"}, Platform: "linux/arm64"}},
		{name: "anonymous", body: `{"image":"nginx:1.27","platform":"linux/arm64"}`, status: 202,
			want: download.Request{Image: "nginx:1.27", Platform: "linux/arm64"}},
		{name: "default platform left to the service", body: `{"image":"nginx"}`, status: 202,
			want: download.Request{Image: "nginx"}},
		{name: "password", body: `{"image":"me/private:1","username":"me","password":"pw"}`, status: 202,
			want: download.Request{Image: "me/private:1", Creds: tarport.Credentials{Username: "me", Password: "pw"}}},
		{name: "token as password", body: `{"image":"me/private:1","username":"me","token":"dckr_pat_x"}`, status: 202,
			want: download.Request{Image: "me/private:1", Creds: tarport.Credentials{Username: "me", Password: "dckr_pat_x"}}},
		{name: "unknown fields ignored", body: `{"image":"nginx","extra":{"a":[1,2]}}`, status: 202,
			want: download.Request{Image: "nginx"}},
		{name: "trailing newline", body: "{\"image\":\"nginx\"}\n", status: 202,
			want: download.Request{Image: "nginx"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &fakeDownloads{}
			api := newTestAPI(t, d, Options{})
			res := do(t, api, post("/api/downloads", tc.body))
			calls := d.createCalls()
			if tc.code != "" {
				checkError(t, res, tc.status, tc.code)
				if len(calls) != 0 {
					t.Errorf("the service was asked: %+v", calls)
				}
				return
			}
			want := tc.want
			want.Client = "192.0.2.1" // httptest's peer: who the job is for
			if res.status != tc.status || len(calls) != 1 || !reflect.DeepEqual(calls[0], want) {
				t.Errorf("status %d, service asked %+v; want %d and %+v (body %s)", res.status, calls, tc.status, want, res.raw)
			}
		})
	}
}

// TestCreateBodiesThatAreNotOneObject: bodies the decoder lets through
// although they are not one JSON object within the size limit.
func TestCreateBodiesThatAreNotOneObject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		body   string
		status int
		code   tarport.Code
	}{
		// Anything but whitespace after the object is refused.
		{"stray closing brace", `{"image":"nginx"}}`, 400, tarport.CodeInvalid},
		{"stray closing bracket", `{"image":"nginx"}]`, 400, tarport.CodeInvalid},
		// The limit counts the whole body, not only the object.
		{"oversized by trailing whitespace", `{"image":"nginx"}` + strings.Repeat(" ", 2*MaxBodyBytes), 413, tarport.CodeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &fakeDownloads{}
			res := do(t, newTestAPI(t, d, Options{}), post("/api/downloads", tc.body))
			if res.status != tc.status {
				t.Errorf("status %d (service asked %d times), want %d %s", res.status, len(d.createCalls()), tc.status, tc.code)
			}
		})
	}
}

// TestCreateAnswers: 200 when ready, 202 while building, both with the
// job's Location. (The seed's /api/download and /api/download-stream
// answer with the tar: TestSeedDownload.)
func TestCreateAnswers(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/api/downloads"} {
		for _, tc := range []struct {
			view   download.View
			status int
		}{
			{pendingView(), http.StatusAccepted},
			{readyView("https://bucket.example/tars/x.tar?sig=1"), http.StatusOK},
			{failedView(tarport.CodeDigestMismatch, "bad bytes"), http.StatusAccepted},
		} {
			d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) { return tc.view, nil }}
			res := do(t, newTestAPI(t, d, Options{}), post(path, `{"image":"nginx"}`))
			if res.status != tc.status || res.header.Get("Location") != "/api/downloads/"+tc.view.ID {
				t.Errorf("%s, %s job: %d, Location %q; want %d and the job's Location", path, tc.view.Status, res.status, res.header.Get("Location"), tc.status)
			}
			if res.body["id"] != tc.view.ID || res.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: body %s", path, res.raw)
			}
		}
	}
}

var (
	jobKeys      = []string{"id", "image", "platform", "digest", "status", "total_bytes", "done_bytes", "layers"}
	optionalKeys = []string{"file_name", "created_at", "updated_at"} // documented in API.md's example
)

// checkJobShape: the keys of DESIGN.md's job, url and expires_at only when
// ready, error only when failed, and nothing else.
func checkJobShape(t *testing.T, body map[string]any, v download.View) {
	t.Helper()
	want := slices.Clone(jobKeys)
	switch v.Status {
	case tarport.StatusReady:
		want = append(want, "url", "expires_at")
	case tarport.StatusFailed:
		want = append(want, "error")
	}
	got := keys(body)
	for _, k := range want {
		if !slices.Contains(got, k) {
			t.Errorf("%s job: no %q in %v", v.Status, k, got)
		}
	}
	for _, k := range got {
		if !slices.Contains(want, k) && !slices.Contains(optionalKeys, k) {
			t.Errorf("%s job: unexpected key %q", v.Status, k)
		}
	}
	if body["id"] != v.ID || body["image"] != v.Image || body["platform"] != v.Platform || body["digest"] != v.Digest.String() || body["status"] != string(v.Status) {
		t.Errorf("%s job: %v", v.Status, body)
	}
	if body["total_bytes"] != float64(v.TotalBytes) || body["done_bytes"] != float64(v.DoneBytes()) {
		t.Errorf("%s job: total %v, done %v; want %d, %d", v.Status, body["total_bytes"], body["done_bytes"], v.TotalBytes, v.DoneBytes())
	}
	layers, _ := body["layers"].([]any)
	if len(layers) != len(v.Layers) {
		t.Fatalf("%s job: layers %v", v.Status, body["layers"])
	}
	for i, l := range layers {
		m, _ := l.(map[string]any)
		if len(m) != 3 || m["digest"] != v.Layers[i].Digest.String() || m["size"] != float64(v.Layers[i].Size) || m["done_bytes"] != float64(v.Layers[i].DoneBytes) {
			t.Errorf("%s job: layer %d is %v; want exactly digest, size, done_bytes", v.Status, i, m)
		}
	}
	if v.Status == tarport.StatusFailed {
		e, _ := body["error"].(map[string]any)
		if len(e) != 2 || e["code"] != string(v.Error.Code) || e["message"] != v.Error.Message {
			t.Errorf("failed job: error %v", body["error"])
		}
	}
	if v.Status == tarport.StatusReady {
		exp, _ := body["expires_at"].(string)
		if exp != v.LinkExpiresAt.UTC().Format(time.RFC3339) {
			t.Errorf("ready job: expires_at %q, want %q", exp, v.LinkExpiresAt.UTC().Format(time.RFC3339))
		}
	}
}

// TestJobShape: GET /api/downloads/{id} in every state, with path-only
// links made absolute under the configured public address, whatever Host
// (or X-Forwarded-*) the request carries.
func TestJobShape(t *testing.T) {
	t.Parallel()
	s3URL := "https://bucket.s3.example/tars/x.tar?X-Amz-Signature=abc"
	for _, tc := range []struct {
		name    string
		view    download.View
		public  string
		wantURL string
	}{
		{"pending", pendingView(), "", ""},
		{"queued", func() download.View { v := pendingView(); v.Status = tarport.StatusQueued; return v }(), "", ""},
		{"failed", failedView(tarport.CodeDigestMismatch, "layer sha256:ab did not match its digest"), "", ""},
		{"ready, presigned", readyView(s3URL), "", s3URL},
		{"ready, presigned, with a public address", readyView(s3URL), "http://tarport.example:8443", s3URL},
		{"ready, local path", readyView("/files/tars/x.tar?sig=abc&exp=1"), "http://tarport.example:8443", "http://tarport.example:8443/files/tars/x.tar?sig=abc&exp=1"},
		{"ready, local path behind TLS", readyView("/files/tars/x.tar?sig=abc"), "https://tarport.example:8443/", "https://tarport.example:8443/files/tars/x.tar?sig=abc"},
		{"ready, no layers", func() download.View { v := readyView(s3URL); v.Layers = nil; return v }(), "", s3URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &fakeDownloads{status: func(_ context.Context, id string) (download.View, error) { return tc.view, nil }}
			r := httpGet("/api/downloads/" + tc.view.ID)
			r.Host = "evil.example"
			r.Header.Set("X-Forwarded-Host", "evil.example")
			r.Header.Set("X-Forwarded-Proto", "https")
			res := do(t, newTestAPI(t, d, Options{PublicURL: tc.public}), r)
			if strings.Contains(res.raw, "evil.example") {
				t.Errorf("the answer was built from the request's Host: %s", res.raw)
			}
			if res.status != 200 {
				t.Fatalf("status %d: %s", res.status, res.raw)
			}
			checkJobShape(t, res.body, tc.view)
			if tc.wantURL != "" && res.body["url"] != tc.wantURL {
				t.Errorf("url %v, want %s", res.body["url"], tc.wantURL)
			}
			if strings.Contains(res.raw, "secret-key") || strings.Contains(res.raw, "tars/obcrby") && tc.wantURL == "" {
				t.Errorf("the answer shows internal fields: %s", res.raw)
			}
			if d.statusIDs[0] != tc.view.ID {
				t.Errorf("asked for job %q", d.statusIDs[0])
			}
		})
	}
}

func TestJobStatusRefusals(t *testing.T) {
	t.Parallel()
	d := &fakeDownloads{}
	api := newTestAPI(t, d, Options{})
	checkError(t, do(t, api, httpGet("/api/downloads/"+strings.Repeat("a", 65))), 404, tarport.CodeNotFound)
	if len(d.statusIDs) != 0 {
		t.Errorf("an over-long id reached the service")
	}
	checkError(t, do(t, api, httpGet("/api/downloads/unknown")), 404, tarport.CodeNotFound)
}

// TestPull: the curl one-liner's answers.
func TestPull(t *testing.T) {
	t.Parallel()
	t.Run("credentials and platform", func(t *testing.T) {
		t.Parallel()
		d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) { return readyView("/files/x.tar"), nil }}
		r := httpGet("/api/pull/registry.example:5000/team/app:v1?platform=linux/arm/v7")
		r.SetBasicAuth("bob", "dckr_pat_x")
		do(t, newTestAPI(t, d, Options{}), r)
		want := download.Request{Image: "registry.example:5000/team/app:v1", Platform: "linux/arm/v7", Creds: tarport.Credentials{Username: "bob", Password: "dckr_pat_x"}, Client: "192.0.2.1"}
		if calls := d.createCalls(); len(calls) != 1 || !reflect.DeepEqual(calls[0], want) {
			t.Errorf("service asked %+v, want %+v", calls, want)
		}
	})
	t.Run("ready redirects", func(t *testing.T) {
		t.Parallel()
		d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) {
			return readyView("/files/tars/x.tar?sig=1"), nil
		}}
		r := httpGet("/api/pull/nginx")
		r.Host = "evil.example"
		res := do(t, newTestAPI(t, d, Options{PublicURL: "http://tarport.example"}), r)
		if res.status != http.StatusSeeOther || res.header.Get("Location") != "http://tarport.example/files/tars/x.tar?sig=1" {
			t.Errorf("%d, Location %q; want 303 to the absolute link", res.status, res.header.Get("Location"))
		}
		if len(d.waits) != 0 {
			t.Errorf("waited for a ready job")
		}
	})
	t.Run("pending then ready", func(t *testing.T) {
		t.Parallel()
		d := &fakeDownloads{wait: func(context.Context, string, time.Duration) (download.View, error) {
			return readyView("https://bucket.example/x.tar?sig=2"), nil
		}}
		res := do(t, newTestAPI(t, d, Options{PullWait: 1234 * time.Millisecond}), httpGet("/api/pull/nginx"))
		if res.status != http.StatusSeeOther || res.header.Get("Location") != "https://bucket.example/x.tar?sig=2" {
			t.Errorf("%d, Location %q", res.status, res.header.Get("Location"))
		}
		if len(d.waits) != 1 || d.waits[0] != 1234*time.Millisecond {
			t.Errorf("waits %v, want one of PullWait", d.waits)
		}
	})
	t.Run("still pending", func(t *testing.T) {
		t.Parallel()
		d := &fakeDownloads{wait: func(context.Context, string, time.Duration) (download.View, error) { return pendingView(), nil }}
		res := do(t, newTestAPI(t, d, Options{}), httpGet("/api/pull/nginx"))
		if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") != "3" || res.header.Get("Location") != "" {
			t.Errorf("%d, Retry-After %q, Location %q; want 503 with Retry-After: 3", res.status, res.header.Get("Retry-After"), res.header.Get("Location"))
		}
		checkJobShape(t, res.body, pendingView())
		if len(d.waits) != 1 || d.waits[0] != 20*time.Second {
			t.Errorf("waits %v, want the default 20s", d.waits)
		}
	})
	t.Run("failed", func(t *testing.T) {
		t.Parallel()
		for _, code := range []tarport.Code{tarport.CodeDigestMismatch, tarport.CodeUnauthorized, tarport.CodeCredentialsGone, tarport.CodeInternal} {
			d := &fakeDownloads{wait: func(context.Context, string, time.Duration) (download.View, error) {
				return failedView(code, "the job failed: "+string(code)), nil
			}}
			res := do(t, newTestAPI(t, d, Options{}), httpGet("/api/pull/nginx"))
			if msg := checkError(t, res, StatusOf(code), code); msg != "the job failed: "+string(code) {
				t.Errorf("%s: message %q", code, msg)
			}
		}
	})
	t.Run("failed at once", func(t *testing.T) {
		t.Parallel()
		d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) {
			return failedView(tarport.CodeUnsupported, "an artifact"), nil
		}}
		checkError(t, do(t, newTestAPI(t, d, Options{}), httpGet("/api/pull/nginx")), 422, tarport.CodeUnsupported)
		if len(d.waits) != 0 {
			t.Errorf("waited for a failed job")
		}
	})
	t.Run("wait error", func(t *testing.T) {
		t.Parallel()
		d := &fakeDownloads{wait: func(context.Context, string, time.Duration) (download.View, error) {
			return download.View{}, tarport.Errorf(tarport.CodeNotFound, "expired")
		}}
		checkError(t, do(t, newTestAPI(t, d, Options{}), httpGet("/api/pull/nginx")), 404, tarport.CodeNotFound)
	})
	t.Run("bad input", func(t *testing.T) {
		t.Parallel()
		d := &fakeDownloads{}
		api := newTestAPI(t, d, Options{})
		checkError(t, do(t, api, httpGet("/api/pull/")), 400, tarport.CodeInvalid)
		checkError(t, do(t, api, httpGet("/api/pull/nginx?platform="+strings.Repeat("x", 65))), 400, tarport.CodeInvalidPlatform)
		r := httpGet("/api/pull/nginx")
		r.SetBasicAuth("bob", "")
		checkError(t, do(t, api, r), 400, tarport.CodeInvalid)
		if len(d.createCalls()) != 0 {
			t.Errorf("bad input reached the service")
		}
	})
}

// TestRoutes: known paths with a wrong method are 405, unknown /api/ paths
// 404, both in the error shape.
func TestRoutes(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, &fakeDownloads{}, Options{})
	res := do(t, api, httpGet("/api/health"))
	if res.status != 200 || res.body["status"] != "ok" || !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") {
		t.Errorf("health: %d %s", res.status, res.raw)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		code         tarport.Code
	}{
		{"DELETE", "/api/downloads", 405, tarport.CodeMethodNotAllowed},
		{"GET", "/api/downloads", 405, tarport.CodeMethodNotAllowed},
		{"PUT", "/api/download", 405, tarport.CodeMethodNotAllowed},
		{"GET", "/api/download-stream", 405, tarport.CodeMethodNotAllowed},
		{"DELETE", "/api/downloads/abc", 405, tarport.CodeMethodNotAllowed},
		{"POST", "/api/downloads/abc", 405, tarport.CodeMethodNotAllowed},
		{"POST", "/api/pull/nginx", 405, tarport.CodeMethodNotAllowed},
		{"POST", "/api/health", 405, tarport.CodeMethodNotAllowed},
		{"GET", "/api/nothing", 404, tarport.CodeNotFound},
		{"POST", "/api/nothing", 404, tarport.CodeNotFound},
		{"GET", "/api/", 404, tarport.CodeNotFound},
		{"GET", "/api/downloads/a/b", 404, tarport.CodeNotFound},
		{"GET", "/api/healthz", 404, tarport.CodeNotFound},
	} {
		res := do(t, api, mustRequest(tc.method, tc.path))
		t.Run(tc.method+" "+tc.path, func(t *testing.T) { checkError(t, res, tc.status, tc.code) })
	}
}

// TestStatusPassesCredentials: a status read hands HTTP basic auth to the
// service (a private job's link needs the registry's yes again), bounded
// like the JSON fields; the pull one-liner's wait gets the same.
func TestStatusPassesCredentials(t *testing.T) {
	t.Parallel()
	d := &fakeDownloads{status: func(context.Context, string) (download.View, error) { return pendingView(), nil }}
	api := newTestAPI(t, d, Options{})
	r := httpGet("/api/downloads/abc")
	r.SetBasicAuth("alice", "pat")
	if res := do(t, api, r); res.status != http.StatusOK {
		t.Fatalf("status %d %s", res.status, res.raw)
	}
	if res := do(t, api, httpGet("/api/downloads/abc")); res.status != http.StatusOK {
		t.Fatalf("status %d %s", res.status, res.raw)
	}
	long := httpGet("/api/downloads/abc")
	long.SetBasicAuth("alice", strings.Repeat("p", 9000))
	checkError(t, do(t, api, long), http.StatusBadRequest, tarport.CodeInvalid)
	want := []tarport.Credentials{{Username: "alice", Password: "pat"}, {}}
	if got := d.credsSeen(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the service got credentials %+v, want %+v", got, want)
	}

	w := &fakeDownloads{}
	p := httpGet("/api/pull/nginx")
	p.SetBasicAuth("bob", "tok")
	do(t, newTestAPI(t, w, Options{}), p)
	if got := w.credsSeen(); len(got) != 1 || got[0] != (tarport.Credentials{Username: "bob", Password: "tok"}) {
		t.Errorf("the pull's wait got credentials %+v, want bob's", got)
	}
}

// TestPullWaitsWithinTheDeadline: on Lambda the request's deadline is the
// function's timeout, under API Gateway's 30 s: the lookup plus the wait
// must end before it, with time left to answer 503 + Retry-After rather
// than be cut off (a bare 500 from API Gateway).
func TestPullWaitsWithinTheDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		deadline  time.Duration // from the request's start
		lookup    time.Duration // how long Create takes
		wantWait  bool
		maxWaited time.Duration
	}{
		{"no time left after the lookup", 3 * time.Second, 500 * time.Millisecond, false, 0},
		{"some time left", 6 * time.Second, 500 * time.Millisecond, true, 6*time.Second - 500*time.Millisecond - pullReserve},
		{"API Gateway's 29 s after a 21 s lookup", 29 * time.Second, 0, true, 29*time.Second - pullReserve},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &fakeDownloads{
				create: func(ctx context.Context, _ download.Request) (download.View, error) {
					time.Sleep(tc.lookup)
					return pendingView(), nil
				},
				status: func(context.Context, string) (download.View, error) { return pendingView(), nil },
			}
			api := newTestAPI(t, d, Options{PullWait: 20 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			defer cancel()
			res := do(t, api, httpGet("/api/pull/nginx").WithContext(ctx))
			if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") == "" {
				t.Fatalf("pull: %d %v, want 503 with Retry-After", res.status, res.header)
			}
			d.mu.Lock()
			defer d.mu.Unlock()
			if !tc.wantWait {
				if len(d.waits) != 0 {
					t.Fatalf("waited %v with no time left", d.waits)
				}
				return
			}
			if len(d.waits) != 1 || d.waits[0] > tc.maxWaited || d.waits[0] <= 0 {
				t.Fatalf("waits %v, want one within %v", d.waits, tc.maxWaited)
			}
		})
	}
}

// fakeTars streams a fixed body for a job, or fails after part of it.
type fakeTars struct {
	body   []byte
	failAt int         // > 0: the reader fails after this many bytes; < 0: at once
	job    tarport.Job // what Job reads, by its id
	jobs   []string
	mu     sync.Mutex
}

func (f *fakeTars) Job(_ context.Context, id string) (tarport.Job, error) {
	if id != f.job.ID {
		return tarport.Job{}, tarport.Errorf(tarport.CodeNotFound, "no download job %q", id)
	}
	return f.job, nil
}

// noJobs is a Tars' Job for tests that stream only from job answers.
type noJobs struct{}

func (noJobs) Job(_ context.Context, id string) (tarport.Job, error) {
	return tarport.Job{}, tarport.Errorf(tarport.CodeNotFound, "no download job %q", id)
}

func (f *fakeTars) Stream(_ context.Context, job tarport.Job) (io.ReadCloser, error) {
	f.mu.Lock()
	f.jobs = append(f.jobs, job.ID)
	f.mu.Unlock()
	if f.failAt != 0 {
		return io.NopCloser(io.MultiReader(bytes.NewReader(f.body[:max(f.failAt, 0)]), iotest.ErrReader(tarport.Errorf(tarport.CodeDigestMismatch, "layer spoiled")))), nil
	}
	return io.NopCloser(bytes.NewReader(f.body)), nil
}

// tarView is a pending job whose tar is body.
func tarView(body []byte) download.View {
	v := pendingView()
	v.TotalBytes = int64(len(body))
	v.FileName = "nginx_1.27_linux_arm64.tar"
	return v
}

// TestSeedDownload: the seed's POST /api/download and /api/download-stream,
// and GET /api/pull, answer with the tar itself where the server streams
// tars (locally): 200, application/x-tar, the exact length, a file name,
// and the job to follow; the seed's body is the request.
func TestSeedDownload(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("tar!"), 4096)
	for _, r := range []*http.Request{
		post("/api/download", `{"image": "ubuntu:22.04", "platform": "linux/amd64"}`),
		post("/api/download-stream", `{"image": "ubuntu:22.04", "platform": "linux/amd64"}`),
		httpGet("/api/pull/ubuntu:22.04?platform=linux/amd64"),
	} {
		tars := &fakeTars{body: body}
		d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) { return tarView(body), nil }}
		w := httptest.NewRecorder()
		newTestAPI(t, d, Options{Tars: tars}).ServeHTTP(w, r)
		res := w.Result()
		got, _ := io.ReadAll(res.Body)
		h := res.Header
		if res.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
			t.Errorf("%s %s: %d with %d bytes, want 200 with the %d-byte tar", r.Method, r.URL.Path, res.StatusCode, len(got), len(body))
		}
		if h.Get("Content-Type") != "application/x-tar" || h.Get("Content-Length") != strconv.Itoa(len(body)) || h.Get("Accept-Ranges") != "none" ||
			h.Get("Content-Disposition") != `attachment; filename=nginx_1.27_linux_arm64.tar` || h.Get("X-Tarport-Job") != pendingView().ID {
			t.Errorf("%s %s: headers %v", r.Method, r.URL.Path, h)
		}
		want := download.Request{Image: "ubuntu:22.04", Platform: "linux/amd64", Client: "192.0.2.1"}
		if calls := d.createCalls(); len(calls) != 1 || !reflect.DeepEqual(calls[0], want) || len(tars.jobs) != 1 {
			t.Errorf("%s %s: service asked %+v, streams %v", r.Method, r.URL.Path, calls, tars.jobs)
		}
	}
}

// TestSeedDownloadRedirects: without streamed tars (AWS) the seed's
// endpoints answer as /api/pull does: 303 to the tar when ready, 503 with
// Retry-After while pending, the job's error when it failed.
func TestSeedDownloadRedirects(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"/api/download", "/api/download-stream"} {
		ready := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) {
			return readyView("https://bucket.example/tars/x.tar?sig=1"), nil
		}}
		res := do(t, newTestAPI(t, ready, Options{}), post(path, `{"image":"nginx"}`))
		if res.status != http.StatusSeeOther || res.header.Get("Location") != "https://bucket.example/tars/x.tar?sig=1" {
			t.Errorf("%s, ready: %d, Location %q", path, res.status, res.header.Get("Location"))
		}
		pending := &fakeDownloads{wait: func(context.Context, string, time.Duration) (download.View, error) { return pendingView(), nil }}
		res = do(t, newTestAPI(t, pending, Options{PullWait: time.Millisecond}), post(path, `{"image":"nginx"}`))
		if res.status != http.StatusServiceUnavailable || res.header.Get("Retry-After") != "3" {
			t.Errorf("%s, pending: %d, Retry-After %q", path, res.status, res.header.Get("Retry-After"))
		}
		failed := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) {
			return failedView(tarport.CodeDigestMismatch, "bad bytes"), nil
		}}
		checkError(t, do(t, newTestAPI(t, failed, Options{}), post(path, `{"image":"nginx"}`)), 502, tarport.CodeDigestMismatch)
	}
}

// TestTarStreamCut: a stream that fails once bytes are out is cut: the
// client reads a short body and an error, never a whole tar; a job failed
// before anything is sent is an error answer.
func TestTarStreamCut(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("tar!"), 64<<10)
	tars := &fakeTars{body: body, failAt: 100_000}
	d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) { return tarView(body), nil }}
	srv := httptest.NewServer(newTestAPI(t, d, Options{Tars: tars}))
	defer srv.Close()
	res, err := http.Get(srv.URL + "/api/pull/nginx")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || err == nil || len(got) >= len(body) {
		t.Fatalf("%d, %d of %d bytes, read error %v; want a cut transfer", res.StatusCode, len(got), len(body), err)
	}

	failed := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) {
		return failedView(tarport.CodeUnauthorized, "no access"), nil
	}}
	checkError(t, do(t, newTestAPI(t, failed, Options{Tars: &fakeTars{body: body}}), httpGet("/api/pull/nginx")), 401, tarport.CodeUnauthorized)
	// A job that fails before the tar's first byte: its error, answered.
	checkError(t, do(t, newTestAPI(t, d, Options{Tars: &fakeTars{body: body, failAt: -1}}), httpGet("/api/pull/nginx")), 502, tarport.CodeDigestMismatch)
}

// blockingTars streams a tar whose reader waits, after its first 64 KiB,
// until release is closed.
type blockingTars struct {
	noJobs
	body    []byte
	release chan struct{}
}

func (b *blockingTars) Stream(ctx context.Context, _ tarport.Job) (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(bytes.NewReader(b.body[:64<<10]), readerFunc(func(p []byte) (int, error) {
		select {
		case <-b.release:
			return 0, io.EOF
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}))), nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// TestStreamsPerClient: a client streams at most MaxStreamsPerClient tars
// at once; one more is 429 with Retry-After, and a slot comes back when a
// stream ends.
func TestStreamsPerClient(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("tar!"), 64<<10)
	tars := &blockingTars{body: body, release: make(chan struct{})}
	d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) { return tarView(body), nil }}
	srv := httptest.NewServer(newTestAPI(t, d, Options{Tars: tars}))
	defer srv.Close()
	var open []*http.Response
	for range MaxStreamsPerClient {
		resp, err := http.Get(srv.URL + "/api/pull/nginx")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %v %v", len(open)+1, resp, err)
		}
		open = append(open, resp)
	}
	resp, err := http.Get(srv.URL + "/api/pull/nginx")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("stream %d from one client: %d, Retry-After %q; want 429 with Retry-After", MaxStreamsPerClient+1, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(tars.release)
	for _, r := range open {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	// The slots are back once the handlers returned.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(srv.URL + "/api/pull/nginx")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the streams ended: %d", resp.StatusCode)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closeTracker is a big tar whose stream says when it was closed.
type closeTracker struct {
	noJobs
	size   int
	closed chan struct{}
}

func (c *closeTracker) Stream(context.Context, tarport.Job) (io.ReadCloser, error) {
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(zeros{}, int64(c.size)), closerFunc(func() error { close(c.closed); return nil })}, nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// TestStreamCutsAStalledClient: a client that stops reading is cut once a
// write has waited StreamIdle, and its stream is closed.
func TestStreamCutsAStalledClient(t *testing.T) {
	t.Parallel()
	tars := &closeTracker{size: 512 << 20, closed: make(chan struct{})}
	body := make([]byte, tars.size)
	d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) { return tarView(body), nil }}
	srv := httptest.NewServer(newTestAPI(t, d, Options{Tars: tars, StreamIdle: 200 * time.Millisecond}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/api/pull/nginx")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // and never read
	select {
	case <-tars.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("a stream to a client that stopped reading was still open after 10 s")
	}
}
