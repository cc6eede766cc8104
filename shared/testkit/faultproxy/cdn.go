package faultproxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// cdnURLLifetime keeps redirect targets short-lived, as Hub's are: a client
// that resumes must go back to the registry for a fresh URL.
const cdnURLLifetime = 2 * time.Minute

var cdnPath = regexp.MustCompile(`^/registry-v2/(.+)/blobs/([^/]+)$`)

func randomKey() []byte {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return key
}

// redirectBlob answers a blob GET the way Hub does: 307 to the CDN host.
func (p *Proxy) redirectBlob(w *tracked, r *http.Request, name, digest string) {
	// Hub says 404 for an unknown blob itself, rather than redirecting to a dead URL.
	req, err := http.NewRequestWithContext(r.Context(), http.MethodHead, p.upstream+"/v2/"+name+"/blobs/"+digest, nil)
	if err != nil {
		writeError(w, http.StatusBadGateway, "UNKNOWN", "building upstream request", nil)
		return
	}
	resp, err := p.client.Do(req)
	if err != nil {
		writeError(w, http.StatusBadGateway, "UNKNOWN", "upstream unreachable", nil)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		writeError(w, resp.StatusCode, "BLOB_UNKNOWN", "blob unknown to registry", digest)
		return
	}
	w.Header().Set("Location", p.signedCDNURL(name, digest, time.Now().Add(cdnURLLifetime)))
	w.WriteHeader(http.StatusTemporaryRedirect)
}

func (p *Proxy) signedCDNURL(name, digest string, expires time.Time) string {
	path := "/registry-v2/" + name + "/blobs/" + digest
	exp := strconv.FormatInt(expires.Unix(), 10)
	q := url.Values{"expires": {exp}, "signature": {p.sign(path, exp)}}
	return "http://" + p.CDNHost() + path + "?" + q.Encode()
}

func (p *Proxy) sign(path, expires string) string {
	mac := hmac.New(sha256.New, p.cdnKey)
	fmt.Fprintf(mac, "%s\n%s", path, expires)
	return hex.EncodeToString(mac.Sum(nil))
}

// verifyCDN checks the URL's signature and expiry, as a CDN's signed URLs do,
// so a client cannot skip the registry (and its auth) by guessing the CDN URL.
func (p *Proxy) verifyCDN(u *url.URL) bool {
	exp := u.Query().Get("expires")
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || time.Now().Unix() > unix {
		return false
	}
	return hmac.Equal([]byte(u.Query().Get("signature")), []byte(p.sign(u.Path, exp)))
}

// serveCDN serves a blob from the upstream with Range support and faults.
func (p *Proxy) serveCDN(w *tracked, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		// Served anyway: the test asserts LeakedAuth, and a clear assertion
		// beats a mysterious download failure.
		p.count(&p.stats.LeakedAuth)
	}
	m := cdnPath.FindStringSubmatch(r.URL.Path)
	if m == nil || !p.verifyCDN(r.URL) {
		http.Error(w, "signature invalid or expired", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	if p.injectStatus(w, CDN) {
		return
	}
	name, digest := m[1], m[2]
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, p.upstream+"/v2/"+name+"/blobs/"+digest, nil)
	if err != nil {
		http.Error(w, "building upstream request", http.StatusBadGateway)
		return
	}
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, "upstream unreachable", http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	size := resp.ContentLength
	if resp.StatusCode != http.StatusOK || size < 0 {
		http.Error(w, "upstream blob unavailable", http.StatusBadGateway)
		return
	}

	p.mu.Lock()
	ignoreRange := p.faults.ignoreRange
	p.mu.Unlock()
	start, end, ranged, ok := int64(0), size-1, false, true
	if !ignoreRange {
		start, end, ranged, ok = parseRange(r.Header.Get("Range"), size)
	}
	if !ok {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	status := http.StatusOK
	if ranged {
		// The whole blob is read from the upstream and the head skipped: simple,
		// and cheap on loopback for the sizes tests use.
		if _, err := io.CopyN(io.Discard, resp.Body, start); err != nil {
			http.Error(w, "upstream blob short", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, size))
		status = http.StatusPartialContent
	}
	length := end - start + 1
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(length, 10))
	w.Header().Set("Accept-Ranges", "bytes")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	plan := p.planBody(digest, start, length)
	p.writeBody(w, r, io.LimitReader(resp.Body, length), plan)
}

// parseRange understands one range, "bytes=N-", "bytes=N-M" or "bytes=-N", as
// clients send for resuming. Anything else is ignored (ranged false), which
// RFC 9110 allows. ok is false when the range lies outside the blob.
func parseRange(header string, size int64) (start, end int64, ranged, ok bool) {
	spec, found := strings.CutPrefix(header, "bytes=")
	first, last, dash := strings.Cut(spec, "-")
	if !found || !dash || strings.Contains(spec, ",") {
		return 0, size - 1, false, true
	}
	if first == "" { // suffix: the last N bytes
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n <= 0 {
			return 0, size - 1, false, true
		}
		return max(size-n, 0), size - 1, true, size > 0
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return 0, size - 1, false, true
	}
	end = size - 1
	if last != "" {
		if end, err = strconv.ParseInt(last, 10, 64); err != nil || end < start {
			return 0, size - 1, false, true
		}
		// An end past the blob means "to the end"; regclient sends bytes=N-size.
		end = min(end, size-1)
	}
	return start, end, true, start < size
}

// writeBody copies the answer body, firing the planned faults at their offsets.
func (p *Proxy) writeBody(w *tracked, r *http.Request, body io.Reader, plan bodyPlan) {
	buf := make([]byte, 32<<10)
	var sent int64
	for {
		if sent == plan.stallAt {
			w.fired("stall")
			p.count(&p.stats.Stalls)
			// Flushed first, so the client holds every byte before the pause.
			_ = http.NewResponseController(w).Flush()
			select {
			case <-time.After(plan.stall):
			case <-r.Context().Done():
				return
			case <-p.done:
				return
			}
		}
		if sent == plan.cutAt {
			p.cut(w, plan.reset)
			return
		}
		chunk := buf[:min(int64(len(buf)), plan.next(sent)-sent)]
		n, err := body.Read(chunk)
		if at := plan.flipAt - sent; at >= 0 && at < int64(n) {
			chunk[at] ^= 0xff
			w.fired("flip")
			p.count(&p.stats.Flips)
		}
		if _, werr := w.Write(chunk[:n]); werr != nil {
			return
		}
		sent += int64(n)
		// On EOF the body is complete; on an upstream error the short answer
		// shows the client a broken body, which is all a CDN could do.
		if err != nil {
			return
		}
	}
}

// cut ends the connection mid-body. Hijacking (rather than returning early)
// is what lets ResetAfter set SO_LINGER 0 so the kernel sends RST, not FIN.
func (p *Proxy) cut(w *tracked, reset bool) {
	rc := http.NewResponseController(w)
	_ = rc.Flush() // the bytes before the cut must reach the client
	conn, buffered, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // still closes the connection
	}
	_ = buffered.Flush()
	// Counted before the close, so a client that sees the cut also sees the count.
	if reset {
		w.fired("reset")
		p.count(&p.stats.Resets)
		if tcp, ok := conn.(*net.TCPConn); ok {
			_ = tcp.SetLinger(0)
		}
	} else {
		w.fired("drop")
		p.count(&p.stats.Drops)
	}
	_ = conn.Close()
}
