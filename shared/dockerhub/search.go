package dockerhub

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tarport/tarport/shared/tarport"
)

// MaxQueryLength bounds a search query; Hub has no use for longer ones.
const MaxQueryLength = 256

// v4Page is one answer of GET /api/search/v4.
type v4Page struct {
	Total   int64      `json:"total"`
	Results []v4Result `json:"results"`
}

// v4Result is one search hit. Counts are raw because v4 sends pull_count as
// a rounded string and a field may be null or missing.
type v4Result struct {
	ID               string          `json:"id"` // "library/nginx", "bitnami/redis"
	Name             string          `json:"name"`
	Type             string          `json:"type"`
	UpdatedAt        *string         `json:"updated_at"`
	ShortDescription *string         `json:"short_description"`
	Badge            *string         `json:"badge"`
	Source           *string         `json:"source"` // v3's name for badge
	StarCount        json.RawMessage `json:"star_count"`
	PullCount        json.RawMessage `json:"pull_count"`     // "1B+"
	RawPullCount     json.RawMessage `json:"raw_pull_count"` // exact, optional
}

// Search returns one page (from 1) of Docker Hub repositories matching query,
// limit (1..MaxPageSize) per page.
//
// It uses /api/search/v4, the search Docker's own web UI and hub-mcp call and
// that Docker named the replacement API (docker/roadmap#756); /v2/search/repositories
// is undocumented and kept only for old clients. v4 gives badges and update
// times that v2 lacks; its pull_count is rounded, so raw_pull_count is used
// when present (see count).
func (c *Client) Search(ctx context.Context, query string, page, limit int) (tarport.SearchPage, error) {
	query = strings.TrimSpace(query)
	switch {
	case query == "":
		return tarport.SearchPage{}, tarport.Errorf(tarport.CodeInvalid, "the search query is empty")
	case len(query) > MaxQueryLength:
		return tarport.SearchPage{}, tarport.Errorf(tarport.CodeInvalid, "the search query is longer than %d bytes", MaxQueryLength)
	case limit < 1 || limit > MaxPageSize:
		return tarport.SearchPage{}, tarport.Errorf(tarport.CodeInvalid, "limit must be between 1 and %d", MaxPageSize)
	case page < 1 || page > 10_000:
		return tarport.SearchPage{}, tarport.Errorf(tarport.CodeInvalid, "page must be between 1 and 10000")
	}
	q := url.Values{}
	q.Set("custom_boosted_results", "true")
	q.Set("query", query)
	q.Set("from", strconv.Itoa((page-1)*limit))
	q.Set("size", strconv.Itoa(limit))
	q.Set("type", "image")
	var raw v4Page
	err := c.getJSON(ctx, c.endpoint(q, "api", "search", "v4"), "Docker Hub search is not available", &raw)
	if hubStatus(err) == http.StatusForbidden {
		return tarport.SearchPage{}, tarport.Wrap(err, tarport.CodeForbidden,
			"Docker Hub does not show search results this far down without signing in")
	}
	if err != nil {
		return tarport.SearchPage{}, err
	}
	out := tarport.SearchPage{Query: query, Page: page, Limit: limit, Total: raw.Total, Results: []tarport.RepoSummary{}}
	for _, r := range raw.Results {
		if s, ok := r.summary(); ok {
			out.Results = append(out.Results, s)
		}
	}
	if len(out.Results) > limit {
		out.Results = out.Results[:limit]
	}
	return out, nil
}

// summary normalizes a hit: official images are "nginx" in namespace library,
// others "ns/name". ok is false for hits that are not images or lack a name.
func (r v4Result) summary() (tarport.RepoSummary, bool) {
	if r.Type != "" && r.Type != "image" {
		return tarport.RepoSummary{}, false
	}
	full := r.ID
	if !strings.Contains(full, "/") {
		full = r.Name
	}
	ns, name, found := strings.Cut(full, "/")
	if !found { // Hub names official images bare
		ns, name = "library", full
	}
	if ns == "" || name == "" || strings.Contains(name, "/") {
		return tarport.RepoSummary{}, false
	}
	badge := ""
	if r.Badge != nil {
		badge = *r.Badge
	} else if r.Source != nil {
		badge = *r.Source
	}
	s := tarport.RepoSummary{
		Name:      displayName(ns, name),
		Namespace: ns,
		Official:  ns == "library" || badge == "official",
		Stars:     count(r.StarCount),
		Pulls:     count(r.RawPullCount),
		Updated:   hubTime(r.UpdatedAt),
	}
	if s.Pulls == nil {
		s.Pulls = count(r.PullCount)
	}
	if r.ShortDescription != nil {
		s.Description = *r.ShortDescription
	}
	return s, true
}
