package httpapi

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// TestStreamLink: where tars stream, a new (or joined) job's answer
// carries a signed stream link that serves the tar as it is built, without
// the access token (a browser's download cannot send it); a link altered,
// moved to another job, or past its time is refused.
func TestStreamLink(t *testing.T) {
	t.Parallel()
	const token = "stream-link-token"
	body := bytes.Repeat([]byte("tar!"), 4096)
	v := tarView(body)
	tars := &fakeTars{body: body, job: v.Job}
	d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) { return v, nil }}
	api := newTestAPI(t, d, Options{Tars: tars, AccessToken: token, PublicURL: "http://127.0.0.1:8080"})

	create := post("/api/downloads", `{"image":"nginx:1.27","platform":"linux/arm64"}`)
	create.Header.Set(TokenHeader, token)
	res := do(t, api, create)
	link, _ := res.body["stream_url"].(string)
	if res.status != http.StatusAccepted || !strings.HasPrefix(link, "http://127.0.0.1:8080"+StreamLinkPrefix+v.ID+"?") {
		t.Fatalf("POST /api/downloads: %d, stream_url %q", res.status, link)
	}
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}

	w := httptest.NewRecorder()
	api.ServeHTTP(w, httpGet(u.RequestURI())) // no token
	got := w.Result()
	raw, _ := io.ReadAll(got.Body)
	if got.StatusCode != http.StatusOK || !bytes.Equal(raw, body) || got.Header.Get("Content-Type") != "application/x-tar" ||
		got.Header.Get("Content-Length") != strconv.Itoa(len(body)) || got.Header.Get("Content-Disposition") == "" {
		t.Fatalf("GET the stream link: %d, %d bytes, headers %v", got.StatusCode, len(raw), got.Header)
	}

	q := u.Query()
	sig := q.Get("sig")
	flip := []byte(sig)
	flip[0] ^= 1 // one bit of the signature changed
	otherJob := StreamLinkPrefix + "someone-elses-job?" + u.RawQuery
	later := url.Values{"exp": {strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)}, "sig": {sig}}
	for path, code := range map[string]tarport.Code{
		StreamLinkPrefix + v.ID + "?exp=" + q.Get("exp") + "&sig=" + string(flip): tarport.CodeLinkInvalid,
		StreamLinkPrefix + v.ID + "?" + later.Encode():                            tarport.CodeLinkInvalid,
		StreamLinkPrefix + v.ID + "?exp=" + q.Get("exp"):                          tarport.CodeLinkInvalid,
		otherJob: tarport.CodeLinkInvalid,
		api.links.sign(v.ID, time.Now().Add(-2*time.Second)): tarport.CodeLinkExpired,
	} {
		t.Run(path, func(t *testing.T) {
			checkError(t, do(t, api, httpGet(path)), http.StatusForbidden, code)
		})
	}
	// A HEAD (a link checker) does not start a stream.
	head := do(t, api, mustRequest(http.MethodHead, u.RequestURI()))
	if head.status != http.StatusMethodNotAllowed {
		t.Errorf("HEAD the stream link: %d, want 405", head.status)
	}
	if len(tars.jobs) != 1 {
		t.Errorf("streams opened %v, want one", tars.jobs)
	}
}

// TestStreamLinkOnlyWhileBuilding: a job ready at once gets no stream link
// (its finished tar's link resumes; a stream does not), nor does a failed
// one, nor any job where tars do not stream (Lambda), whose stream path
// is not served at all.
func TestStreamLinkOnlyWhileBuilding(t *testing.T) {
	t.Parallel()
	body := []byte("tar")
	for name, v := range map[string]download.View{
		"ready":  readyView("/files/tars/x.tar?sig=1"),
		"failed": failedView(tarport.CodeNotFound, "gone"),
	} {
		d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) { return v, nil }}
		res := do(t, newTestAPI(t, d, Options{Tars: &fakeTars{body: body}}), post("/api/downloads", `{"image":"nginx"}`))
		if _, ok := res.body["stream_url"]; ok {
			t.Errorf("%s job: stream_url %v", name, res.body["stream_url"])
		}
	}
	d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) { return pendingView(), nil }}
	api := newTestAPI(t, d, Options{})
	res := do(t, api, post("/api/downloads", `{"image":"nginx"}`))
	if _, ok := res.body["stream_url"]; ok || res.status != http.StatusAccepted {
		t.Errorf("without tars: %d, stream_url %v", res.status, res.body["stream_url"])
	}
	checkError(t, do(t, api, httpGet(StreamLinkPrefix+pendingView().ID+"?exp=1&sig=00")), http.StatusNotFound, tarport.CodeNotFound)
	// Without tars the prefix is no way around the access token either.
	guarded := newTestAPI(t, d, Options{AccessToken: "t0ken"})
	checkError(t, do(t, guarded, httpGet(StreamLinkPrefix+"x?exp=1&sig=00")), http.StatusUnauthorized, tarport.CodeAccessDenied)
}
