package dirstore

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tarport/tarport/shared/tarport"
)

// LinkPrefix is the path under which signed links are served.
const LinkPrefix = "/files/"

func loadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading link secret: %w", err)
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("making link secret: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("writing link secret: %w", err)
	}
	return b, nil
}

// Sign returns a path-only link (the HTTP layer makes it absolute for the
// host the client used) valid for ttl, like an S3 presigned URL.
func (s *Store) Sign(_ context.Context, key, fileName string, ttl time.Duration) (string, time.Duration, error) {
	if _, err := s.path(key); err != nil {
		return "", 0, err
	}
	exp := strconv.FormatInt(time.Now().Add(ttl).Unix(), 10)
	q := url.Values{"exp": {exp}, "name": {fileName}, "sig": {s.signature(key, exp, fileName)}}
	// Signed by the server's own secret: the link lives its whole ttl.
	return LinkPrefix + key + "?" + q.Encode(), ttl, nil
}

func (s *Store) signature(key, exp, name string) string {
	m := hmac.New(sha256.New, s.secret)
	io.WriteString(m, key+"\n"+exp+"\n"+name)
	return hex.EncodeToString(m.Sum(nil))
}

// ErrorWriter answers an error in the API's JSON shape, through its one
// table of codes and statuses (the local server wires httpapi.WriteError).
type ErrorWriter func(w http.ResponseWriter, r *http.Request, err error)

// SetErrorWriter sets how link errors are answered; until it is set they
// are a bare 500.
func (s *Store) SetErrorWriter(f ErrorWriter) { s.writeErr = f }

func (s *Store) fail(w http.ResponseWriter, r *http.Request, err error) {
	if s.writeErr == nil {
		http.Error(w, "link error", http.StatusInternalServerError)
		return
	}
	s.writeErr(w, r, err)
}

// ServeHTTP serves signed links with Range support, so `curl -C -` and
// parallel ranged downloads work.
func (s *Store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.fail(w, r, tarport.Errorf(tarport.CodeMethodNotAllowed, "download links answer GET and HEAD only"))
		return
	}
	key := strings.TrimPrefix(r.URL.Path, LinkPrefix)
	q := r.URL.Query()
	exp, name, sig := q.Get("exp"), q.Get("name"), q.Get("sig")
	expUnix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !hmac.Equal([]byte(sig), []byte(s.signature(key, exp, name))) {
		s.fail(w, r, tarport.Errorf(tarport.CodeLinkInvalid, "this download link is not valid"))
		return
	}
	if time.Now().Unix() > expUnix {
		s.fail(w, r, tarport.Errorf(tarport.CodeLinkExpired, "this download link has expired; ask for the job's status to get a fresh one"))
		return
	}
	obj, err := s.open(key)
	if err != nil {
		s.fail(w, r, tarport.Wrap(err, tarport.CodeNotFound, "the file behind this link is gone; request the image again"))
		return
	}
	defer obj.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	// The content of a key never changes, so its key is a strong validator.
	sum := sha256.Sum256([]byte(key))
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	if off, n, status, ok := simpleRange(r, obj.size); ok {
		// The common cases (a whole file, or one range to resume) are
		// written segment by segment from the files, so the kernel copies
		// them (sendfile); http.ServeContent would copy through user space.
		h := w.Header()
		h.Set("Accept-Ranges", "bytes")
		h.Set("Last-Modified", obj.modTime.UTC().Format(http.TimeFormat))
		h.Set("Content-Length", strconv.FormatInt(n, 10))
		if status == http.StatusPartialContent {
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, obj.size))
		}
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			_ = obj.writeRange(w, off, n) // the client went away; nothing to tell it
		}
		return
	}
	// ServeContent answers the rest, its errors in the JSON shape too.
	http.ServeContent(&jsonErrors{ResponseWriter: w, fail: func(status int) {
		code := tarport.CodeRangeUnsatisfied
		if status != http.StatusRequestedRangeNotSatisfiable {
			code = tarport.CodePrecondition
		}
		s.fail(w, r, tarport.Errorf(code, "%s", http.StatusText(status)))
	}}, r, "", obj.modTime, io.NewSectionReader(obj, 0, obj.size))
}

// jsonErrors answers http.ServeContent's errors (416 for a Range outside
// the file, 412 for a failed condition) with fail instead of its text.
type jsonErrors struct {
	http.ResponseWriter
	fail   func(status int)
	failed bool
}

func (j *jsonErrors) WriteHeader(status int) {
	if status >= 400 && !j.failed {
		j.failed = true
		j.fail(status)
		return
	}
	j.ResponseWriter.WriteHeader(status)
}

func (j *jsonErrors) Write(b []byte) (int, error) {
	if j.failed {
		return len(b), nil // the error's text, already answered
	}
	return j.ResponseWriter.Write(b)
}

// simpleRange recognises a plain GET or HEAD (no conditions) of the whole
// object or of one satisfiable range "bytes=a-" / "bytes=a-b". Everything
// else (suffix and multiple ranges, conditional requests) is left to
// http.ServeContent.
func simpleRange(r *http.Request, size int64) (off, n int64, status int, ok bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return 0, 0, 0, false
	}
	for _, h := range []string{"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since", "If-Range"} {
		if r.Header.Get(h) != "" {
			return 0, 0, 0, false
		}
	}
	rng := r.Header.Get("Range")
	if rng == "" {
		return 0, size, http.StatusOK, true
	}
	spec, found := strings.CutPrefix(rng, "bytes=")
	first, last, dash := strings.Cut(spec, "-")
	if !found || !dash || strings.Contains(spec, ",") {
		return 0, 0, 0, false
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 || a >= size {
		return 0, 0, 0, false
	}
	b := size - 1
	if last != "" {
		if b, err = strconv.ParseInt(last, 10, 64); err != nil || b < a {
			return 0, 0, 0, false
		}
		b = min(b, size-1)
	}
	return a, b - a + 1, http.StatusPartialContent, true
}
