// Package dockerhub owns tarport's use of the Docker Hub web API
// (hub.docker.com): search, repository facts, tags with their platforms and
// the popular list, normalized into tarport's discovery types. Hub's quirks
// (rounded pull counts, attestation entries, unreliable ordering, anonymous
// paging depth) stop here. It does not retry: callers cache and retry.
package dockerhub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/tarport/tarport/shared/tarport"
)

// DefaultBaseURL is the Docker Hub web API.
const DefaultBaseURL = "https://hub.docker.com"

// Limits of the client's methods.
const (
	MaxPageSize  = 100     // Hub silently cuts page_size (and v4's size) to 100
	MaxTags      = 1000    // beyond this Hub's anonymous depth limit stops us anyway
	MaxBodyBytes = 4 << 20 // a bigger answer is an upstream error
)

// DefaultTimeout bounds a request when New is given no HTTP client.
const DefaultTimeout = 20 * time.Second

// Client talks to the Docker Hub web API. It is safe for concurrent use.
type Client struct {
	base    *url.URL
	baseErr error
	http    *http.Client
}

// New returns a client for the Hub web API at baseURL (DefaultBaseURL when
// empty). A nil httpClient gets one with DefaultTimeout. An unparsable baseURL
// makes every call fail with tarport.CodeInternal.
func New(baseURL string, httpClient *http.Client) *Client {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: DefaultTimeout}
	}
	c := &Client{http: httpClient}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err == nil && (u.Scheme != "http" && u.Scheme != "https" || u.Host == "") {
		err = fmt.Errorf("base URL %q is not absolute http(s)", baseURL)
	}
	if err != nil {
		c.baseErr, c.base = err, &url.URL{}
		return c
	}
	c.base = u
	return c
}

// statusError is an unexpected HTTP answer, kept as the wrapped Err of a
// coded error for logs and for callers that must tell statuses apart.
type statusError struct {
	Status int
	URL    string
	Body   string // first bytes only
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: status %d: %s", e.URL, e.Status, e.Body)
}

// hubStatus returns the HTTP status of a Hub answer in err's chain, or 0.
func hubStatus(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// endpoint builds an absolute URL on the base from path segments and a query.
// Segments are fixed words or names checked by checkRepo, so none holds '/'.
func (c *Client) endpoint(query url.Values, segments ...string) *url.URL {
	u := *c.base
	u.Path = strings.TrimRight(u.Path, "/") + "/" + strings.Join(segments, "/")
	u.RawPath = ""
	u.RawQuery = query.Encode()
	return &u
}

// getJSON fetches u and decodes its JSON body into out. notFound is the
// user-facing message for a 404.
func (c *Client) getJSON(ctx context.Context, u *url.URL, notFound string, out any) error {
	if c.baseErr != nil {
		return tarport.Wrap(c.baseErr, tarport.CodeInternal, "the Docker Hub client is misconfigured")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return tarport.Wrap(err, tarport.CodeInternal, "could not build a Docker Hub request")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tarport")
	resp, err := c.http.Do(req)
	if err != nil {
		return transportError(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	if err != nil {
		return transportError(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		return statusToError(resp, body, u, notFound)
	}
	if len(body) > MaxBodyBytes {
		return tarport.Wrap(fmt.Errorf("GET %s: body over %d bytes", u.Redacted(), MaxBodyBytes),
			tarport.CodeUpstream, "Docker Hub sent an answer too large to use")
	}
	if err := json.Unmarshal(body, out); err != nil {
		return tarport.Wrap(fmt.Errorf("decoding %s: %w", u.Redacted(), err),
			tarport.CodeUpstream, "Docker Hub sent an answer tarport could not read")
	}
	return nil
}

// transportError codes a failure to get an answer at all.
func transportError(ctx context.Context, err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout() {
		return tarport.Wrap(err, tarport.CodeUpstreamTimeout, "Docker Hub was too slow to answer; try again")
	}
	return tarport.Wrap(err, tarport.CodeUpstream, "could not reach Docker Hub")
}

func statusToError(resp *http.Response, body []byte, u *url.URL, notFound string) error {
	snippet := string(body[:min(len(body), 512)])
	se := &statusError{Status: resp.StatusCode, URL: u.Redacted(), Body: snippet}
	switch code := resp.StatusCode; {
	case code == http.StatusNotFound:
		return tarport.Wrap(se, tarport.CodeNotFound, "%s", notFound)
	case code == http.StatusTooManyRequests:
		e := tarport.Wrap(se, tarport.CodeRateLimited, "Docker Hub is rate limiting requests; try again later")
		e.RetryAfter = retryAfter(resp.Header, time.Now())
		return e
	case code == http.StatusUnauthorized:
		return tarport.Wrap(se, tarport.CodeUnauthorized, "Docker Hub wants credentials for this")
	case code == http.StatusForbidden:
		return tarport.Wrap(se, tarport.CodeForbidden, "Docker Hub refused the request")
	case code >= 500:
		return tarport.Wrap(se, tarport.CodeUpstream, "Docker Hub failed (status %d); try again later", code)
	default:
		return tarport.Wrap(se, tarport.CodeUpstream, "Docker Hub answered unexpectedly (status %d)", code)
	}
}

// retryAfter reads Retry-After (seconds or an HTTP date) or, as older Hub docs
// describe, X-Retry-After (a unix time, or seconds when small). 0 when absent.
func retryAfter(h http.Header, now time.Time) int {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return int(min(n, 86400))
		}
		if t, err := http.ParseTime(v); err == nil {
			return secondsUntil(t, now)
		}
	}
	if v := strings.TrimSpace(h.Get("X-Retry-After")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			if n > 1_000_000_000 { // a unix time
				return secondsUntil(time.Unix(n, 0), now)
			}
			return int(min(n, 86400))
		}
	}
	return 0
}

func secondsUntil(t, now time.Time) int {
	d := t.Sub(now)
	if d <= 0 {
		return 1
	}
	return int(min((d+time.Second-1)/time.Second, 86400))
}

// Hub namespaces are 2-255 lowercase letters, digits and separators; library
// repository names follow the same rule. Checking keeps paths unambiguous.
var nameRE = regexp.MustCompile(`^[a-z0-9]+(?:[._-]+[a-z0-9]+)*$`)

func checkRepo(namespace, name string) (string, string, error) {
	if namespace == "" {
		namespace = "library"
	}
	if len(namespace) > 255 || len(name) > 255 || !nameRE.MatchString(namespace) || !nameRE.MatchString(name) {
		return "", "", tarport.Errorf(tarport.CodeInvalidReference, "%q is not a Docker Hub repository name", joinName(namespace, name))
	}
	return namespace, name, nil
}

// displayName is the name as users type it: nginx for official images.
func displayName(namespace, name string) string {
	if namespace == "library" {
		return name
	}
	return namespace + "/" + name
}

func joinName(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// hubTime parses Hub's RFC 3339 timestamps; null, empty, zero or unparsable
// give nil rather than an invented date.
func hubTime(s *string) *time.Time {
	if s == nil || *s == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil || t.IsZero() || t.Year() < 2000 {
		return nil
	}
	t = t.UTC()
	return &t
}

// count reads a star or pull count that Hub sends either as an exact number
// (v2 endpoints, v4's raw_pull_count) or as v4's rounded string ("1B+",
// "10M+", "1.5K+", "523"). A rounded string yields its lower bound (1B+ ->
// 1,000,000,000): the best the source says, good enough to rank by. Anything
// else gives nil.
func count(raw json.RawMessage) *int64 {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		if v, err := n.Int64(); err == nil && v >= 0 {
			return &v
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil
	}
	return parseRounded(s)
}

func parseRounded(s string) *int64 {
	s = strings.ToUpper(strings.TrimSpace(strings.ReplaceAll(s, ",", "")))
	s = strings.TrimSuffix(s, "+")
	mult := 1.0
	if s != "" {
		switch s[len(s)-1] {
		case 'K':
			mult = 1e3
		case 'M':
			mult = 1e6
		case 'B':
			mult = 1e9
		case 'T':
			mult = 1e12
		}
		if mult != 1 {
			s = s[:len(s)-1]
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f*mult > 9e18 {
		return nil
	}
	v := int64(f*mult + 0.5)
	return &v
}
