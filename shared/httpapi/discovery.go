package httpapi

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/tarport/tarport/shared/discovery"
	"github.com/tarport/tarport/shared/tarport"
)

// Discovery is what the API needs of the discovery service.
type Discovery interface {
	Search(ctx context.Context, query string, page, limit int) (discovery.Result[tarport.SearchPage], error)
	Details(ctx context.Context, image string) (discovery.Result[tarport.RepoDetails], error)
	Popular(ctx context.Context, limit int) (discovery.Result[[]tarport.RepoSummary], error)
}

// discoveryParams are the inputs of the discovery endpoints, from the
// query string (GET) or a JSON body (the seed's POST forms).
type discoveryParams struct {
	Q     string `json:"q"`
	Query string `json:"query"`
	Image string `json:"image"`
	Limit any    `json:"limit"` // a number or a numeric string, as the seed sent both
	Page  any    `json:"page"`
}

func readParams(w http.ResponseWriter, r *http.Request) (discoveryParams, error) {
	var p discoveryParams
	if r.Method == http.MethodPost && r.ContentLength != 0 {
		if err := decodeBody(w, r, &p); err != nil {
			return p, err
		}
	}
	q := r.URL.Query()
	for _, f := range []struct {
		dst *string
		key string
	}{{&p.Q, "q"}, {&p.Query, "query"}, {&p.Image, "image"}} {
		if v := q.Get(f.key); v != "" {
			*f.dst = v
		}
	}
	if v := q.Get("limit"); v != "" {
		p.Limit = v
	}
	if v := q.Get("page"); v != "" {
		p.Page = v
	}
	return p, nil
}

// intParam reads an optional positive integer given as a JSON number or a
// string; absent, it is def.
func intParam(v any, name string, def int) (int, error) {
	n, ok := 0, false
	switch x := v.(type) {
	case nil:
		return def, nil
	case float64:
		n, ok = int(x), x == float64(int(x))
	case string:
		if x == "" {
			return def, nil
		}
		var err error
		n, err = strconv.Atoi(strings.TrimSpace(x))
		ok = err == nil
	}
	if !ok || n < 1 {
		return 0, tarport.Errorf(tarport.CodeInvalid, "%q must be a whole number from 1", name)
	}
	return n, nil
}

// cacheHeader tells clients where an answer came from; a stale answer was
// served because Docker Hub failed.
func (a *API) cacheHeader(w http.ResponseWriter, cached, stale bool) {
	result := "miss"
	switch {
	case stale:
		result = "stale"
		w.Header().Set("Warning", `110 - "Response is Stale"`)
	case cached:
		result = "hit"
	}
	w.Header().Set("X-Cache", strings.ToUpper(result))
	a.opts.Metrics.DiscoveryCache(result)
}

func (a *API) search(w http.ResponseWriter, r *http.Request) {
	p, err := readParams(w, r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	query := p.Q
	if query == "" {
		query = p.Query
	}
	limit, err := intParam(p.Limit, "limit", 25)
	if err == nil {
		var page int
		page, err = intParam(p.Page, "page", 1)
		if err == nil {
			var res discovery.Result[tarport.SearchPage]
			res, err = a.opts.Discovery.Search(r.Context(), query, page, limit)
			if err == nil {
				a.cacheHeader(w, res.Cached, res.Stale)
				writeJSON(w, http.StatusOK, res.Value)
				return
			}
		}
	}
	writeError(w, r, a.log, err)
}

func (a *API) details(w http.ResponseWriter, r *http.Request) {
	p, err := readParams(w, r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	res, err := a.opts.Discovery.Details(r.Context(), p.Image)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	a.cacheHeader(w, res.Cached, res.Stale)
	writeJSON(w, http.StatusOK, res.Value)
}

func (a *API) popular(w http.ResponseWriter, r *http.Request) {
	p, err := readParams(w, r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	limit, err := intParam(p.Limit, "limit", 25)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	res, err := a.opts.Discovery.Popular(r.Context(), limit)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	a.cacheHeader(w, res.Cached, res.Stale)
	writeJSON(w, http.StatusOK, map[string]any{"results": res.Value})
}
