package dirstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/httpapi"
	"github.com/tarport/tarport/shared/tarplan"
)

// serve starts an HTTP server in front of the store's signed links, its
// errors answered by the API's one table, as the local server wires it.
func serve(t *testing.T, s *Store) *httptest.Server {
	t.Helper()
	s.SetErrorWriter(func(w http.ResponseWriter, r *http.Request, err error) {
		httpapi.WriteError(w, r, slog.New(slog.DiscardHandler), err)
	})
	mux := http.NewServeMux()
	mux.Handle(LinkPrefix, s)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func sign(t *testing.T, s *Store, key string, ttl time.Duration) string {
	t.Helper()
	link, _, err := s.Sign(context.Background(), key, "fixture_1.tar", ttl)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if !strings.HasPrefix(link, LinkPrefix) {
		t.Fatalf("link %q does not start with %s", link, LinkPrefix)
	}
	return link
}

func get(t *testing.T, u, rangeHeader string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rangeHeader != "" {
		req.Header.Set("Range", rangeHeader)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", u, err)
	}
	return resp, b
}

// errorCode decodes the JSON error body of a refused link.
func errorCode(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", resp.Header.Get("Content-Type"))
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not the JSON error shape: %v", body, err)
	}
	if e.Error.Message == "" {
		t.Errorf("error body %q has no message", body)
	}
	return e.Error.Code
}

func TestLinkServesStitchedTar(t *testing.T) {
	t.Parallel()
	s, _, f, parts := stitched(t, stitchLimits[1].lim) // 2 MiB parts: many segment boundaries
	srv := serve(t, s)
	link := srv.URL + sign(t, s, tarKey, time.Hour)
	size := f.Layout.Size
	boundary := parts[1].Offset // between two copy parts of the first entry
	entryEnd := f.Layout.Entries[0].Len()
	tail := f.Layout.TailOffset

	tests := []struct {
		name       string
		rangeHdr   string
		wantStatus int
		from, to   int64 // expected bytes [from, to)
	}{
		{name: "full", wantStatus: http.StatusOK, from: 0, to: size},
		{name: "first 100", rangeHdr: "bytes=0-99", wantStatus: http.StatusPartialContent, from: 0, to: 100},
		{name: "across a part boundary", rangeHdr: fmt.Sprintf("bytes=%d-%d", boundary-50, boundary+49), wantStatus: http.StatusPartialContent, from: boundary - 50, to: boundary + 50},
		{name: "across two entries", rangeHdr: fmt.Sprintf("bytes=%d-%d", entryEnd-10, entryEnd+9), wantStatus: http.StatusPartialContent, from: entryEnd - 10, to: entryEnd + 10},
		{name: "open-ended into the tail", rangeHdr: fmt.Sprintf("bytes=%d-", tail-100), wantStatus: http.StatusPartialContent, from: tail - 100, to: size},
		{name: "open-ended from a boundary", rangeHdr: fmt.Sprintf("bytes=%d-", boundary-1), wantStatus: http.StatusPartialContent, from: boundary - 1, to: size},
		{name: "suffix", rangeHdr: "bytes=-10", wantStatus: http.StatusPartialContent, from: size - 10, to: size},
		{name: "last byte", rangeHdr: fmt.Sprintf("bytes=%d-%d", size-1, size-1), wantStatus: http.StatusPartialContent, from: size - 1, to: size},
		{name: "end clamped", rangeHdr: fmt.Sprintf("bytes=%d-%d", size-5, size+1000), wantStatus: http.StatusPartialContent, from: size - 5, to: size},
		{name: "past the end", rangeHdr: fmt.Sprintf("bytes=%d-", size), wantStatus: http.StatusRequestedRangeNotSatisfiable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := get(t, link, tt.rangeHdr)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d (body %.200q)", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus == http.StatusRequestedRangeNotSatisfiable {
				if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes */%d", size) {
					t.Errorf("Content-Range = %q, want bytes */%d", cr, size)
				}
				if code := errorCode(t, resp, body); code != "range_not_satisfiable" {
					t.Errorf("416 error code %q, want range_not_satisfiable in the JSON shape", code)
				}
				return
			}
			want := f.Want[tt.from:tt.to]
			if !bytes.Equal(body, want) {
				t.Fatalf("got %d bytes, want %d; first difference at %d", len(body), len(want), tt.from+int64(firstDiff(body, want)))
			}
			if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(want)) {
				t.Errorf("Content-Length = %q, want %d", cl, len(want))
			}
			if tt.wantStatus == http.StatusPartialContent {
				wantCR := fmt.Sprintf("bytes %d-%d/%d", tt.from, tt.to-1, size)
				if cr := resp.Header.Get("Content-Range"); cr != wantCR {
					t.Errorf("Content-Range = %q, want %q", cr, wantCR)
				}
			} else {
				if ar := resp.Header.Get("Accept-Ranges"); ar != "bytes" {
					t.Errorf("Accept-Ranges = %q, want bytes", ar)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/x-tar" {
					t.Errorf("Content-Type = %q, want application/x-tar", ct)
				}
				_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
				if err != nil || params["filename"] != "fixture_1.tar" {
					t.Errorf("Content-Disposition = %q, want an attachment named fixture_1.tar", resp.Header.Get("Content-Disposition"))
				}
				if resp.Header.Get("ETag") == "" {
					t.Error("no ETag: resumed downloads cannot use If-Range")
				}
			}
		})
	}
}

func TestLinkMultiRange(t *testing.T) {
	t.Parallel()
	s, _, f, parts := stitched(t, stitchLimits[1].lim)
	srv := serve(t, s)
	link := srv.URL + sign(t, s, tarKey, time.Hour)
	size := f.Layout.Size
	b := parts[1].Offset
	ranges := [][2]int64{{0, 10}, {b - 5, b + 5}, {size - 3, size}}
	resp, body := get(t, link, fmt.Sprintf("bytes=0-9,%d-%d,-3", b-5, b+4))
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("status %d, want 206", resp.StatusCode)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type = %q, want multipart/byteranges", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for i, r := range ranges {
		p, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		wantCR := fmt.Sprintf("bytes %d-%d/%d", r[0], r[1]-1, size)
		if cr := p.Header.Get("Content-Range"); cr != wantCR {
			t.Errorf("part %d Content-Range = %q, want %q", i, cr, wantCR)
		}
		got, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.Want[r[0]:r[1]]) {
			t.Errorf("part %d: wrong bytes", i)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Fatalf("after the last range: %v, want io.EOF", err)
	}
}

func TestLinkServesPlainObject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := openStore(t)
	body := randomBytes(42, 10_000)
	if err := s.Put(ctx, "tars/plain.tar", bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, s)
	link := srv.URL + sign(t, s, "tars/plain.tar", time.Hour)
	if resp, got := get(t, link, ""); resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
		t.Fatalf("full GET: status %d, %d bytes; want 200 and %d bytes", resp.StatusCode, len(got), len(body))
	}
	if resp, got := get(t, link, "bytes=9990-"); resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, body[9990:]) {
		t.Fatalf("ranged GET: status %d, %q", resp.StatusCode, got)
	}
}

// TestLinkRefused covers links that must not serve the file.
func TestLinkRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, dir := openStore(t)
	for _, key := range []string{"tars/a.tar", "tars/b.tar"} {
		if err := s.Put(ctx, key, strings.NewReader("secret bytes"), 12); err != nil {
			t.Fatal(err)
		}
	}
	other, err := Open(dir + "-other")
	if err != nil {
		t.Fatal(err)
	}
	srv := serve(t, s)
	valid := sign(t, s, "tars/a.tar", time.Hour)

	// tamper edits a valid link's query (and maybe its path).
	tamper := func(edit func(path string, q url.Values) string) string {
		u, err := url.Parse(valid)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		p := edit(u.Path, q)
		return p + "?" + q.Encode()
	}
	flip := func(s string) string {
		b := []byte(s)
		if b[0] == '0' {
			b[0] = '1'
		} else {
			b[0] = '0'
		}
		return string(b)
	}
	otherLink, _, err := other.Sign(ctx, "tars/a.tar", "fixture_1.tar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		link       string
		wantStatus int
		wantCode   string
	}{
		{name: "valid", link: valid, wantStatus: http.StatusOK},
		{name: "expired", link: sign(t, s, "tars/a.tar", -time.Hour), wantStatus: http.StatusForbidden, wantCode: "link_expired"},
		{name: "expired a few seconds ago", link: sign(t, s, "tars/a.tar", -5*time.Second), wantStatus: http.StatusForbidden, wantCode: "link_expired"},
		{name: "tampered sig", link: tamper(func(p string, q url.Values) string { q.Set("sig", flip(q.Get("sig"))); return p }), wantStatus: http.StatusForbidden, wantCode: "invalid_signature"},
		{name: "truncated sig", link: tamper(func(p string, q url.Values) string { q.Set("sig", q.Get("sig")[:10]); return p }), wantStatus: http.StatusForbidden, wantCode: "invalid_signature"},
		{name: "no sig", link: tamper(func(p string, q url.Values) string { q.Del("sig"); return p }), wantStatus: http.StatusForbidden, wantCode: "invalid_signature"},
		{name: "tampered name", link: tamper(func(p string, q url.Values) string { q.Set("name", "evil.sh"); return p }), wantStatus: http.StatusForbidden, wantCode: "invalid_signature"},
		{name: "no name", link: tamper(func(p string, q url.Values) string { q.Del("name"); return p }), wantStatus: http.StatusForbidden, wantCode: "invalid_signature"},
		{name: "extended exp", link: tamper(func(p string, q url.Values) string {
			exp, _ := strconv.ParseInt(q.Get("exp"), 10, 64)
			q.Set("exp", strconv.FormatInt(exp+86400, 10))
			return p
		}), wantStatus: http.StatusForbidden, wantCode: "invalid_signature"},
		{name: "non-numeric exp", link: tamper(func(p string, q url.Values) string { q.Set("exp", "never"); return p }), wantStatus: http.StatusForbidden, wantCode: "invalid_signature"},
		{name: "other key", link: tamper(func(string, url.Values) string { return LinkPrefix + "tars/b.tar" }), wantStatus: http.StatusForbidden, wantCode: "invalid_signature"},
		{name: "path traversal", link: tamper(func(string, url.Values) string { return LinkPrefix + "tars/../link-secret" }), wantStatus: http.StatusForbidden, wantCode: "invalid_signature"},
		{name: "signed by another store", link: otherLink, wantStatus: http.StatusForbidden, wantCode: "invalid_signature"},
		{name: "signed but missing", link: sign(t, s, "tars/never.tar", time.Hour), wantStatus: http.StatusNotFound, wantCode: "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, body := get(t, srv.URL+tt.link, "")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET %s: status %d, want %d (body %q)", tt.link, resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantCode == "" {
				if string(body) != "secret bytes" {
					t.Fatalf("body %q", body)
				}
				return
			}
			if code := errorCode(t, resp, body); code != tt.wantCode {
				t.Fatalf("error code %q, want %q (body %s)", code, tt.wantCode, body)
			}
			if bytes.Contains(body, []byte("secret bytes")) {
				t.Fatal("refused link leaked the object")
			}
		})
	}
}

// TestLinkSecretPersists: links signed before a restart keep working.
func TestLinkSecretPersists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s1, dir := openStore(t)
	if err := s1.Put(ctx, "tars/a.tar", strings.NewReader("abc"), 3); err != nil {
		t.Fatal(err)
	}
	link := sign(t, s1, "tars/a.tar", time.Hour)

	s2, err := Open(dir)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	srv := serve(t, s2)
	resp, body := get(t, srv.URL+link, "")
	if resp.StatusCode != http.StatusOK || string(body) != "abc" {
		t.Fatalf("link signed before reopening: status %d body %q, want 200 abc", resp.StatusCode, body)
	}
	if again := sign(t, s2, "tars/a.tar", time.Hour); again == "" {
		t.Fatal("empty link")
	}
}

// TestLinkAfterDelete: a link to a deleted tar answers 404, not 500.
func TestLinkAfterDelete(t *testing.T) {
	t.Parallel()
	s, _, _, _ := stitched(t, tarplan.S3Limits)
	srv := serve(t, s)
	link := srv.URL + sign(t, s, tarKey, time.Hour)
	if err := s.Delete(context.Background(), tarKey); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, link, "")
	if resp.StatusCode != http.StatusNotFound || errorCode(t, resp, body) != "not_found" {
		t.Fatalf("link to a deleted tar: status %d body %s, want 404 not_found", resp.StatusCode, body)
	}
}
