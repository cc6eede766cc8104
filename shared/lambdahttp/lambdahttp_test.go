package lambdahttp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
)

// event is an HTTP API (payload 2.0) event as API Gateway sends it: the
// JSON shape is the documented one, decoded by aws-lambda-go's own types.
const event = `{
  "version": "2.0",
  "routeKey": "$default",
  "rawPath": "/api/search",
  "rawQueryString": "q=nginx&limit=3&q=%E6%95%B0%E6%8D%AE",
  "cookies": ["a=1", "b=2"],
  "headers": {
    "accept": "application/json",
    "content-type": "application/json",
    "host": "abc123.execute-api.us-east-1.amazonaws.com",
    "x-forwarded-for": "198.51.100.7, 203.0.113.9",
    "x-forwarded-proto": "https",
    "x-multi": "one,two"
  },
  "requestContext": {
    "accountId": "123456789012",
    "apiId": "abc123",
    "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
    "http": {"method": "POST", "path": "/api/search", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "curl/8"},
    "requestId": "id",
    "routeKey": "$default",
    "stage": "$default",
    "time": "26/Nov/2026:12:00:00 +0000",
    "timeEpoch": 1795694400000
  },
  "body": "eyJxIjoibmdpbngifQ==",
  "isBase64Encoded": true
}`

func decodeEvent(t *testing.T, raw string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestRequest: what the router sees is what the client sent, and the
// client address is API Gateway's, not a forwarded header.
func TestRequest(t *testing.T) {
	t.Parallel()
	r, err := Request(context.Background(), decodeEvent(t, event))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	checks := []struct{ name, got, want string }{
		{"method", r.Method, "POST"},
		{"path", r.URL.Path, "/api/search"},
		{"query q", strings.Join(r.URL.Query()["q"], "|"), "nginx|数据"},
		{"limit", r.URL.Query().Get("limit"), "3"},
		{"body", string(body), `{"q":"nginx"}`},
		{"host", r.Host, "abc123.execute-api.us-east-1.amazonaws.com"},
		{"remote", r.RemoteAddr, "203.0.113.9:0"},
		{"proto header", r.Header.Get("X-Forwarded-Proto"), "https"},
		{"multi header", r.Header.Get("X-Multi"), "one,two"},
		{"cookie", r.Header.Get("Cookie"), "a=1; b=2"},
		{"request uri", r.RequestURI, "/api/search?q=nginx&limit=3&q=%E6%95%B0%E6%8D%AE"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if r.ContentLength != int64(len(body)) {
		t.Errorf("ContentLength %d, body %d bytes", r.ContentLength, len(body))
	}
}

func TestRequestIPv6(t *testing.T) {
	t.Parallel()
	ev := decodeEvent(t, event)
	ev.RequestContext.HTTP.SourceIP = "2001:db8::1"
	r, err := Request(context.Background(), ev)
	if err != nil || r.RemoteAddr != "[2001:db8::1]:0" {
		t.Fatalf("RemoteAddr %q, %v", r.RemoteAddr, err)
	}
}

// TestBadEvents: an event no router could serve is a 400 in the API's
// error shape, not a failed invocation.
func TestBadEvents(t *testing.T) {
	t.Parallel()
	h := Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("router called") }), nil)
	for name, mutate := range map[string]func(*events.APIGatewayV2HTTPRequest){
		"bad base64":  func(ev *events.APIGatewayV2HTTPRequest) { ev.Body = "%%%" },
		"no method":   func(ev *events.APIGatewayV2HTTPRequest) { ev.RequestContext.HTTP.Method = "" },
		"bad target":  func(ev *events.APIGatewayV2HTTPRequest) { ev.RawPath = "no-slash" },
		"bad escapes": func(ev *events.APIGatewayV2HTTPRequest) { ev.RawPath = "/%zz" },
	} {
		t.Run(name, func(t *testing.T) {
			ev := decodeEvent(t, event)
			mutate(&ev)
			res, err := h(context.Background(), ev)
			if err != nil || res.StatusCode != http.StatusBadRequest || !strings.Contains(res.Body, `"code":"invalid_request"`) {
				t.Fatalf("%d %q %v", res.StatusCode, res.Body, err)
			}
			// Written by the API's one error writer: JSON, never cached.
			var body struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			if json.Unmarshal([]byte(res.Body), &body) != nil || body.Error.Message == "" || res.Headers["Cache-Control"] != "no-store" ||
				!strings.HasPrefix(res.Headers["Content-Type"], "application/json") {
				t.Fatalf("error answer %v %q: want httpapi's error shape and headers", res.Headers, res.Body)
			}
		})
	}
}

// TestResponse: JSON goes as text, binary as base64, cookies apart,
// repeated headers joined, and the status and redirect kept.
func TestResponse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		serve    http.HandlerFunc
		wantB64  bool
		wantBody string
		check    func(t *testing.T, res events.APIGatewayV2HTTPResponse)
	}{
		{
			name: "json",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Add("Vary", "Accept")
				w.Header().Add("Vary", "Origin")
				http.SetCookie(w, &http.Cookie{Name: "s", Value: "1"})
				http.SetCookie(w, &http.Cookie{Name: "t", Value: "2"})
				w.WriteHeader(http.StatusAccepted)
				io.WriteString(w, `{"名":"nginx"}`)
			},
			wantBody: `{"名":"nginx"}`,
			check: func(t *testing.T, res events.APIGatewayV2HTTPResponse) {
				if res.StatusCode != http.StatusAccepted || res.Headers["Vary"] != "Accept, Origin" || strings.Join(res.Cookies, ";") != "s=1;t=2" {
					t.Fatalf("%+v", res)
				}
				if _, ok := res.Headers["Set-Cookie"]; ok {
					t.Fatal("Set-Cookie left in Headers")
				}
			},
		},
		{
			name: "binary",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/octet-stream")
				w.Write([]byte{0, 1, 0xff})
			},
			wantB64:  true,
			wantBody: base64.StdEncoding.EncodeToString([]byte{0, 1, 0xff}),
		},
		{
			name: "text that is not UTF-8",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Write([]byte{0xff, 0xfe})
			},
			wantB64:  true,
			wantBody: base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe}),
		},
		{
			name: "redirect",
			serve: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "https://bucket.s3.amazonaws.com/tars/x.tar?X-Amz-Signature=abc", http.StatusSeeOther)
			},
			check: func(t *testing.T, res events.APIGatewayV2HTTPResponse) {
				if res.StatusCode != http.StatusSeeOther || res.Headers["Location"] != "https://bucket.s3.amazonaws.com/tars/x.tar?X-Amz-Signature=abc" {
					t.Fatalf("%+v", res)
				}
			},
		},
		{
			name: "too large",
			serve: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Write(make([]byte, MaxResponseBytes+1))
			},
			check: func(t *testing.T, res events.APIGatewayV2HTTPResponse) {
				if res.StatusCode != http.StatusInternalServerError || !strings.Contains(res.Body, "internal_error") {
					t.Fatalf("%d %.100s", res.StatusCode, res.Body)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			res, err := Handler(c.serve, nil)(context.Background(), decodeEvent(t, event))
			if err != nil {
				t.Fatal(err)
			}
			if c.wantBody != "" && (res.Body != c.wantBody || res.IsBase64Encoded != c.wantB64) {
				t.Fatalf("body %q base64=%v, want %q base64=%v", res.Body, res.IsBase64Encoded, c.wantBody, c.wantB64)
			}
			if c.check != nil {
				c.check(t, res)
			}
		})
	}
}

// TestContextReachesRouter: the invocation's context (its deadline) is the
// request's.
func TestContextReachesRouter(t *testing.T) {
	t.Parallel()
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "inv")
	var got any
	h := Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Context().Value(key{}) }), nil)
	if _, err := h(ctx, decodeEvent(t, event)); err != nil || got != "inv" {
		t.Fatalf("context value %v, %v", got, err)
	}
}
