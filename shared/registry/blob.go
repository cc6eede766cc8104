package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/metrics"
	"github.com/tarport/tarport/shared/netguard"
	"github.com/tarport/tarport/shared/tarport"
)

// Blobs are streamed by our own reader rather than regclient's: regclient
// (v0.11.7) resumes only after a clean close, not after a reset; each of its
// resumes holds one of its per-host connection slots for good, so a
// long-lived client stalls after a few; it does not retry 503; and a token
// the registry revokes early ends the pull. go-containerregistry's bearer
// transport does the auth (token fetch, refresh on any 401 challenge, no
// Authorization on redirects to another host); the resume loop is ours.

const (
	// blobFailures is how many failed requests in a row (without a byte of
	// progress between them) end a blob read: the retry budget's first
	// level (tarport.BlobRequests).
	blobFailures = tarport.BlobRequests
	maxBackoff   = 30 * time.Second
	// slowCutsAllowed is how many bodies in a row may end under the
	// minimum rate (cut for crawling, or ended by the registry) before a
	// read gives up: a new connection may reach a faster server; three
	// that do not are the registry's answer.
	slowCutsAllowed = 3
	// rateGrace is how many windows a read may take before its bytes must
	// average the minimum rate, across all its connections.
	rateGrace = 3
	// maxForeignURLs and locateTimeout bound the search for a foreign
	// layer's origin (real ones list one or two URLs).
	maxForeignURLs = 3
	locateTimeout  = 2 * time.Minute
)

// Locate says where layer d of r is read from: the registry, or, for a
// foreign layer the registry does not have (it answers 404), the first of
// its URLs that this server may reach and that answers for it. Either is
// asked with a HEAD, so the origin is known (and pinned) before any byte
// is read: a cached entry is reused only under the origin it came from.
// A layer without URLs is the registry's, with no request made.
//
// A manifest may list any number of URLs: only the first maxForeignURLs
// usable ones are asked, all within locateTimeout.
func (c *Client) Locate(ctx context.Context, r ref.Ref, d descriptor.Descriptor, creds tarport.Credentials) (tarport.Origin, error) {
	reg := tarport.RegistryOrigin(r.Registry)
	if len(d.URLs) == 0 {
		return reg, nil
	}
	ctx, cancel := context.WithTimeout(ctx, locateTimeout)
	defer cancel()
	err := c.CheckBlob(ctx, r, d, reg, creds)
	if err == nil || tarport.ErrorCode(err) != tarport.CodeNotFound {
		return reg, err
	}
	refused, asked := 0, 0
	for _, u := range d.URLs {
		if !c.allowedURL(u) {
			refused++
			continue
		}
		if asked++; asked > maxForeignURLs {
			break
		}
		o := tarport.URLOrigin(u)
		if err = c.CheckBlob(ctx, r, d, o, creds); err == nil {
			return o, nil
		}
	}
	if refused == len(d.URLs) {
		return "", tarport.Errorf(tarport.CodeBlockedAddress, "fetching layer %s of %s: the registry does not have it, and its foreign-layer URLs use plain http to a host this server does not trust", d.Digest, r.CommonName())
	}
	return "", err
}

// allowedURL says whether a foreign-layer URL may be fetched at all: it
// comes from a manifest anyone can write, so https only, unless the
// operator trusts the host. (The dial guard still checks every address.)
func (c *Client) allowedURL(u string) bool {
	pu, err := url.Parse(u)
	return err == nil && pu.Host != "" && pu.User == nil && (pu.Scheme == "https" || (pu.Scheme == "http" && c.insecure(pu.Host)))
}

// OpenBlob streams one layer from origin o (see Locate). A broken or
// stalled body resumes with a Range request from the last byte received;
// the reader checks size and sha256 and fails at the end on a mismatch, so
// a caller that reads to io.EOF has verified bytes.
func (c *Client) OpenBlob(ctx context.Context, r ref.Ref, d descriptor.Descriptor, o tarport.Origin, creds tarport.Credentials) (io.ReadCloser, error) {
	return c.openBlob(ctx, r, d, o, creds, 0, d.Size, false)
}

// OpenBlobRange streams the bytes [offset, offset+length) of a layer from
// origin o, for a layer split across tasks, with the same retries. Each
// request asks for bytes=from-(offset+length-1), from the last byte
// received on; the reader ends with io.EOF after exactly length bytes. The
// bytes are not verified: a range cannot be hashed alone, so the caller
// hashes the whole layer in order once all its ranges are stored.
func (c *Client) OpenBlobRange(ctx context.Context, r ref.Ref, d descriptor.Descriptor, o tarport.Origin, offset, length int64, creds tarport.Credentials) (io.ReadCloser, error) {
	// length > d.Size-offset, not offset+length > d.Size: no overflow.
	if offset < 0 || length <= 0 || offset > d.Size || length > d.Size-offset {
		return nil, tarport.Errorf(tarport.CodeInternal, "bytes %d+%d are not a range of the %d-byte layer %s", offset, length, d.Size, d.Digest)
	}
	return c.openBlob(ctx, r, d, o, creds, offset, offset+length, true)
}

// openBlob opens a blobReader for the bytes [start, end) of d at origin o:
// the whole blob, verified, or a range of it.
func (c *Client) openBlob(ctx context.Context, r ref.Ref, d descriptor.Descriptor, o tarport.Origin, creds tarport.Credentials, start, end int64, ranged bool) (io.ReadCloser, error) {
	if err := d.Digest.Validate(); err != nil {
		return nil, tarport.Wrap(err, tarport.CodeUpstream, "layer digest %q is not valid", d.Digest)
	}
	if d.Digest.Algorithm() != digest.SHA256 {
		return nil, tarport.Errorf(tarport.CodeUnsupported, "layer %s uses %s; only sha256 is supported", d.Digest, d.Digest.Algorithm())
	}
	client, u, err := c.originClient(ctx, r, d, o, c.pullCreds(r.Registry, creds))
	if err != nil {
		return nil, err
	}
	br := &blobReader{
		ctx:     ctx,
		http:    client,
		url:     u,
		desc:    d,
		start:   start,
		end:     end,
		ranged:  ranged,
		offset:  start,
		backoff: c.blobBackoff,
		minRate: c.opts.MinRate,
		window:  c.opts.IdleTimeout,
		began:   time.Now(),
		what:    "layer " + d.Digest.String() + " of " + r.CommonName(),
		metrics: c.opts.Metrics,
	}
	if ranged {
		br.what = fmt.Sprintf("bytes %d-%d of %s", start, end-1, br.what)
	} else {
		br.hash = sha256.New()
	}
	// Open now, so a missing blob or a refusal is an error of the open.
	if err := br.reopen(); err != nil {
		return nil, err
	}
	return br, nil
}

// originClient returns the client and URL that read d at origin o: the
// registry's blob URL through its authenticating transport with creds, or
// a foreign-layer URL with no credentials at all. o must be one of d's
// origins: a queued task names its origin, and nothing else is fetched.
func (c *Client) originClient(ctx context.Context, r ref.Ref, d descriptor.Descriptor, o tarport.Origin, creds tarport.Credentials) (*http.Client, string, error) {
	if !slices.Contains(tarport.Origins(r, d), o) {
		return nil, "", tarport.Errorf(tarport.CodeInternal, "layer %s of %s has no origin %q", d.Digest, r.CommonName(), o)
	}
	if u, ok := o.URL(); ok {
		if !c.allowedURL(u) {
			return nil, "", tarport.Errorf(tarport.CodeBlockedAddress, "fetching layer %s of %s: its foreign-layer URL uses plain http to a host this server does not trust", d.Digest, r.CommonName())
		}
		return &http.Client{Transport: c.http.Transport}, u, nil
	}
	rt, base, err := c.blobTransport(ctx, r, creds)
	if err != nil {
		return nil, "", err
	}
	return &http.Client{Transport: rt}, base + "/v2/" + r.Repository + "/blobs/" + d.Digest.String(), nil
}

// CheckBlob asks origin o whether this requester may read d there, with a
// HEAD and no bytes: the registry (in r's repository, with creds), or the
// exact foreign-layer URL. It is the gate in front of an entry cached from
// o for someone else, so an answer that names another size or digest is a
// refusal. Transient failures are asked again a few times.
func (c *Client) CheckBlob(ctx context.Context, r ref.Ref, d descriptor.Descriptor, o tarport.Origin, creds tarport.Credentials) error {
	client, u, err := c.originClient(ctx, r, d, o, creds)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("checking layer %s of %s", d.Digest, r.CommonName())
	for attempt, wait := 1, c.blobBackoff; ; attempt, wait = attempt+1, wait*2 {
		err = headBlob(ctx, client, u, d)
		if err == nil || attempt == 3 || !transient(err) {
			return classify(err, "%s", what)
		}
		select {
		case <-ctx.Done():
			return classify(err, "%s", what)
		case <-time.After(wait):
		}
	}
}

func headBlob(ctx context.Context, client *http.Client, u string, d descriptor.Descriptor) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return tarport.Wrap(err, tarport.CodeInvalidReference, "layer URL %q is not valid", u)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	// What the origin says it holds must be this blob.
	if resp.ContentLength >= 0 && resp.ContentLength != d.Size {
		return &httpStatusError{status: http.StatusNotFound}
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.Digest.String() {
		return &httpStatusError{status: http.StatusNotFound}
	}
	return nil
}

// transient says whether asking again may help.
func transient(err error) bool {
	var herr *httpStatusError
	if errors.As(err, &herr) {
		return herr.retryable()
	}
	var dnsErr *net.DNSError
	var coded *tarport.Error
	return !errors.As(err, &coded) && !errors.Is(err, netguard.ErrBlocked) && !errors.As(err, &dnsErr) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// blobTransport returns an authenticating transport for r's repository
// with creds and the registry's base URL. Transports of anonymous and
// service-account logins are kept (they hold tokens, refreshed on expiry);
// a requester's own are built per call and dropped.
func (c *Client) blobTransport(ctx context.Context, r ref.Ref, creds tarport.Credentials) (http.RoundTripper, string, error) {
	host, tls := r.Registry, config.TLSEnabled
	if r.Registry == "docker.io" {
		host, tls = c.dockerHost.Hostname, c.dockerHost.TLS
	} else if c.insecure(host) {
		tls = config.TLSDisabled
	}
	var opts []name.Option
	scheme := "https"
	if tls == config.TLSDisabled {
		opts, scheme = append(opts, name.Insecure), "http"
	}
	base := scheme + "://" + host
	repo, err := name.NewRepository(host+"/"+r.Repository, opts...)
	if err != nil {
		return nil, "", tarport.Wrap(err, tarport.CodeInvalidReference, "%s is not a valid repository", r.CommonName())
	}
	key := host + "/" + r.Repository + "\x00" + creds.Username
	keep := c.keepable(creds)
	if keep {
		c.mu.Lock()
		rt, ok := c.transports[key]
		c.mu.Unlock()
		if ok {
			return rt, base, nil
		}
	}
	var auth authn.Authenticator = authn.Anonymous
	if !creds.Anonymous() {
		auth = &authn.Basic{Username: creds.Username, Password: creds.Password}
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, auth, c.http.Transport, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, "", classify(err, "authorizing with %s", host)
	}
	if keep {
		c.mu.Lock()
		if len(c.transports) >= maxCached {
			clear(c.transports) // repositories come from users: keep it bounded
		}
		c.transports[key] = rt
		c.mu.Unlock()
	}
	return rt, base, nil
}

// blobReader reads the bytes [start, end) of a blob through any number of
// broken connections: the whole blob, whose digest it checks, or a range.
type blobReader struct {
	ctx      context.Context
	http     *http.Client
	url      string // the registry's blob URL, or a foreign-layer URL
	desc     descriptor.Descriptor
	start    int64 // the first byte wanted: 0 for the whole blob
	end      int64 // one past the last byte wanted: desc.Size for the whole blob
	ranged   bool  // a range: every request says where it ends, nothing is hashed
	hash     hash.Hash
	backoff  time.Duration // the first wait after a failure is twice this
	what     string
	body     io.ReadCloser
	progress bool          // the current body delivered at least one byte
	offset   int64         // the blob offset of the next byte: start + bytes delivered
	failures int           // failed requests and empty bodies since the last progress
	minRate  int64         // bytes per second the read must average (0: no floor)
	window   time.Duration // the idle timeout: the window of the floor
	began    time.Time     // the read's first request
	opened   time.Time     // the current body's request
	bodyFrom int64         // offset at which the current body started
	slowCuts int           // bodies in a row under the floor
	lastErr  error
	done     bool
	metrics  *metrics.Metrics
}

func (b *blobReader) Read(p []byte) (int, error) {
	for {
		if b.done {
			return 0, io.EOF
		}
		if b.body == nil {
			if err := b.reopen(); err != nil {
				return 0, err
			}
		}
		if rest := b.end - b.offset; int64(len(p)) > rest+1 {
			// Read at most one byte past the end: enough to catch a blob
			// that is too long without buffering it.
			p = p[:rest+1]
		}
		n, err := b.body.Read(p)
		if n > 0 {
			b.failures, b.progress = 0, true
			b.offset += int64(n)
			if b.hash != nil {
				b.hash.Write(p[:n])
			}
			if b.offset > b.end {
				b.close()
				if b.ranged {
					return 0, tarport.Errorf(tarport.CodeUpstream, "%s: the registry sent more than the %d bytes asked for", b.what, b.end-b.start)
				}
				return 0, tarport.Errorf(tarport.CodeDigestMismatch, "%s: the registry sent more than the %d bytes of the blob", b.what, b.desc.Size)
			}
		}
		switch {
		case err == nil:
			return n, nil
		case b.offset == b.end && (err == io.EOF || b.ctx.Err() == nil):
			// Every byte is here: a body that then breaks instead of
			// ending cleanly (a cut chunked trailer, the idle watchdog) is
			// as good as EOF; asking for bytes=size- would get a 416.
			b.close()
			b.done = true
			if b.hash == nil {
				return n, io.EOF // a range: the caller verifies the whole blob
			}
			if got := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(b.hash.Sum(nil))); got != b.desc.Digest {
				return n, tarport.Errorf(tarport.CodeDigestMismatch, "%s: the bytes received hash to %s", b.what, got)
			}
			return n, io.EOF
		case b.ctx.Err() != nil:
			b.close()
			return n, b.ctx.Err()
		}
		// A short body, a reset, a stall cut by the idle timer: resume.
		// A body that brought nothing counts as a failure, so an endless
		// run of empty answers backs off and ends.
		if !b.progress {
			b.failures++
		}
		if slow := b.slowBody(err); slow != nil {
			b.close()
			return n, slow
		}
		b.close()
		b.lastErr = fmt.Errorf("body ended at byte %d of %d: %w", b.offset, b.end, err)
		if n > 0 {
			return n, nil
		}
	}
}

// reopen requests the blob from offset on, with backoff between failures.
func (b *blobReader) reopen() error {
	for {
		if b.failures >= blobFailures {
			return classify(b.lastErr, "%s: giving up after %d failed requests", b.what, b.failures)
		}
		if b.failures > 0 {
			b.metrics.RegistryRetry()
			wait := min(time.Duration(1<<min(b.failures, 6))*b.backoff, maxBackoff)
			var herr *httpStatusError
			if errors.As(b.lastErr, &herr) && herr.retryAfter > 0 {
				wait = min(herr.retryAfter, maxBackoff)
			}
			select {
			case <-b.ctx.Done():
				return b.ctx.Err()
			case <-time.After(wait):
			}
		}
		opened := time.Now()
		body, err := b.request()
		if err == nil {
			b.body, b.progress = body, false
			b.opened, b.bodyFrom = opened, b.offset
			return nil
		}
		var herr *httpStatusError
		if errors.As(err, &herr) && !herr.retryable() {
			return classify(err, "fetching %s", b.what)
		}
		if b.ctx.Err() != nil {
			return b.ctx.Err()
		}
		var dnsErr *net.DNSError
		if errors.Is(err, netguard.ErrBlocked) || errors.As(err, &dnsErr) {
			return classify(err, "fetching %s", b.what) // retrying cannot help
		}
		b.failures++
		b.lastErr = err
	}
}

func (b *blobReader) request() (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(b.ctx, http.MethodGet, b.url, nil)
	if err != nil {
		return nil, err
	}
	switch {
	case b.ranged:
		req.Header.Set("Range", "bytes="+strconv.FormatInt(b.offset, 10)+"-"+strconv.FormatInt(b.end-1, 10))
	case b.offset > 0:
		req.Header.Set("Range", "bytes="+strconv.FormatInt(b.offset, 10)+"-")
	}
	resp, err := b.http.Do(req)
	if err != nil {
		return nil, err
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if b.offset > 0 {
			// The server ignored Range: skip what we already have (or, for
			// a range, everything before it: those bytes cost a download
			// each time, but a server without Range leaves no other way).
			if _, err := io.CopyN(io.Discard, resp.Body, b.offset); err != nil {
				resp.Body.Close()
				return nil, fmt.Errorf("skipping %d bytes of a full answer: %w", b.offset, err)
			}
		}
		if b.end < b.desc.Size {
			// The rest of the blob is not ours: end the body at the
			// range's end (closing it drops the connection).
			return struct {
				io.Reader
				io.Closer
			}{io.LimitReader(resp.Body, b.end-b.offset), resp.Body}, nil
		}
		return resp.Body, nil
	case resp.StatusCode == http.StatusPartialContent && req.Header.Get("Range") != "":
		start, ok := contentRangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != b.offset {
			resp.Body.Close()
			return nil, fmt.Errorf("asked for bytes from %d, got Content-Range %q", b.offset, resp.Header.Get("Content-Range"))
		}
		return resp.Body, nil
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return nil, statusError(resp)
}

// statusError is the error of an answer other than 200/206, with the
// wait its Retry-After asks for.
func statusError(resp *http.Response) *httpStatusError {
	return &httpStatusError{status: resp.StatusCode, retryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
}

// retryAfter reads a Retry-After header, in seconds or as an HTTP date
// (RFC 9110 allows both); 0 when absent, malformed or past.
func retryAfter(v string, now time.Time) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// slowBody judges a body that ended early (err is how): a registry must
// not hold a worker by crawling, whether its bodies crawl until the
// watchdog cuts them or end by themselves after a byte or two. A body that
// brought bytes under the minimum rate, over its life from the request,
// counts as slow (one shorter than a second only if cut for crawling: a
// flaky link drops young connections); slowCutsAllowed in a row fail the
// read, and a body at the rate ends the run. Across bodies, the read must
// average the rate once rateGrace windows have passed.
func (b *blobReader) slowBody(err error) error {
	if b.minRate <= 0 {
		return nil
	}
	now := time.Now()
	lived := now.Sub(b.opened)
	got := b.offset - b.bodyFrom
	switch {
	case got == 0: // failed requests have their own budget
	case float64(got) >= float64(b.minRate)*lived.Seconds():
		b.slowCuts = 0
	case lived >= time.Second || errors.Is(err, netguard.ErrTooSlow):
		if b.slowCuts++; b.slowCuts >= slowCutsAllowed {
			return tarport.Wrap(err, tarport.CodeUpstreamTimeout, "%s: the registry sends it slower than this server's minimum of %d bytes/s, %d times in a row", b.what, b.minRate, b.slowCuts)
		}
	}
	if over := now.Sub(b.began) - rateGrace*b.window; over > 0 && float64(b.offset-b.start) < float64(b.minRate)*over.Seconds() {
		return tarport.Wrap(err, tarport.CodeUpstreamTimeout, "%s: the registry sent %d bytes in %s, under this server's minimum of %d bytes/s", b.what, b.offset-b.start, now.Sub(b.began).Round(time.Second), b.minRate)
	}
	return nil
}

func contentRangeStart(h string) (int64, bool) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, false
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(start, 10, 64)
	return n, err == nil
}

func (b *blobReader) close() {
	if b.body != nil {
		b.body.Close()
		b.body = nil
	}
}

func (b *blobReader) Close() error {
	b.close()
	b.done = true
	return nil
}

// httpStatusError is a registry or CDN answer other than 200/206.
type httpStatusError struct {
	status     int
	retryAfter time.Duration
}

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("http %d %s", e.status, http.StatusText(e.status))
}

func (e *httpStatusError) retryable() bool {
	switch e.status {
	case http.StatusTooManyRequests, http.StatusRequestTimeout, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	// 401 here means the bearer transport's refresh failed as well.
	return false
}
