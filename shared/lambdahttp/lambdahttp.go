// Package lambdahttp serves an http.Handler to API Gateway HTTP API events
// (payload format 2.0), so the Lambdas run the very router the local server
// runs.
//
// We convert events ourselves rather than take aws-lambda-go-api-proxy: its
// module pulls six web frameworks into go.mod for about a hundred lines of
// conversion, which are tested here against the event shapes API Gateway
// sends.
package lambdahttp

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tarport/tarport/shared/httpapi"
	"github.com/tarport/tarport/shared/tarport"
)

// MaxResponseBytes is Lambda's limit on a synchronous response (6 MB)
// less room for the event's JSON and base64's growth.
const MaxResponseBytes = 4 << 20

// Handler returns a Lambda handler that serves h.
func Handler(h http.Handler, log *slog.Logger) func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	if log == nil {
		log = slog.Default()
	}
	return func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		r, err := Request(ctx, ev)
		if err != nil {
			// API Gateway never sends such an event; answer rather than
			// fail the invocation, which would be a bare 500.
			log.Warn("bad API Gateway event", "err", err)
			return errorResponse(log, tarport.Wrap(err, tarport.CodeInvalid, "the request could not be read")), nil
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return Response(w.Result(), log), nil
	}
}

// Request turns an API Gateway event into the request the router sees.
func Request(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (*http.Request, error) {
	path := ev.RawPath
	if path == "" {
		path = "/"
	}
	target := path
	if ev.RawQueryString != "" {
		target += "?" + ev.RawQueryString
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, fmt.Errorf("parsing request target %q: %w", target, err)
	}
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		if body, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
			return nil, fmt.Errorf("decoding base64 body: %w", err)
		}
	}
	method := ev.RequestContext.HTTP.Method
	if method == "" {
		return nil, fmt.Errorf("event has no HTTP method")
	}
	r, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	r.RequestURI = target
	r.ContentLength = int64(len(body))
	// API Gateway joins repeated headers with commas, which HTTP allows
	// for every header but Set-Cookie (a response header) and Cookie
	// (sent apart, in Cookies).
	for k, v := range ev.Headers {
		r.Header.Set(k, v)
	}
	if len(ev.Cookies) > 0 {
		r.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	r.Host = ev.RequestContext.DomainName
	if h := r.Header.Get("Host"); h != "" {
		r.Host = h
	}
	// The rate limiter keys on RemoteAddr: API Gateway's view of the
	// client, not a header the client could forge.
	if ip := ev.RequestContext.HTTP.SourceIP; ip != "" {
		r.RemoteAddr = net.JoinHostPort(ip, "0")
	}
	return r, nil
}

// Response turns the router's answer into the event API Gateway expects.
func Response(res *http.Response, log *slog.Logger) events.APIGatewayV2HTTPResponse {
	var body bytes.Buffer
	_, _ = body.ReadFrom(res.Body)
	if body.Len() > MaxResponseBytes {
		log.Error("response too large for Lambda", "bytes", body.Len(), "status", res.StatusCode)
		return errorResponse(log, tarport.Errorf(tarport.CodeInternal, "the answer was too large"))
	}
	out := events.APIGatewayV2HTTPResponse{StatusCode: res.StatusCode, Headers: map[string]string{}}
	for k, vs := range res.Header {
		if http.CanonicalHeaderKey(k) == "Set-Cookie" {
			out.Cookies = append(out.Cookies, vs...)
			continue
		}
		out.Headers[k] = strings.Join(vs, ", ")
	}
	if textual(res.Header.Get("Content-Type")) && utf8.Valid(body.Bytes()) {
		out.Body = body.String()
	} else if body.Len() > 0 {
		out.Body = base64.StdEncoding.EncodeToString(body.Bytes())
		out.IsBase64Encoded = true
	}
	return out
}

// textual says whether a body of this type goes as text (API Gateway
// passes it on unchanged) rather than base64.
func textual(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return strings.HasPrefix(mt, "text/") || mt == "application/json" || strings.HasSuffix(mt, "+json") ||
		mt == "application/javascript" || mt == "application/xml" || strings.HasSuffix(mt, "+xml")
}

// errorResponse answers err as the API answers every error: its status
// from the one table, the JSON error shape, written by httpapi.WriteError.
func errorResponse(log *slog.Logger, err error) events.APIGatewayV2HTTPResponse {
	w := httptest.NewRecorder()
	// The request is only named in the log line: there is none to name.
	httpapi.WriteError(w, httptest.NewRequest(http.MethodPost, "/", nil), log, err)
	res := w.Result()
	var body bytes.Buffer
	_, _ = body.ReadFrom(res.Body)
	out := events.APIGatewayV2HTTPResponse{StatusCode: res.StatusCode, Headers: map[string]string{}, Body: body.String()}
	for k, vs := range res.Header {
		out.Headers[k] = strings.Join(vs, ", ")
	}
	return out
}
