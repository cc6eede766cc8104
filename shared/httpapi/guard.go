package httpapi

import (
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/tarport/tarport/shared/tarport"
)

// Guards in front of the handlers: what a public endpoint that makes the
// server download gigabytes must check before anything else runs.

// jobCreating wraps the handlers that start downloads: other sites' pages
// may not start them (a form can POST text/plain cross-site without a
// CORS preflight; a JSON body cannot), and a HEAD (a link checker, a
// crawler) never does.
func (a *API) jobCreating(h http.HandlerFunc) http.HandlerFunc {
	return a.limited(func(w http.ResponseWriter, r *http.Request) {
		if err := a.sameSite(r); err != nil {
			writeError(w, r, a.log, err)
			return
		}
		if r.Method == http.MethodPost {
			if err := jsonContent(r); err != nil {
				writeError(w, r, a.log, err)
				return
			}
		}
		h(w, r)
	})
}

// sameSite refuses a request a browser says comes from another site's
// page: Sec-Fetch-Site other than same-origin or none (a typed URL, curl
// sends none), or an Origin that is neither the configured public address
// nor the same origin under a loopback name or an IP address. (A
// same-origin request under any other name could be a DNS-rebinding page;
// one under the public address, localhost or an IP address cannot.)
//
// A browser's request must also be addressed to the public address's host,
// a loopback name or an IP address: a page served under the attacker's own
// name, rebound to this server's address (DNS rebinding), is same-origin to
// the browser and sends no Origin on a GET, but it cannot choose the Host.
// (A non-browser client can send any Host: it gets links on the public
// address all the same.)
func (a *API) sameSite(r *http.Request) error {
	refuse := tarport.Errorf(tarport.CodeCrossSite, "a page of another site cannot start downloads on this server")
	if a.opts.RebindGuard && r.Header.Get("Sec-Fetch-Site") != "" && a.public != nil && !a.knownHost(r.Host) {
		return tarport.Errorf(tarport.CodeCrossSite, "this server answers as %s: set TARPORT_PUBLIC_URL to the address clients use, or use an IP address", a.public.Host)
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		// A link to /api/pull on another site, clicked by its reader: a
		// top-level navigation the user made (a page cannot fake the
		// user's activation), so the download is theirs to start.
		if r.Method == http.MethodGet && r.Header.Get("Sec-Fetch-Mode") == "navigate" && r.Header.Get("Sec-Fetch-User") == "?1" {
			return nil
		}
		return refuse
	}
	origin := r.Header.Get("Origin")
	switch {
	case origin == "":
		return nil
	case a.public != nil && strings.EqualFold(origin, a.public.Scheme+"://"+a.public.Host):
		return nil
	}
	u, err := url.Parse(origin)
	switch {
	case err != nil || u.Host == "": // "null": a sandboxed or opaque page
		return refuse
	case strings.EqualFold(u.Host, r.Host) && (loopbackName(u.Hostname()) || net.ParseIP(u.Hostname()) != nil):
		return nil // the server's own page, under a name no rebinding page can have
	case a.public == nil:
		// No public address to compare with (a Lambda behind CloudFront,
		// which reaches it under its own Host): Sec-Fetch-Site and the
		// JSON body are the checks.
		return nil
	}
	return refuse
}

// knownHost says whether a request addressed to hostport may start a
// download: the public address's host, a loopback name, or an IP address
// (DNS rebinding needs a name).
func (a *API) knownHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return host == "" || strings.EqualFold(host, a.public.Hostname()) || loopbackName(host) || net.ParseIP(host) != nil
}

func loopbackName(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// jsonContent requires a JSON body's label: the one thing a cross-site
// form cannot send without a preflight this API never answers.
func jsonContent(r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return tarport.Errorf(tarport.CodeMediaType, `send the body as JSON, with the header Content-Type: application/json (curl: -H "Content-Type: application/json")`)
	}
	return nil
}

// CanonicalPath says whether p is in the form ServeMux routes without a
// redirect: no empty, "." or ".." segments. Anything else is answered
// with a JSON error, not with the mux's HTML redirect.
func CanonicalPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	return clean == p
}

// bodyDeadline gives a request with a body BodyTimeout to send it: the
// server's ReadHeaderTimeout covers the headers only, and a body sent a
// byte a second would hold its connection forever. The deadline ends when
// the body does, so it never cuts a long answer.
func (a *API) bodyDeadline(w http.ResponseWriter, r *http.Request) {
	if a.opts.BodyTimeout <= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(a.opts.BodyTimeout)) != nil {
		return // not a net/http server connection (Lambda): nothing to hold
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, clear: func() { _ = rc.SetReadDeadline(time.Time{}) }}
}

// deadlineBody lifts the read deadline once the body has been read.
type deadlineBody struct {
	io.ReadCloser
	clear func()
	done  bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.clear()
	}
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		err = tarport.Wrap(err, tarport.CodeRequestTimeout, "the request body did not arrive in time")
	}
	return n, err
}
