// Package fakehub owns a test stand-in for the Docker Hub web API
// (hub.docker.com): it serves the composed fixtures of ../shared/fixtures/hub at
// the real paths, pages like Hub does (page_size capped at 100, absolute next
// links, 403 past an anonymous depth, 404 past the end), and lets a test count
// requests and inject failures, slowness and extra repositories.
//
// Served paths (GET only):
//
//	/api/search/v4?query=&from=&size=              current search (total, results)
//	/v2/search/repositories/?query=&page=&page_size=  legacy search (count, next, results)
//	/v2/namespaces/{ns}/repositories                repository list (ordering=pull_count, last_updated, name)
//	/v2/namespaces/{ns}/repositories/{name}          repository facts
//	/v2/namespaces/{ns}/repositories/{name}/tags[/{tag}]
//	/v2/repositories/{ns}/                          legacy repository list
//	/v2/repositories/{ns}/{name}/                   legacy repository facts
//	/v2/repositories/{ns}/{name}/tags[/{tag}]       legacy tags
package fakehub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// MaxPageSize is Hub's silent cap on page_size (and on v4 search's size).
const MaxPageSize = 100

// RateLimit is the X-RateLimit-Limit the fake announces (the observed Hub value).
const RateLimit = 180

// Hub is a running fake Docker Hub web API. Every method is safe to call from
// any goroutine while requests are served.
type Hub struct {
	// URL is the base URL of the fake, e.g. http://127.0.0.1:PORT (no trailing slash).
	URL string

	srv *httptest.Server

	err404, err403, err429 []byte

	mu       sync.Mutex
	repos    map[string]map[string]any   // "ns/name" -> repository_info
	order    []string                    // repo keys in insertion order
	tags     map[string][]map[string]any // "ns/name" -> tags in insertion order
	searchV4 []map[string]any
	searchV2 []map[string]any
	hits     map[string]int
	total    int
	fails    []failure
	delay    time.Duration
	depth    int
	reverse  bool
}

type failure struct {
	status     int
	retryAfter time.Duration
}

// FixturesEnv overrides where FixturesDir looks.
const FixturesEnv = "TARPORT_HUB_FIXTURES"

// FixturesDir returns the Hub fixtures directory for tests: $TARPORT_HUB_FIXTURES
// when set, else <repo root>/../shared/fixtures/hub, where the repo root is the
// first directory above the working directory that holds go.mod. The handbook
// directory `shared/` is checked out next to the repository, locally and in CI.
func FixturesDir(t testing.TB) string {
	t.Helper()
	if dir := os.Getenv(FixturesEnv); dir != "" {
		return dir
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("finding hub fixtures: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("finding hub fixtures: no go.mod above the working directory; set %s", FixturesEnv)
		}
		dir = parent
	}
	fixtures := filepath.Join(dir, "..", "shared", "fixtures", "hub")
	if _, err := os.Stat(filepath.Join(fixtures, "README.md")); err != nil {
		t.Fatalf("finding hub fixtures: %v (the shared/ handbook must sit next to the repository, or set %s)", err, FixturesEnv)
	}
	return fixtures
}

// New starts a fake Hub serving the fixtures in fixturesDir (FixturesDir(t) when
// empty) and stops it when the test ends.
func New(t testing.TB, fixturesDir string) *Hub {
	t.Helper()
	if fixturesDir == "" {
		fixturesDir = FixturesDir(t)
	}
	h := &Hub{
		repos: map[string]map[string]any{},
		tags:  map[string][]map[string]any{},
		hits:  map[string]int{},
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(fixturesDir, name))
		if err != nil {
			t.Fatalf("reading hub fixture: %v", err)
		}
		return b
	}
	decode := func(name string) map[string]any {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(read(name)))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("decoding hub fixture %s: %v", name, err)
		}
		return m
	}
	h.err404 = read("error-404-hub.json")
	h.err403 = read("error-403-hub-offset.json")
	h.err429 = read("error-429-hub-api.json")
	for _, name := range []string{"repo-library-nginx.json", "repo-tensorflow-tensorflow.json"} {
		h.putRepo(decode(name))
	}
	for _, r := range objects(decode("repositories-library.json")["results"]) {
		if _, ok := h.repos[repoKey(r)]; !ok {
			h.putRepo(r)
		}
	}
	h.tags["library/nginx"] = objects(decode("tags-library-nginx.json")["results"])
	h.searchV4 = objects(decode("search-v4-nginx.json")["results"])
	h.searchV2 = objects(decode("search-v2-nginx.json")["results"])

	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	h.URL = h.srv.URL
	t.Cleanup(h.srv.Close)
	return h
}

// Client returns the HTTP client of the fake's server, shared by its callers:
// copy it before changing fields such as Timeout.
func (h *Hub) Client() *http.Client { return h.srv.Client() }

// Hits returns how many requests reached path (the URL path, query ignored),
// failed or not.
func (h *Hub) Hits(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hits[path]
}

// TotalHits returns how many requests reached the fake.
func (h *Hub) TotalHits() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

// ResetHits zeroes the counters.
func (h *Hub) ResetHits() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hits = map[string]int{}
	h.total = 0
}

// FailNext makes the next n requests fail with status. A 429 carries
// Retry-After (whole seconds, rounded up, when retryAfter > 0) and Hub's
// rate-limit body; other statuses carry a short Hub-style message.
func (h *Hub) FailNext(status, n int, retryAfter time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for range n {
		h.fails = append(h.fails, failure{status: status, retryAfter: retryAfter})
	}
}

// Delay makes every later answer wait d first (0 turns it off). A request whose
// client gave up returns early.
func (h *Hub) Delay(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.delay = d
}

// DepthLimit makes list, search and tag requests whose offset ((page-1) x
// page_size, or v4's from) is n or more answer 403 with Hub's pagination body,
// as Hub does for anonymous users. 0 turns it off.
func (h *Hub) DepthLimit(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.depth = n
}

// ReverseOrdering flips what `ordering` means (pull_count giving least pulled
// first), as latest.yaml documents and Hub has been measured not to do.
// Clients must not rely on either direction.
func (h *Hub) ReverseOrdering(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reverse = on
}

// Repo is a repository added by a test.
type Repo struct {
	Namespace, Name string
	Description     string
	FullDescription string
	Stars, Pulls    int64
	LastUpdated     time.Time // zero: null
}

// AddRepo adds (or replaces) a repository and makes it findable by both searches.
func (h *Hub) AddRepo(r Repo) {
	updated := any(nil)
	if !r.LastUpdated.IsZero() {
		updated = r.LastUpdated.UTC().Format(time.RFC3339Nano)
	}
	info := map[string]any{
		"user": r.Namespace, "name": r.Name, "namespace": r.Namespace,
		"repository_type": "image", "status": 1, "status_description": "active",
		"description": r.Description, "is_private": false, "is_automated": false,
		"star_count": r.Stars, "pull_count": r.Pulls, "last_updated": updated,
		"date_registered": "2020-01-01T00:00:00Z", "full_description": r.FullDescription,
	}
	official := r.Namespace == "library"
	full := r.Namespace + "/" + r.Name
	display := full
	badge := any(nil)
	if official {
		display, badge = r.Name, "official"
	}
	v4 := map[string]any{
		"id": full, "name": display, "slug": display, "type": "image",
		"publisher":  map[string]any{"id": r.Namespace, "name": r.Namespace},
		"created_at": "2020-01-01T00:00:00Z", "updated_at": updated,
		"short_description": r.Description, "badge": badge, "star_count": r.Stars,
		"pull_count": RoundedPulls(r.Pulls), "raw_pull_count": r.Pulls,
		"logo_url": nil, "archived": false,
	}
	v2 := map[string]any{
		"repo_name": display, "short_description": r.Description, "star_count": r.Stars,
		"pull_count": r.Pulls, "repo_owner": "", "is_automated": false, "is_official": official,
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.putRepo(info)
	h.searchV4 = append(h.searchV4, v4)
	h.searchV2 = append(h.searchV2, v2)
}

// AddRawSearchResult adds one v4 search result given as a JSON object, for
// shapes AddRepo does not make (nulls, missing fields, odd pull counts).
func (h *Hub) AddRawSearchResult(t testing.TB, object string) {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(object))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decoding search result: %v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.searchV4 = append(h.searchV4, m)
}

// Tag is a tag added by a test.
type Tag struct {
	Name        string
	Digest      string // the index's (or single manifest's) digest
	LastUpdated time.Time
	Images      []Image
}

// Image is one entry of a tag's images[]; OS and Architecture "unknown" make
// an attestation entry as BuildKit pushes it.
type Image struct {
	OS, Architecture, Variant string // Variant "" is served as null
	Digest                    string
	Size                      int64
}

// AddTags appends tags to a repository (which need not have been added).
func (h *Hub) AddTags(namespace, name string, tags ...Tag) {
	h.mu.Lock()
	defer h.mu.Unlock()
	key := namespace + "/" + name
	for _, tg := range tags {
		updated := tg.LastUpdated.UTC().Format(time.RFC3339Nano)
		var images []any
		var full int64
		for _, im := range tg.Images {
			variant := any(nil)
			if im.Variant != "" {
				variant = im.Variant
			}
			images = append(images, map[string]any{
				"architecture": im.Architecture, "features": "", "variant": variant,
				"digest": im.Digest, "os": im.OS, "os_features": "", "os_version": nil,
				"size": im.Size, "status": "active", "last_pushed": updated,
			})
			if im.OS != "unknown" {
				full = max(full, im.Size)
			}
		}
		h.tags[key] = append(h.tags[key], map[string]any{
			"images": images, "last_updated": updated, "name": tg.Name,
			"full_size": full, "v2": true, "tag_status": "active",
			"media_type":   "application/vnd.oci.image.index.v1+json",
			"content_type": "image", "digest": tg.Digest,
		})
	}
}

// RoundedPulls renders a pull count as v4 search does: the largest power of
// ten not above n, capped at a billion, with K/M/B and a plus ("10M+", "1B+").
func RoundedPulls(n int64) string {
	if n < 10 {
		return strconv.FormatInt(n, 10)
	}
	p := int64(math.Pow10(int(math.Log10(float64(n)))))
	p = min(p, 1_000_000_000)
	switch {
	case p >= 1_000_000_000:
		return fmt.Sprintf("%dB+", p/1_000_000_000)
	case p >= 1_000_000:
		return fmt.Sprintf("%dM+", p/1_000_000)
	case p >= 1_000:
		return fmt.Sprintf("%dK+", p/1_000)
	}
	return fmt.Sprintf("%d+", p)
}

// putRepo stores a repository_info; callers hold mu (or own h exclusively).
func (h *Hub) putRepo(info map[string]any) {
	key := repoKey(info)
	if _, ok := h.repos[key]; !ok {
		h.order = append(h.order, key)
	}
	h.repos[key] = info
}

func repoKey(m map[string]any) string {
	return str(m, "namespace") + "/" + str(m, "name")
}

func (h *Hub) serve(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.hits[r.URL.Path]++
	h.total++
	remaining := max(RateLimit-h.total, 0)
	delay := h.delay
	var fail *failure
	if len(h.fails) > 0 {
		f := h.fails[0]
		h.fails = h.fails[1:]
		fail = &f
	}
	h.mu.Unlock()

	if delay > 0 {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(RateLimit))
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10))
	if fail != nil {
		if fail.status == http.StatusTooManyRequests {
			if fail.retryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(fail.retryAfter.Seconds()))))
			}
			writeRaw(w, fail.status, h.err429)
			return
		}
		writeJSON(w, fail.status, map[string]any{"message": fmt.Sprintf("httperror %d: %s", fail.status, http.StatusText(fail.status))})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"message": "method not allowed"})
		return
	}

	seg := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.URL.Path == "/api/search/v4" || r.URL.Path == "/api/search/v4/":
		h.searchV4Page(w, r)
	case len(seg) == 3 && seg[0] == "v2" && seg[1] == "search" && seg[2] == "repositories":
		h.searchV2Page(w, r)
	case len(seg) >= 4 && seg[0] == "v2" && seg[1] == "namespaces" && seg[3] == "repositories":
		h.repoRoute(w, r, seg[2], seg[4:])
	case len(seg) >= 3 && seg[0] == "v2" && seg[1] == "repositories":
		h.repoRoute(w, r, seg[2], seg[3:])
	default:
		h.notFound(w, "", "")
	}
}

// repoRoute serves everything under one namespace; rest is what follows
// the namespace's repository list path.
func (h *Hub) repoRoute(w http.ResponseWriter, r *http.Request, ns string, rest []string) {
	switch len(rest) {
	case 0:
		h.listRepos(w, r, ns)
	case 1:
		h.mu.Lock()
		info, ok := h.repos[ns+"/"+rest[0]]
		h.mu.Unlock()
		if !ok {
			h.notFound(w, ns, rest[0])
			return
		}
		writeJSON(w, http.StatusOK, info)
	case 2, 3:
		if rest[1] != "tags" {
			h.notFound(w, ns, rest[0])
			return
		}
		key := ns + "/" + rest[0]
		h.mu.Lock()
		_, known := h.repos[key]
		tags := slices.Clone(h.tags[key])
		h.mu.Unlock()
		if !known && tags == nil {
			h.notFound(w, ns, rest[0])
			return
		}
		if len(rest) == 3 {
			for _, tg := range tags {
				if str(tg, "name") == rest[2] {
					writeJSON(w, http.StatusOK, tg)
					return
				}
			}
			h.notFound(w, ns, rest[0])
			return
		}
		h.sortBy(tags, r.URL.Query().Get("ordering"))
		h.page(w, r, tags)
	default:
		h.notFound(w, ns, rest[0])
	}
}

func (h *Hub) listRepos(w http.ResponseWriter, r *http.Request, ns string) {
	h.mu.Lock()
	var list []map[string]any
	for _, key := range h.order {
		info := h.repos[key]
		if str(info, "namespace") != ns {
			continue
		}
		entry := make(map[string]any, len(info))
		for k, v := range info {
			switch k {
			case "full_description", "permissions", "user", "hub_user", "has_starred", "collaborator_count":
			default:
				entry[k] = v
			}
		}
		list = append(list, entry)
	}
	h.mu.Unlock()
	if list == nil {
		h.notFound(w, ns, "")
		return
	}
	h.sortBy(list, r.URL.Query().Get("ordering"))
	h.page(w, r, list)
}

// sortBy orders items the way Hub was measured to: pull_count most pulled
// first, last_updated newest first, a leading '-' reversing (unless
// ReverseOrdering flips the lot). Unknown or empty ordering keeps insertion order.
func (h *Hub) sortBy(items []map[string]any, ordering string) {
	h.mu.Lock()
	reverse := h.reverse
	h.mu.Unlock()
	desc := !strings.HasPrefix(ordering, "-")
	var cmp func(a, b map[string]any) int
	switch strings.TrimPrefix(ordering, "-") {
	case "pull_count":
		cmp = func(a, b map[string]any) int { return compareInt(num(a, "pull_count"), num(b, "pull_count")) }
	case "last_updated":
		cmp = func(a, b map[string]any) int { return strings.Compare(str(a, "last_updated"), str(b, "last_updated")) }
	case "name":
		cmp = func(a, b map[string]any) int { return strings.Compare(str(a, "name"), str(b, "name")) }
		desc = !desc // name ascends by default
	default:
		return
	}
	if desc != reverse {
		slices.SortStableFunc(items, func(a, b map[string]any) int { return -cmp(a, b) })
	} else {
		slices.SortStableFunc(items, cmp)
	}
}

// page writes one page of items in Hub's paginated shape.
func (h *Hub) page(w http.ResponseWriter, r *http.Request, items []map[string]any) {
	q := r.URL.Query()
	page, err1 := intParam(q, "page", 1)
	size, err2 := intParam(q, "page_size", 10)
	if err1 != nil || err2 != nil || page < 1 || size < 1 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "invalid page or page_size"})
		return
	}
	eff := min(size, MaxPageSize)
	offset := (page - 1) * eff
	if h.tooDeep(offset) {
		writeRaw(w, http.StatusForbidden, h.err403)
		return
	}
	if page > 1 && offset >= len(items) {
		h.notFound(w, "", "")
		return
	}
	end := min(offset+eff, len(items))
	link := func(p int) any {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("page", strconv.Itoa(p))
		nq.Set("page_size", strconv.Itoa(size)) // Hub echoes the asked size, not the cap
		return h.URL + r.URL.Path + "?" + nq.Encode()
	}
	var next, prev any
	if end < len(items) {
		next = link(page + 1)
	}
	if page > 1 {
		prev = link(page - 1)
	}
	results := items[offset:end]
	if results == nil {
		results = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"count": len(items), "next": next, "previous": prev, "results": results})
}

func (h *Hub) searchV4Page(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err1 := intParam(q, "from", 0)
	size, err2 := intParam(q, "size", 25)
	if err1 != nil || err2 != nil || from < 0 || size < 1 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "invalid from or size"})
		return
	}
	if h.tooDeep(from) {
		writeRaw(w, http.StatusForbidden, h.err403)
		return
	}
	h.mu.Lock()
	matches := match(h.searchV4, q.Get("query"), "name", "short_description")
	h.mu.Unlock()
	end := min(from+min(size, MaxPageSize), len(matches))
	results := []map[string]any{}
	if from < len(matches) {
		results = matches[from:end]
	}
	writeJSON(w, http.StatusOK, map[string]any{"total": len(matches), "results": results})
}

func (h *Hub) searchV2Page(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	matches := match(h.searchV2, r.URL.Query().Get("query"), "repo_name", "short_description")
	h.mu.Unlock()
	h.page(w, r, matches)
}

func (h *Hub) tooDeep(offset int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.depth > 0 && offset >= h.depth
}

// notFound answers Hub's 404 body with errinfo naming the repository asked.
func (h *Hub) notFound(w http.ResponseWriter, ns, name string) {
	var body map[string]any
	if err := json.Unmarshal(h.err404, &body); err != nil || ns == "" {
		writeRaw(w, http.StatusNotFound, h.err404)
		return
	}
	body["errinfo"] = map[string]any{"namespace": ns, "repository": name}
	writeJSON(w, http.StatusNotFound, body)
}

func match(items []map[string]any, query string, fields ...string) []map[string]any {
	query = strings.ToLower(strings.TrimSpace(query))
	var out []map[string]any
	for _, it := range items {
		for _, f := range fields {
			if strings.Contains(strings.ToLower(str(it, f)), query) {
				out = append(out, it)
				break
			}
		}
	}
	return out
}

func intParam(q url.Values, key string, def int) (int, error) {
	v := q.Get(key)
	if v == "" {
		return def, nil
	}
	return strconv.Atoi(v)
}

func objects(v any) []map[string]any {
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, it := range list {
		if m, ok := it.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

func num(m map[string]any, key string) int64 {
	switch v := m[key].(type) {
	case json.Number:
		n, _ := v.Int64()
		return n
	case int64:
		return v
	case int:
		return int64(v)
	case float64:
		return int64(v)
	}
	return 0
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeRaw(w, status, b)
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
