package httpapi

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// codeConstants parses shared/tarport/error.go for every constant of type
// Code, so a code added there without a status here fails this test.
func codeConstants(t *testing.T) map[string]tarport.Code {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "../tarport/error.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]tarport.Code{}
	for _, decl := range f.Decls {
		gd, ok := decl.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Code" {
				continue
			}
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s is not a string literal", name.Name)
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out[name.Name] = tarport.Code(v)
			}
		}
	}
	if len(out) < 18 {
		t.Fatalf("found %d Code constants in error.go, want at least 18", len(out))
	}
	return out
}

// TestEveryCodeHasAStatus: only internal_error is a 500; every other code
// has its own entry in the one table.
func TestEveryCodeHasAStatus(t *testing.T) {
	t.Parallel()
	for name, code := range codeConstants(t) {
		status, ok := statusByCode[code]
		if !ok {
			t.Errorf("%s (%q) has no status: it would fall through to 500", name, code)
			continue
		}
		if (status == http.StatusInternalServerError) != (code == tarport.CodeInternal) {
			t.Errorf("%s (%q) maps to %d", name, code, status)
		}
		if StatusOf(code) != status {
			t.Errorf("StatusOf(%q) = %d, table says %d", code, StatusOf(code), status)
		}
	}
	if StatusOf("no_such_code") != http.StatusInternalServerError {
		t.Errorf("an unknown code is %d, want 500", StatusOf("no_such_code"))
	}
}

// TestStatusesAreTheDocumentedOnes: the table agrees with docs/API.md.
func TestStatusesAreTheDocumentedOnes(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (`[a-z_]+`(?:, `[a-z_]+`)*) \\| (\\d{3}) \\|")
	codeRE := regexp.MustCompile("`([a-z_]+)`")
	documented := map[tarport.Code]bool{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		status, _ := strconv.Atoi(m[2])
		for _, c := range codeRE.FindAllStringSubmatch(m[1], -1) {
			code := tarport.Code(c[1])
			documented[code] = true
			if got, ok := statusByCode[code]; !ok || got != status {
				t.Errorf("API.md: %s is %d; the table says %d (present %v)", code, status, got, ok)
			}
		}
	}
	if len(documented) < 18 {
		t.Fatalf("read %d codes from API.md's table; the test's pattern is off", len(documented))
	}
	for name, code := range codeConstants(t) {
		if !documented[code] {
			t.Errorf("%s (%q, %d) is not in docs/API.md's table", name, code, statusByCode[code])
		}
	}
}

// TestErrorAnswers: a Create error leaves as its code's status in the
// error shape, with its safe message only.
func TestErrorAnswers(t *testing.T) {
	t.Parallel()
	const secret = "dial tcp 10.1.2.3:443: connect: secret-token-xyz"
	rateLimited := tarport.Errorf(tarport.CodeRateLimited, "the registry limits pulls")
	rateLimited.RetryAfter = 42
	for _, tc := range []struct {
		name    string
		err     error
		status  int
		code    tarport.Code
		message string
	}{
		{"coded", tarport.Errorf(tarport.CodePlatformNotFound, "no linux/s390x; available: linux/amd64"), 404, tarport.CodePlatformNotFound, "no linux/s390x; available: linux/amd64"},
		{"coded, wrapped by the caller", fmt.Errorf("creating job: %w", tarport.Errorf(tarport.CodeUnauthorized, "log in")), 401, tarport.CodeUnauthorized, "log in"},
		{"coded around an internal error", tarport.Wrap(errors.New(secret), tarport.CodeUpstream, "the registry failed"), 502, tarport.CodeUpstream, "the registry failed"},
		{"uncoded", errors.New(secret), 500, tarport.CodeInternal, "internal error"},
		{"uncoded, wrapped", fmt.Errorf("stitching: %w", errors.New(secret)), 500, tarport.CodeInternal, "internal error"},
		{"context canceled", context.Canceled, 500, tarport.CodeInternal, "internal error"},
		{"rate limited upstream", rateLimited, 429, tarport.CodeRateLimited, "the registry limits pulls"},
		{"queue down", tarport.Wrap(errors.New(secret), tarport.CodeUnavailable, "could not queue the download; try again"), 503, tarport.CodeUnavailable, "could not queue the download; try again"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) { return download.View{}, tc.err }}
			api := newTestAPI(t, d, Options{})
			for _, r := range []*http.Request{
				post("/api/downloads", `{"image":"nginx"}`),
				httpGet("/api/pull/nginx"),
			} {
				res := do(t, api, r)
				msg := checkError(t, res, tc.status, tc.code)
				if msg != tc.message {
					t.Errorf("%s: message %q, want %q", r.URL.Path, msg, tc.message)
				}
				if strings.Contains(res.raw, "secret-token-xyz") || strings.Contains(res.raw, "10.1.2.3") {
					t.Errorf("%s: the answer leaks the internal error: %s", r.URL.Path, res.raw)
				}
				if ra := res.header.Get("Retry-After"); (tc.code == tarport.CodeRateLimited) != (ra == "42") {
					t.Errorf("%s: Retry-After %q", r.URL.Path, ra)
				}
				if res.header.Get("X-Content-Type-Options") != "nosniff" {
					t.Errorf("%s: no nosniff", r.URL.Path)
				}
			}
		})
	}
}

func httpGet(path string) *http.Request {
	return mustRequest(http.MethodGet, path)
}

func mustRequest(method, path string) *http.Request {
	r, err := http.NewRequest(method, "http://tarport.example"+path, nil)
	if err != nil {
		panic(err)
	}
	r.RemoteAddr = "192.0.2.1:1234"
	return r
}

// TestPanicsAnswerInternalError: a panic in a handler is logged, never
// shown: a 500 in the error shape.
func TestPanicsAnswerInternalError(t *testing.T) {
	t.Parallel()
	d := &fakeDownloads{
		create: func(context.Context, download.Request) (download.View, error) {
			panic("runtime error: index out of range [3] with length 2 at service.go:123")
		},
		status: func(context.Context, string) (download.View, error) { panic(errors.New("secret-token-xyz")) },
	}
	api := newTestAPI(t, d, Options{})
	for _, r := range []*http.Request{post("/api/downloads", `{"image":"nginx"}`), httpGet("/api/downloads/abc"), httpGet("/api/pull/nginx")} {
		res := do(t, api, r)
		if msg := checkError(t, res, 500, tarport.CodeInternal); msg != "internal error" {
			t.Errorf("%s: message %q", r.URL.Path, msg)
		}
		if strings.Contains(res.raw, "service.go") || strings.Contains(res.raw, "secret") || strings.Contains(res.raw, "goroutine") {
			t.Errorf("%s: the answer leaks the panic: %s", r.URL.Path, res.raw)
		}
	}
}

// TestAbortHandlerPanicsPassThrough: http.ErrAbortHandler is how a handler
// asks net/http to drop the connection; it must not become a 500 body.
func TestAbortHandlerPanicsPassThrough(t *testing.T) {
	t.Parallel()
	d := &fakeDownloads{create: func(context.Context, download.Request) (download.View, error) { panic(http.ErrAbortHandler) }}
	api := newTestAPI(t, d, Options{})
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler re-panicked", v)
		}
	}()
	do(t, api, post("/api/downloads", `{"image":"nginx"}`))
}

// TestPartialRouters: a Lambda serving only one part of the API answers
// the other part's paths 404 in the error shape (never a nil dereference).
func TestPartialRouters(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	downloadsOnly := New(Options{Downloads: &fakeDownloads{}, Logger: log})
	nothing := New(Options{Logger: log})
	cases := []struct {
		name   string
		api    http.Handler
		req    *http.Request
		status int
	}{
		{"search without discovery", downloadsOnly, httptest.NewRequest("GET", "/api/search?q=nginx", nil), 404},
		{"popular without discovery", downloadsOnly, httptest.NewRequest("GET", "/api/popular", nil), 404},
		{"details without discovery", downloadsOnly, httptest.NewRequest("POST", "/api/image-details", strings.NewReader(`{"image":"nginx"}`)), 404},
		{"downloads without downloads", nothing, post("/api/downloads", `{"image":"nginx"}`), 404},
		{"pull without downloads", nothing, httptest.NewRequest("GET", "/api/pull/nginx", nil), 404},
		{"health always", nothing, httptest.NewRequest("GET", "/api/health", nil), 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := do(t, c.api, c.req)
			if res.status != c.status {
				t.Fatalf("status %d, want %d: %s", res.status, c.status, res.raw)
			}
			if c.status == 404 && !strings.Contains(res.raw, `"code":"not_found"`) {
				t.Fatalf("body %s", res.raw)
			}
		})
	}
}
