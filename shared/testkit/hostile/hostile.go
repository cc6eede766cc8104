// Package hostile owns a registry that lies: the adversary of tarport's
// attacker tests. It speaks enough of the registry API (HEAD and GET of
// manifests and blobs, Range on blobs) for tarport to resolve and fetch
// from it, and it says whatever the test wants: a tag HEAD naming someone
// else's manifest digest, 200 for the HEAD of any blob while never serving
// a byte, 503 forever, bodies that trickle one byte at a time under a
// claimed size of 60 GB, foreign layers pointing at URLs that lie too, and
// manifests too big to read. It logs every request for assertions.
//
// It serves plain HTTP on 127.0.0.1, so tarport must be told to trust its
// host (TARPORT_INSECURE_REGISTRIES), as for any registry on loopback.
package hostile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
)

// Media types the registry serves.
const (
	MediaManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaConfig   = "application/vnd.oci.image.config.v1+json"
	MediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaForeign  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// Manifest is how the registry answers for one tag.
type Manifest struct {
	// Raw is served on GET, by the tag and by its digest. Nil: the tag's
	// HEAD names Claim (someone else's digest) and its GET finds nothing.
	Raw       []byte
	MediaType string
	Claim     digest.Digest
	// ClaimSize, when set, is the Content-Length its HEAD announces; its
	// GET then sends no length (chunked).
	ClaimSize int64
}

// Blob is how the registry answers for one blob.
type Blob struct {
	// Bytes are served on GET (with Range). Nil: nothing is served.
	Bytes []byte
	// Claim is the Content-Length a HEAD announces (0: none); a HEAD of a
	// blob that has neither Bytes nor Claim still answers 200.
	Claim int64
	// Status, when set, is every GET's answer (503 forever, say).
	Status int
	// Delay holds every GET this long before it answers.
	Delay time.Duration
	// Trickle, when set, answers every GET with 200 (206 for a Range)
	// claiming Claim bytes, then sends one zero byte every Trickle.
	Trickle time.Duration
}

// Request is one request, as logged.
type Request struct {
	Method, Path, Range string
	Auth                bool
}

// Registry is a running hostile registry.
type Registry struct {
	srv  *httptest.Server
	done chan struct{} // closed at cleanup: trickles and delays end

	mu        sync.Mutex
	manifests map[string]Manifest // by repo + "@" + tag or digest
	blobs     map[string]Blob     // by repo + "@" + digest; repo "" for every repository
	anyBlob   bool                // HEAD of an unknown blob answers 200
	log       []Request
}

// Start runs a hostile registry for the test and stops it at cleanup.
func Start(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{done: make(chan struct{}), manifests: map[string]Manifest{}, blobs: map[string]Blob{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		close(r.done)
		r.srv.CloseClientConnections()
		r.srv.Close()
	})
	return r
}

// Host is "127.0.0.1:PORT", the registry part of image references.
func (r *Registry) Host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// Ref is repo:tag on this registry.
func (r *Registry) Ref(repo, tag string) string { return r.Host() + "/" + repo + ":" + tag }

// SetManifest makes repo:tag answer as m.
func (r *Registry) SetManifest(repo, tag string, m Manifest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifests[repo+"@"+tag] = m
	if m.Raw != nil {
		r.manifests[repo+"@"+digest.FromBytes(m.Raw).String()] = m
	}
}

// SetBlob makes blob d of repo (of every repository, for repo "") answer as b.
func (r *Registry) SetBlob(repo string, d digest.Digest, b Blob) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blobs[repo+"@"+d.String()] = b
}

// ClaimEveryBlob makes the HEAD of any blob answer 200, as if the
// registry held every digest anyone names.
func (r *Registry) ClaimEveryBlob() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.anyBlob = true
}

// PushImage serves an image of its own in repo:tag: a linux/amd64 config
// (served) and a manifest listing layers, whose blobs answer as SetBlob
// says (or not at all). It returns the manifest's digest.
func (r *Registry) PushImage(repo, tag string, layers ...descriptor.Descriptor) digest.Digest {
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{},"comment":%q}`, repo+":"+tag))
	cd := digest.FromBytes(cfg)
	r.SetBlob(repo, cd, Blob{Bytes: cfg})
	raw, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaManifest,
		"config":        descriptor.Descriptor{MediaType: MediaConfig, Digest: cd, Size: int64(len(cfg))},
		"layers":        append([]descriptor.Descriptor{}, layers...),
	})
	if err != nil {
		panic(err) // descriptors always encode
	}
	r.SetManifest(repo, tag, Manifest{Raw: raw, MediaType: MediaManifest})
	return digest.FromBytes(raw)
}

// Layer is the descriptor of a layer of these bytes.
func Layer(b []byte) descriptor.Descriptor {
	return descriptor.Descriptor{MediaType: MediaLayer, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// Requests lists every request so far (the /v2/ ping aside).
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Request(nil), r.log...)
}

// BlobGets counts the GETs of blob d (any repository).
func (r *Registry) BlobGets(d digest.Digest) int {
	n := 0
	for _, q := range r.Requests() {
		if q.Method == http.MethodGet && strings.HasSuffix(q.Path, "/blobs/"+d.String()) {
			n++
		}
	}
	return n
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	if req.URL.Path == "/v2/" || req.URL.Path == "/v2" {
		return
	}
	r.mu.Lock()
	r.log = append(r.log, Request{Method: req.Method, Path: req.URL.Path, Range: req.Header.Get("Range"), Auth: req.Header.Get("Authorization") != ""})
	r.mu.Unlock()
	path := strings.TrimPrefix(req.URL.Path, "/v2/")
	if repo, ref, ok := cutLast(path, "/manifests/"); ok {
		r.serveManifest(w, req, repo, ref)
		return
	}
	if repo, d, ok := cutLast(path, "/blobs/"); ok {
		r.serveBlob(w, req, repo, d)
		return
	}
	notFound(w, "NAME_UNKNOWN")
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return "", "", false
	}
	return s[:i], s[i+len(sep):], true
}

func notFound(w http.ResponseWriter, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"not found"}]}`, code)
}

func (r *Registry) serveManifest(w http.ResponseWriter, req *http.Request, repo, ref string) {
	r.mu.Lock()
	m, ok := r.manifests[repo+"@"+ref]
	r.mu.Unlock()
	if !ok || (m.Raw == nil && req.Method != http.MethodHead) {
		notFound(w, "MANIFEST_UNKNOWN")
		return
	}
	d, size := m.Claim, m.ClaimSize
	if m.Raw != nil {
		d = digest.FromBytes(m.Raw)
		if size == 0 {
			size = int64(len(m.Raw))
		}
	}
	h := w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Docker-Content-Digest", d.String())
	if req.Method == http.MethodHead {
		if size > 0 {
			h.Set("Content-Length", strconv.FormatInt(size, 10))
		}
		return
	}
	if m.ClaimSize == 0 {
		h.Set("Content-Length", strconv.Itoa(len(m.Raw)))
	}
	// With a claimed size the body goes chunked, its length unsaid: only
	// reading it can tell.
	w.Write(m.Raw)
}

func (r *Registry) blob(repo, d string) (Blob, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.blobs[repo+"@"+d]; ok {
		return b, true
	}
	b, ok := r.blobs["@"+d]
	return b, ok
}

func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, repo, d string) {
	b, ok := r.blob(repo, d)
	r.mu.Lock()
	anyBlob := r.anyBlob
	r.mu.Unlock()
	h := w.Header()
	if req.Method == http.MethodHead {
		if !ok && !anyBlob {
			notFound(w, "BLOB_UNKNOWN")
			return
		}
		size := b.Claim
		if b.Bytes != nil && size == 0 {
			size = int64(len(b.Bytes))
		}
		if size > 0 {
			h.Set("Content-Length", strconv.FormatInt(size, 10))
		}
		h.Set("Docker-Content-Digest", d)
		return
	}
	if !ok {
		notFound(w, "BLOB_UNKNOWN")
		return
	}
	if b.Delay > 0 {
		select {
		case <-time.After(b.Delay):
		case <-r.done:
			return
		case <-req.Context().Done():
			return
		}
	}
	switch {
	case b.Status != 0:
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"errors":[{"code":"UNAVAILABLE","message":"try again"}]}`, b.Status)
	case b.Trickle > 0:
		r.trickle(w, req, b)
	case b.Bytes != nil:
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(b.Bytes))
	default:
		notFound(w, "BLOB_UNKNOWN")
	}
}

// trickle claims b.Claim bytes (from the Range's start on) and sends one
// zero byte every b.Trickle until the client or the test goes away.
func (r *Registry) trickle(w http.ResponseWriter, req *http.Request, b Blob) {
	var from int64
	if rng, ok := strings.CutPrefix(req.Header.Get("Range"), "bytes="); ok {
		start, _, _ := strings.Cut(rng, "-")
		from, _ = strconv.ParseInt(start, 10, 64)
	}
	h := w.Header()
	h.Set("Content-Length", strconv.FormatInt(b.Claim-from, 10))
	if from > 0 {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, b.Claim-1, b.Claim))
		w.WriteHeader(http.StatusPartialContent)
	} else {
		w.WriteHeader(http.StatusOK)
	}
	flusher, _ := w.(http.Flusher)
	tick := time.NewTicker(b.Trickle)
	defer tick.Stop()
	for sent := from; sent < b.Claim; sent++ {
		if _, err := w.Write([]byte{0}); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-tick.C:
		case <-r.done:
			return
		case <-req.Context().Done():
			return
		}
	}
}

// URLServer is a host that foreign-layer URLs point at: it answers the
// HEAD of any path with 200 (and the claimed size) but serves no byte.
type URLServer struct {
	srv *httptest.Server
	mu  sync.Mutex
	log []Request
}

// StartURLServer runs a lying foreign-layer host for the test.
func StartURLServer(t testing.TB, claim int64) *URLServer {
	t.Helper()
	u := &URLServer{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u.mu.Lock()
		u.log = append(u.log, Request{Method: req.Method, Path: req.URL.Path, Range: req.Header.Get("Range"), Auth: req.Header.Get("Authorization") != ""})
		u.mu.Unlock()
		if req.Method != http.MethodHead {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(claim, 10))
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// URL is the server's base URL.
func (u *URLServer) URL() string { return u.srv.URL }

// Host is "127.0.0.1:PORT".
func (u *URLServer) Host() string { return strings.TrimPrefix(u.srv.URL, "http://") }

// Requests lists every request so far.
func (u *URLServer) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.log...)
}
