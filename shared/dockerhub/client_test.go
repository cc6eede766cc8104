package dockerhub_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/dockerhub"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/fakehub"
)

func newHub(t *testing.T) (*fakehub.Hub, *dockerhub.Client) {
	t.Helper()
	h := fakehub.New(t, "")
	return h, dockerhub.New(h.URL, h.Client())
}

// wantCode fails t unless err carries code and a message free of internals.
func wantCode(t *testing.T, err error, code tarport.Code) *tarport.Error {
	t.Helper()
	var e *tarport.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want a *tarport.Error with code %s", err, code)
	}
	if e.Code != code {
		t.Fatalf("code = %s, want %s (%v)", e.Code, code, err)
	}
	for _, leak := range []string{"127.0.0.1", "GET ", "httperror", "context deadline", "Client.Timeout", "invalid character"} {
		if strings.Contains(e.Message, leak) {
			t.Errorf("message %q leaks %q", e.Message, leak)
		}
	}
	return e
}

func i64(v int64) *int64 { return &v }

func TestSearchNormalizes(t *testing.T) {
	t.Parallel()
	h, c := newHub(t)
	h.AddRawSearchResult(t, `{"id":"someone/nginx-nulls","name":"someone/nginx-nulls","type":"image",
		"updated_at":null,"short_description":null,"badge":null,"star_count":null,"pull_count":null}`)
	h.AddRawSearchResult(t, `{"id":"acme/nginx-rounded","name":"acme/nginx-rounded","type":"image",
		"updated_at":"","short_description":"Веб-сервер 🚀 ウェブ","badge":"none","star_count":7,"pull_count":"1.5M+"}`)
	h.AddRawSearchResult(t, `{"name":"nginx-bare","type":"image","pull_count":"523"}`)
	h.AddRawSearchResult(t, `{"id":"acme/nginx-ext","name":"acme/nginx-ext","type":"extension"}`)

	page, err := c.Search(t.Context(), " nginx ", 1, 25)
	if err != nil {
		t.Fatal(err)
	}
	if page.Query != "nginx" || page.Page != 1 || page.Limit != 25 || page.Total != 8 {
		t.Errorf("page = %q %d %d total %d", page.Query, page.Page, page.Limit, page.Total)
	}
	byName := map[string]tarport.RepoSummary{}
	for _, r := range page.Results {
		byName[r.Name] = r
	}
	updated := time.Date(2026, 11, 18, 5, 44, 17, 302331000, time.UTC)
	tests := []struct {
		name      string
		namespace string
		official  bool
		desc      string
		stars     *int64
		pulls     *int64
		updated   *time.Time
	}{
		{"nginx", "library", true, "Official build of Nginx.", i64(21034), i64(13718294112), &updated},
		{"nginxinc/nginx-unprivileged", "nginxinc", false, "Unprivileged NGINX images that run as a non-root user", i64(152), i64(1189002764), nil},
		{"someuser/nginx-php", "someuser", false, "nginx + php-fpm in one image", i64(3), i64(14288), nil},
		{"someone/nginx-nulls", "someone", false, "", nil, nil, nil},
		{"acme/nginx-rounded", "acme", false, "Веб-сервер 🚀 ウェブ", i64(7), i64(1_500_000), nil},
		{"nginx-bare", "library", true, "", nil, i64(523), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := byName[tt.name]
			if !ok {
				t.Fatalf("%s missing from %v", tt.name, page.Results)
			}
			if got.Namespace != tt.namespace || got.Official != tt.official || got.Description != tt.desc {
				t.Errorf("got %+v", got)
			}
			if !eqPtr(got.Stars, tt.stars) || !eqPtr(got.Pulls, tt.pulls) {
				t.Errorf("stars %v pulls %v, want %v %v", deref(got.Stars), deref(got.Pulls), deref(tt.stars), deref(tt.pulls))
			}
			if tt.updated != nil && (got.Updated == nil || !got.Updated.Equal(*tt.updated)) {
				t.Errorf("updated = %v, want %v", got.Updated, tt.updated)
			}
			if tt.name == "someone/nginx-nulls" && got.Updated != nil {
				t.Errorf("null updated_at gave %v", got.Updated)
			}
		})
	}
	if _, ok := byName["acme/nginx-ext"]; ok {
		t.Error("a non-image result was kept")
	}
	if got := byName["linuxserver/nginx"].Updated; got == nil || got.Year() != 2026 {
		t.Errorf("linuxserver/nginx updated = %v", got)
	}
}

func eqPtr(a, b *int64) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestSearchPages(t *testing.T) {
	t.Parallel()
	h, c := newHub(t)
	for i := range 30 {
		h.AddRepo(fakehub.Repo{Namespace: "pager", Name: fmt.Sprintf("item%02d", i)})
	}
	tests := []struct {
		page, limit int
		first       string
		n           int
	}{
		{1, 10, "pager/item00", 10},
		{2, 10, "pager/item10", 10},
		{3, 12, "pager/item24", 6},
		{4, 10, "", 0},
		{1, 100, "pager/item00", 30},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("page%d-limit%d", tt.page, tt.limit), func(t *testing.T) {
			t.Parallel()
			p, err := c.Search(t.Context(), "pager", tt.page, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if p.Total != 30 || len(p.Results) != tt.n || p.Results == nil {
				t.Fatalf("total %d, %d results (nil %v), want 30, %d", p.Total, len(p.Results), p.Results == nil, tt.n)
			}
			if tt.n > 0 && p.Results[0].Name != tt.first {
				t.Errorf("first = %s, want %s", p.Results[0].Name, tt.first)
			}
		})
	}
}

func TestSearchValidates(t *testing.T) {
	t.Parallel()
	h, c := newHub(t)
	tests := []struct {
		name        string
		query       string
		page, limit int
	}{
		{"empty query", "  ", 1, 10},
		{"long query", strings.Repeat("x", 300), 1, 10},
		{"limit 0", "nginx", 1, 0},
		{"limit 101", "nginx", 1, 101},
		{"page 0", "nginx", 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Search(t.Context(), tt.query, tt.page, tt.limit)
			wantCode(t, err, tarport.CodeInvalid)
		})
	}
	if n := h.TotalHits(); n != 0 {
		t.Errorf("invalid searches reached Hub %d times", n)
	}
}

func TestSearchDepthLimit(t *testing.T) {
	t.Parallel()
	h, c := newHub(t)
	h.DepthLimit(200)
	_, err := c.Search(t.Context(), "nginx", 11, 20)
	wantCode(t, err, tarport.CodeForbidden)
}

func TestRepository(t *testing.T) {
	t.Parallel()
	_, c := newHub(t)
	tests := []struct {
		ns, name  string
		wantName  string
		wantNS    string
		official  bool
		pulls     int64
		descStart string
	}{
		{"library", "nginx", "nginx", "library", true, 13718294112, "# Quick reference"},
		{"", "nginx", "nginx", "library", true, 13718294112, "# Quick reference"},
		{"tensorflow", "tensorflow", "tensorflow/tensorflow", "tensorflow", false, 84317625, "TensorFlow Docker images"},
		{"library", "alpine", "alpine", "library", true, 11207781034, ""},
	}
	for _, tt := range tests {
		t.Run(tt.ns+"/"+tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := c.Repository(t.Context(), tt.ns, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if d.Name != tt.wantName || d.Namespace != tt.wantNS || d.Official != tt.official {
				t.Errorf("got %+v", d.RepoSummary)
			}
			if d.Pulls == nil || *d.Pulls != tt.pulls || d.Stars == nil || d.Updated == nil || d.Description == "" {
				t.Errorf("facts: pulls %v stars %v updated %v desc %q", deref(d.Pulls), deref(d.Stars), d.Updated, d.Description)
			}
			if !strings.HasPrefix(d.FullDescription, tt.descStart) || d.Tags != nil {
				t.Errorf("full description %.30q, tags %v", d.FullDescription, d.Tags)
			}
		})
	}
}

func TestRepositoryNotFoundAndInvalid(t *testing.T) {
	t.Parallel()
	h, c := newHub(t)
	_, err := c.Repository(t.Context(), "library", "doesnotexist")
	e := wantCode(t, err, tarport.CodeNotFound)
	if !strings.Contains(e.Message, "doesnotexist") || !strings.Contains(e.Message, "not found") {
		t.Errorf("message = %q", e.Message)
	}
	_, err = c.Tags(t.Context(), "nobody", "nothing", 10)
	wantCode(t, err, tarport.CodeNotFound)

	before := h.TotalHits()
	for _, n := range [][2]string{{"..", "x"}, {"a", "b/c"}, {"a", "B"}, {"a", "x?y"}, {"a", ""}} {
		_, err := c.Repository(t.Context(), n[0], n[1])
		wantCode(t, err, tarport.CodeInvalidReference)
	}
	if h.TotalHits() != before {
		t.Error("invalid names reached Hub")
	}
}

func TestTagsFromFixture(t *testing.T) {
	t.Parallel()
	_, c := newHub(t)
	tags, err := c.Tags(t.Context(), "library", "nginx", 10)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tg := range tags {
		names = append(names, tg.Name)
		for _, p := range tg.Platforms {
			if p.OS == "unknown" || p.Architecture == "unknown" {
				t.Errorf("%s keeps attestation %s", tg.Name, p.Digest)
			}
		}
	}
	if want := []string{"latest", "1.29.4", "1.29.4-perl", "1.29.4-alpine", "1.9.15"}; !slices.Equal(names, want) {
		t.Errorf("tags = %v, want %v", names, want)
	}
	latest := tags[0]
	if latest.Digest != "sha256:6e22c92ebe691b6ad70c99681a06627166bec0b75e42767f406a958e4282e041" {
		t.Errorf("digest = %s, want the tag-level (index) digest", latest.Digest)
	}
	if latest.Size != 77910341 {
		t.Errorf("size = %d, want the biggest platform's 77910341", latest.Size)
	}
	var plats []string
	for _, p := range latest.Platforms {
		plats = append(plats, strings.TrimSuffix(p.OS+"/"+p.Architecture+"/"+p.Variant, "/"))
	}
	want := []string{"linux/amd64", "linux/arm/v5", "linux/arm/v7", "linux/arm64/v8", "linux/386", "linux/mips64le", "linux/ppc64le", "linux/s390x"}
	if !slices.Equal(plats, want) {
		t.Errorf("platforms = %v, want %v", plats, want)
	}
	if latest.Updated == nil || latest.Platforms[0].Size != 72391044 || latest.Platforms[0].Digest == "" {
		t.Errorf("latest = %+v", latest)
	}
	if old := tags[4]; len(old.Platforms) != 1 || old.Size != 71382118 {
		t.Errorf("1.9.15 = %+v", old)
	}
}

// addTags gives acme/app n tags with dates shuffled so Hub's insertion order
// is not the newest-first order.
func addTags(h *fakehub.Hub, n int) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		day := (i * 37) % n // a permutation when gcd(37, n) == 1
		h.AddTags("acme", "app", fakehub.Tag{
			Name: fmt.Sprintf("d%03d", day), Digest: fmt.Sprintf("sha256:%03d", day),
			LastUpdated: base.Add(time.Duration(day) * time.Hour),
			Images: []fakehub.Image{
				{OS: "linux", Architecture: "amd64", Digest: "sha256:a", Size: 100},
				{OS: "linux", Architecture: "arm", Variant: "v7", Digest: "sha256:b", Size: 300},
				{OS: "unknown", Architecture: "unknown", Digest: "sha256:c", Size: 5},
			},
		})
	}
}

func TestTagsPagesNewestFirst(t *testing.T) {
	t.Parallel()
	tests := []struct {
		limit, wantPages int
	}{
		{5, 1}, {100, 1}, {101, 2}, {250, 3}, {1000, 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			t.Parallel()
			h, c := newHub(t)
			addTags(h, 250)
			h.ReverseOrdering(true) // oldest first: only the local sort makes it right
			tags, err := c.Tags(t.Context(), "acme", "app", tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if want := min(tt.limit, 250); len(tags) != want {
				t.Fatalf("%d tags, want %d", len(tags), want)
			}
			for i := 1; i < len(tags); i++ {
				if tags[i].Updated.After(*tags[i-1].Updated) {
					t.Fatalf("tag %d (%s) newer than tag %d (%s)", i, tags[i].Name, i-1, tags[i-1].Name)
				}
			}
			if hits := h.Hits("/v2/namespaces/acme/repositories/app/tags"); hits != tt.wantPages {
				t.Errorf("%d pages fetched, want %d", hits, tt.wantPages)
			}
			if tg := tags[0]; tg.Size != 300 || len(tg.Platforms) != 2 || tg.Platforms[1].Variant != "v7" || tg.Platforms[0].Variant != "" {
				t.Errorf("tag = %+v", tg)
			}
		})
	}
}

func TestTagsStopAtDepthLimit(t *testing.T) {
	t.Parallel()
	h, c := newHub(t)
	addTags(h, 250)
	h.DepthLimit(200)
	tags, err := c.Tags(t.Context(), "acme", "app", 1000)
	if err != nil {
		t.Fatalf("depth limit should end the list quietly: %v", err)
	}
	if len(tags) != 200 {
		t.Errorf("%d tags, want the 200 before the depth limit", len(tags))
	}
}

func TestTagsValidates(t *testing.T) {
	t.Parallel()
	_, c := newHub(t)
	for _, limit := range []int{0, -1, dockerhub.MaxTags + 1} {
		_, err := c.Tags(t.Context(), "library", "nginx", limit)
		wantCode(t, err, tarport.CodeInvalid)
	}
}

func TestTagsIgnoresCrossOriginNext(t *testing.T) {
	t.Parallel()
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		fmt.Fprint(w, `{"count":2,"next":"https://evil.example/v2/namespaces/a/repositories/b/tags?page=2",
			"results":[{"name":"v1","digest":"sha256:1","last_updated":"2026-01-01T00:00:00Z",
			"images":[{"os":"linux","architecture":"amd64","variant":null,"digest":"sha256:11","size":9}]}]}`)
	}))
	t.Cleanup(srv.Close)
	c := dockerhub.New(srv.URL, srv.Client())
	tags, err := c.Tags(t.Context(), "acme", "app", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 1 || hits != 1 {
		t.Errorf("%d tags after %d requests, want 1 and 1", len(tags), hits)
	}
}

func TestPopular(t *testing.T) {
	t.Parallel()
	for _, reversed := range []bool{false, true} {
		t.Run(fmt.Sprintf("reversed=%v", reversed), func(t *testing.T) {
			t.Parallel()
			h, c := newHub(t)
			h.ReverseOrdering(reversed)
			h.AddRepo(fakehub.Repo{Namespace: "bitnami", Name: "redis", Description: "Bitnami Redis", Pulls: 9_000_000_000, Stars: 1})
			got, err := c.Popular(t.Context(), 5, []string{"bitnami/redis", "tensorflow/tensorflow", "nope/missing", "nginx"})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range got {
				names = append(names, r.Name)
			}
			if want := []string{"nginx", "alpine", "ubuntu", "bitnami/redis", "busybox"}; !slices.Equal(names, want) {
				t.Errorf("popular = %v, want %v", names, want)
			}
			if got[3].Official || got[3].Namespace != "bitnami" || !got[0].Official {
				t.Errorf("official flags: %+v", got)
			}
			wantLists := 1
			if reversed {
				wantLists = 2
			}
			if n := h.Hits("/v2/namespaces/library/repositories"); n != wantLists {
				t.Errorf("library list fetched %d times, want %d", n, wantLists)
			}
		})
	}
}

func TestPopularAll(t *testing.T) {
	t.Parallel()
	_, c := newHub(t)
	got, err := c.Popular(t.Context(), 100, []string{"tensorflow/tensorflow"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 7 || got[len(got)-1].Name != "tensorflow/tensorflow" {
		t.Errorf("popular = %d items, last %+v", len(got), got[len(got)-1])
	}
	_, err = c.Popular(t.Context(), 0, nil)
	wantCode(t, err, tarport.CodeInvalid)
	_, err = c.Popular(t.Context(), 10, []string{"Not A Repo"})
	wantCode(t, err, tarport.CodeInvalidReference)
}

func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		setup     func(h *fakehub.Hub)
		client    func(h *fakehub.Hub) *http.Client
		ctx       func(t *testing.T) context.Context
		want      tarport.Code
		retry     int
		msgSubstr string
	}{
		{name: "429", setup: func(h *fakehub.Hub) { h.FailNext(429, 1, 7*time.Second) }, want: tarport.CodeRateLimited, retry: 7, msgSubstr: "rate limit"},
		{name: "429 bare", setup: func(h *fakehub.Hub) { h.FailNext(429, 1, 0) }, want: tarport.CodeRateLimited},
		{name: "500", setup: func(h *fakehub.Hub) { h.FailNext(500, 1, 0) }, want: tarport.CodeUpstream},
		{name: "503", setup: func(h *fakehub.Hub) { h.FailNext(503, 1, 0) }, want: tarport.CodeUpstream},
		{name: "401", setup: func(h *fakehub.Hub) { h.FailNext(401, 1, 0) }, want: tarport.CodeUnauthorized},
		{
			name:  "slow answer, client timeout",
			setup: func(h *fakehub.Hub) { h.Delay(2 * time.Second) },
			client: func(h *fakehub.Hub) *http.Client {
				cl := *h.Client() // a copy: the server's client is shared
				cl.Timeout = 100 * time.Millisecond
				return &cl
			},
			want: tarport.CodeUpstreamTimeout, msgSubstr: "too slow",
		},
		{
			name:  "slow answer, ctx deadline",
			setup: func(h *fakehub.Hub) { h.Delay(2 * time.Second) },
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			want: tarport.CodeUpstreamTimeout, msgSubstr: "too slow",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := fakehub.New(t, "")
			tt.setup(h)
			cl := h.Client()
			if tt.client != nil {
				cl = tt.client(h)
			}
			ctx := t.Context()
			if tt.ctx != nil {
				ctx = tt.ctx(t)
			}
			c := dockerhub.New(h.URL, cl)
			start := time.Now()
			_, err := c.Repository(ctx, "library", "nginx")
			e := wantCode(t, err, tt.want)
			if e.RetryAfter != tt.retry {
				t.Errorf("RetryAfter = %d, want %d", e.RetryAfter, tt.retry)
			}
			if !strings.Contains(strings.ToLower(e.Message), tt.msgSubstr) {
				t.Errorf("message %q lacks %q", e.Message, tt.msgSubstr)
			}
			if e.Err == nil {
				t.Error("no wrapped detail")
			}
			if time.Since(start) > time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
}

func TestBadAnswers(t *testing.T) {
	t.Parallel()
	unix := time.Now().Add(42 * time.Second).Unix()
	tests := []struct {
		name   string
		handle func(w http.ResponseWriter)
		want   tarport.Code
		retry  int
	}{
		{"malformed json", func(w http.ResponseWriter) { fmt.Fprint(w, `{"name":`) }, tarport.CodeUpstream, 0},
		{"wrong types", func(w http.ResponseWriter) { fmt.Fprint(w, `{"name":["x"]}`) }, tarport.CodeUpstream, 0},
		{"too big", func(w http.ResponseWriter) {
			fmt.Fprint(w, `{"description":"`+strings.Repeat("x", dockerhub.MaxBodyBytes)+`"}`)
		}, tarport.CodeUpstream, 0},
		{"X-Retry-After unix time", func(w http.ResponseWriter) {
			w.Header().Set("X-Retry-After", fmt.Sprint(unix))
			w.WriteHeader(429)
		}, tarport.CodeRateLimited, 42},
		{"Retry-After date", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(429)
		}, tarport.CodeRateLimited, 90},
		{"418", func(w http.ResponseWriter) { w.WriteHeader(418) }, tarport.CodeUpstream, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tt.handle(w) }))
			t.Cleanup(srv.Close)
			_, err := dockerhub.New(srv.URL, srv.Client()).Repository(t.Context(), "library", "nginx")
			e := wantCode(t, err, tt.want)
			if d := e.RetryAfter - tt.retry; d < -2 || d > 1 {
				t.Errorf("RetryAfter = %d, want about %d", e.RetryAfter, tt.retry)
			}
		})
	}
}

func TestBadBaseURL(t *testing.T) {
	t.Parallel()
	_, err := dockerhub.New("::not a url", nil).Repository(t.Context(), "library", "nginx")
	wantCode(t, err, tarport.CodeInternal)
}
