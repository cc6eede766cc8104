package httpapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// TestJobCreatingRefusesCrossSite: a page of another site cannot start a
// download: not with a form (text/plain needs no CORS preflight), not with
// an Origin that is not the server's, not when the browser says it is
// cross-site; curl (no Origin) and the server's own page can. A HEAD never
// creates a job.
func TestJobCreatingRefusesCrossSite(t *testing.T) {
	t.Parallel()
	const public = "http://tarport.example:8080"
	type req struct {
		method, path, ctype, origin, fetchSite, host string
	}
	post := func(ctype, origin, fetchSite string) req {
		return req{http.MethodPost, "/api/downloads", ctype, origin, fetchSite, "tarport.example:8080"}
	}
	for _, tc := range []struct {
		name   string
		public string
		r      req
		status int
		code   tarport.Code
	}{
		{"curl with JSON", public, post("application/json", "", ""), http.StatusAccepted, ""},
		{"JSON with a charset", public, post("application/json; charset=utf-8", "", ""), http.StatusAccepted, ""},
		{"the server's own page", public, post("application/json", public, "same-origin"), http.StatusAccepted, ""},
		{"a form's text/plain", public, post("text/plain", "", ""), http.StatusUnsupportedMediaType, tarport.CodeMediaType},
		{"a form's urlencoded", public, post("application/x-www-form-urlencoded", "", ""), http.StatusUnsupportedMediaType, tarport.CodeMediaType},
		{"no content type", public, post("", "", ""), http.StatusUnsupportedMediaType, tarport.CodeMediaType},
		{"a foreign Origin", public, post("application/json", "http://evil.example", ""), http.StatusForbidden, tarport.CodeCrossSite},
		{"a foreign Origin with text/plain", public, post("text/plain", "http://evil.example", "cross-site"), http.StatusForbidden, tarport.CodeCrossSite},
		{"an opaque Origin", public, post("application/json", "null", ""), http.StatusForbidden, tarport.CodeCrossSite},
		{"cross-site by Sec-Fetch-Site", public, post("application/json", "", "cross-site"), http.StatusForbidden, tarport.CodeCrossSite},
		{"same-site by Sec-Fetch-Site", public, post("application/json", "", "same-site"), http.StatusForbidden, tarport.CodeCrossSite},
		{"same origin on localhost", public, req{http.MethodPost, "/api/downloads", "application/json", "http://localhost:8080", "same-origin", "localhost:8080"}, http.StatusAccepted, ""},
		{"same origin on 127.0.0.1", public, req{http.MethodPost, "/api/downloads", "application/json", "http://127.0.0.1:8080", "same-origin", "127.0.0.1:8080"}, http.StatusAccepted, ""},
		{"same origin on a LAN address", public, req{http.MethodPost, "/api/downloads", "application/json", "http://192.168.1.5:8080", "", "192.168.1.5:8080"}, http.StatusAccepted, ""},
		{"another site on an IP address", public, req{http.MethodPost, "/api/downloads", "application/json", "http://203.0.113.9", "", "192.168.1.5:8080"}, http.StatusForbidden, tarport.CodeCrossSite},
		{"same origin under a rebound name", public, req{http.MethodPost, "/api/downloads", "application/json", "http://rebind.example:8080", "same-origin", "rebind.example:8080"}, http.StatusForbidden, tarport.CodeCrossSite},
		{"the seed's endpoint", public, req{http.MethodPost, "/api/download", "text/plain", "", "", ""}, http.StatusUnsupportedMediaType, tarport.CodeMediaType},
		{"pull from another site", public, req{http.MethodGet, "/api/pull/nginx", "", "http://evil.example", "cross-site", ""}, http.StatusForbidden, tarport.CodeCrossSite},
		{"pull with curl", public, req{http.MethodGet, "/api/pull/nginx", "", "", "", ""}, http.StatusServiceUnavailable, ""},
		{"a link to pull on another site, clicked", public, req{http.MethodGet, "/api/pull/nginx", "", "", "cross-site navigate ?1", ""}, http.StatusServiceUnavailable, ""},
		{"a navigation to pull without a click", public, req{http.MethodGet, "/api/pull/nginx", "", "", "cross-site navigate", ""}, http.StatusForbidden, tarport.CodeCrossSite},
		{"a clicked navigation that POSTs", public, req{http.MethodPost, "/api/downloads", "application/json", "http://evil.example", "cross-site navigate ?1", ""}, http.StatusForbidden, tarport.CodeCrossSite},
		{"browser pull under the public name", public, req{http.MethodGet, "/api/pull/nginx", "", "", "none", "tarport.example:8080"}, http.StatusServiceUnavailable, ""},
		{"browser pull by LAN address", public, req{http.MethodGet, "/api/pull/nginx", "", "", "none", "192.168.1.5:8080"}, http.StatusServiceUnavailable, ""},
		{"browser pull by IPv6 address", public, req{http.MethodGet, "/api/pull/nginx", "", "", "none", "[2001:db8::5]:8080"}, http.StatusServiceUnavailable, ""},
		{"browser pull on localhost", public, req{http.MethodGet, "/api/pull/nginx", "", "", "same-origin", "localhost:8080"}, http.StatusServiceUnavailable, ""},
		// DNS rebinding: a same-origin GET (no Origin) under the attacker's name.
		{"pull under a rebound name", public, req{http.MethodGet, "/api/pull/nginx", "", "", "same-origin", "rebind.example:8080"}, http.StatusForbidden, tarport.CodeCrossSite},
		{"browser post under a rebound name", public, req{http.MethodPost, "/api/downloads", "application/json", "http://rebind.example", "same-origin", "rebind.example"}, http.StatusForbidden, tarport.CodeCrossSite},
		{"curl with a forged Host", public, req{http.MethodPost, "/api/downloads", "application/json", "", "", "evil.example"}, http.StatusAccepted, ""},
		{"no public address, any name", "", req{http.MethodGet, "/api/pull/nginx", "", "", "same-origin", "abc.execute-api.example"}, http.StatusServiceUnavailable, ""},
		{"HEAD of pull", public, req{http.MethodHead, "/api/pull/nginx", "", "", "", ""}, http.StatusMethodNotAllowed, tarport.CodeMethodNotAllowed},
		// On Lambda behind CloudFront there is no public address to compare
		// Origin with: Sec-Fetch-Site and the JSON label still hold.
		{"no public address, foreign Origin", "", post("application/json", "https://d111.cloudfront.net", "same-origin"), http.StatusAccepted, ""},
		{"no public address, cross-site", "", post("application/json", "http://evil.example", "cross-site"), http.StatusForbidden, tarport.CodeCrossSite},
		{"no public address, a form", "", post("text/plain", "", ""), http.StatusUnsupportedMediaType, tarport.CodeMediaType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := &fakeDownloads{status: func(context.Context, string) (download.View, error) { return pendingView(), nil }}
			api := newTestAPI(t, d, Options{PublicURL: tc.public, RebindGuard: tc.public != ""})
			var body *strings.Reader
			if tc.r.method == http.MethodPost {
				body = strings.NewReader(`{"image":"nginx"}`)
			} else {
				body = strings.NewReader("")
			}
			r := httptest.NewRequest(tc.r.method, tc.r.path, body)
			// fetchSite is "site [mode [user]]".
			fetch := strings.Fields(tc.r.fetchSite)
			fetch = append(fetch, "", "", "")
			for k, v := range map[string]string{"Content-Type": tc.r.ctype, "Origin": tc.r.origin, "Sec-Fetch-Site": fetch[0], "Sec-Fetch-Mode": fetch[1], "Sec-Fetch-User": fetch[2]} {
				if v != "" {
					r.Header.Set(k, v)
				}
			}
			r.Host = "tarport.example:8080" // the public address, unless the case says
			if tc.r.host != "" {
				r.Host = tc.r.host
			}
			res := do(t, api, r)
			if tc.code != "" {
				if tc.r.method == http.MethodHead {
					if res.status != tc.status || res.header.Get("Allow") != http.MethodGet {
						t.Errorf("HEAD: %d, Allow %q; want %d, GET", res.status, res.header.Get("Allow"), tc.status)
					}
				} else {
					checkError(t, res, tc.status, tc.code)
				}
				if n := len(d.createCalls()); n != 0 {
					t.Errorf("the service was asked to create %d jobs", n)
				}
				return
			}
			if res.status != tc.status || len(d.createCalls()) != 1 {
				t.Errorf("%d (%s), %d jobs asked for; want %d and one", res.status, res.raw, len(d.createCalls()), tc.status)
			}
		})
	}
}

// TestNonCanonicalPathsAnswerJSON: a path ServeMux would redirect to its
// cleaned form (with an HTML body) is answered here, as JSON.
func TestNonCanonicalPathsAnswerJSON(t *testing.T) {
	t.Parallel()
	api := newTestAPI(t, &fakeDownloads{}, Options{})
	for _, p := range []string{"/api//downloads/x", "/api/pull/a/../nginx", "/api/./health", "/api/downloads/x/"} {
		res := do(t, api, httpGet(p))
		if res.status == http.StatusMovedPermanently || res.header.Get("Location") != "" {
			t.Errorf("%s: %d to %q, want no redirect", p, res.status, res.header.Get("Location"))
		}
		checkError(t, res, http.StatusNotFound, tarport.CodeNotFound)
	}
}
