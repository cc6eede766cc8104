package lambdaapp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/tarport/tarport/shared/testkit/lambdatest"
	"github.com/tarport/tarport/shared/testkit/regtest"
)

// TestGuardsOnLambda: behind CloudFront (an origin secret), with an access
// token, a rate limit of 3 a minute and quotas: a request without the
// secret is refused whatever viewer it claims, one without the token is
// refused, the limit holds across two instances of a function (the
// counters are in the table), and a tar over the client's quota or the
// service's budget is refused before anything is queued.
func TestGuardsOnLambda(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	const secret, token = "cloudfront-origin-secret", "lambda-access-token-0123"
	guarded := append(st.env[:len(st.env):len(st.env)],
		"TARPORT_ORIGIN_SECRET="+secret,
		"TARPORT_ACCESS_TOKEN="+token,
		"TARPORT_RATE_LIMIT_PER_MINUTE=3",
	)
	start := func(logicalID, name string, env ...string) *lambdatest.Function {
		f := lambdatest.Start(t, lambdatest.Build(t, logicalID), lambdatest.Options{Env: append(guarded[:len(guarded):len(guarded)], env...), Timeout: 29 * time.Second, Name: name})
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s output:\n%s", name, f.Log())
			}
		})
		return f
	}
	a, b := start("SearchFunction", "search-a"), start("SearchFunction", "search-b")
	call := func(f *lambdatest.Function, method, target, body string, headers ...string) events.APIGatewayV2HTTPResponse {
		t.Helper()
		res, err := f.HTTP(t.Context(), method, target, body, headers...)
		if err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		return res
	}
	code := func(res events.APIGatewayV2HTTPResponse) string {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		json.Unmarshal([]byte(res.Body), &e)
		return e.Error.Code
	}
	viewer := func(addr string) []string {
		return []string{"X-Tarport-Origin-Secret: " + secret, "X-Tarport-Token: " + token, "CloudFront-Viewer-Address: " + addr}
	}

	// Straight to the function (the execute-api URL), claiming a viewer.
	for _, hs := range [][]string{
		{"CloudFront-Viewer-Address: 192.0.2.1:443", "X-Tarport-Token: " + token},
		{"X-Tarport-Origin-Secret: guess", "CloudFront-Viewer-Address: 192.0.2.1:443", "X-Tarport-Token: " + token},
	} {
		if res := call(a, "GET", "/api/search?q=nginx", "", hs...); res.StatusCode != http.StatusForbidden {
			t.Fatalf("without the origin secret (%q): %d %s", hs, res.StatusCode, res.Body)
		}
	}
	// Through CloudFront without the token.
	if res := call(a, "GET", "/api/search?q=nginx", "", "X-Tarport-Origin-Secret: "+secret); res.StatusCode != http.StatusUnauthorized || code(res) != "access_denied" {
		t.Fatalf("without the token: %d %s", res.StatusCode, res.Body)
	}
	if res := call(a, "GET", "/api/health", ""); res.StatusCode != http.StatusOK {
		t.Fatalf("health: %d %s", res.StatusCode, res.Body)
	}

	// One viewer, two instances, one bucket of 3. (The token refusal above
	// counted against the edge's address, not this viewer's.)
	for i, f := range []*lambdatest.Function{a, b, a} {
		if res := call(f, "GET", "/api/search?q=nginx", "", viewer("203.0.113.9:5000")...); res.StatusCode != http.StatusOK {
			t.Fatalf("search %d: %d %s", i+1, res.StatusCode, res.Body)
		}
	}
	for _, f := range []*lambdatest.Function{b, a} {
		res := call(f, "GET", "/api/search?q=nginx", "", viewer("203.0.113.9:6000")...)
		if res.StatusCode != http.StatusTooManyRequests || code(res) != "rate_limited" || res.Headers["Retry-After"] == "" {
			t.Fatalf("a 4th search, on either instance: %d %v %s", res.StatusCode, res.Headers, res.Body)
		}
	}
	if res := call(b, "GET", "/api/search?q=nginx", "", viewer("2001:db8::5:443")...); res.StatusCode != http.StatusOK {
		t.Fatalf("another viewer: %d %s", res.StatusCode, res.Body)
	}

	// Quotas: a tar over the viewer's quota, then over the budget.
	pushed := regtest.PushImage(t, st.reg, "team/quota", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 2 << 20, Random: true}}})
	body := fmt.Sprintf(`{"image":%q}`, pushed.Ref)
	for _, tc := range []struct {
		name, env, whose string
	}{
		{"client quota", "TARPORT_CLIENT_QUOTA_PER_DAY=1MiB", "your address"},
		{"budget", "TARPORT_BUDGET_PER_DAY=1MiB", "this service"},
	} {
		dl := start("DownloadFunction", tc.name, tc.env)
		res := call(dl, "POST", "/api/downloads", body, viewer("198.51.100.20:1000")...)
		if res.StatusCode != http.StatusTooManyRequests || code(res) != "quota_exceeded" || res.Headers["Retry-After"] == "" || !strings.Contains(res.Body, tc.whose) {
			t.Fatalf("%s: %d %v %s", tc.name, res.StatusCode, res.Headers, res.Body)
		}
		dl.Stop()
	}
	if visible, inFlight, delayed := st.depth(st.tasksURL); visible+inFlight+delayed != 0 {
		t.Fatalf("%d tasks queued for refused downloads", visible+inFlight+delayed)
	}
}
