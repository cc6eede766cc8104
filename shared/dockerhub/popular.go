package dockerhub

import (
	"cmp"
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/tarport/tarport/shared/tarport"
)

// repoList is one page of a repository list.
type repoList struct {
	Results []repoInfo `json:"results"`
}

// Popular returns up to limit (1..MaxPageSize) repositories by pulls, most
// first: the most pulled official images merged with the notable
// non-official repositories named ("bitnami/redis"), each fetched with
// Repository. A notable repository Hub does not know is left out; any other
// failure fails the call, so a cache never keeps a list with holes.
//
// Official images come from the documented
// /v2/namespaces/library/repositories?ordering=pull_count. Hub's direction for
// ordering has flipped before (latest.yaml and measurements disagree), so one
// page of MaxPageSize is read and, when it comes back least pulled first, the
// opposite ordering is read too; the lot is sorted locally.
func (c *Client) Popular(ctx context.Context, limit int, notable []string) ([]tarport.RepoSummary, error) {
	if limit < 1 || limit > MaxPageSize {
		return nil, tarport.Errorf(tarport.CodeInvalid, "limit must be between 1 and %d", MaxPageSize)
	}
	type ref struct{ ns, name string }
	refs := make([]ref, 0, len(notable))
	for _, n := range notable {
		ns, name, found := strings.Cut(strings.TrimSpace(n), "/")
		if !found {
			ns, name = "library", ns
		}
		ns, name, err := checkRepo(ns, name)
		if err != nil {
			return nil, err
		}
		refs = append(refs, ref{ns, name})
	}

	official, err := c.libraryPage(ctx, "pull_count")
	if err != nil {
		return nil, err
	}
	if len(official) > 1 && pulls(official[0]) < pulls(official[len(official)-1]) {
		more, err := c.libraryPage(ctx, "-pull_count")
		if err != nil {
			return nil, err
		}
		official = append(official, more...)
	}

	found := make([]*tarport.RepoSummary, len(refs))
	errs := make([]error, len(refs))
	var wg sync.WaitGroup
	for i, r := range refs {
		wg.Go(func() {
			d, err := c.Repository(ctx, r.ns, r.name)
			if err == nil {
				found[i] = &d.RepoSummary
			} else if tarport.ErrorCode(err) != tarport.CodeNotFound {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}

	seen := map[string]bool{}
	var out []tarport.RepoSummary
	for _, s := range official {
		if !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, s)
		}
	}
	for _, s := range found {
		if s != nil && !seen[s.Name] {
			seen[s.Name] = true
			out = append(out, *s)
		}
	}
	slices.SortStableFunc(out, func(a, b tarport.RepoSummary) int {
		if c := cmp.Compare(pulls(b), pulls(a)); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	if out == nil {
		out = []tarport.RepoSummary{}
	}
	return out, nil
}

// libraryPage reads the first MaxPageSize official images in ordering.
func (c *Client) libraryPage(ctx context.Context, ordering string) ([]tarport.RepoSummary, error) {
	q := url.Values{}
	q.Set("page", "1")
	q.Set("page_size", strconv.Itoa(MaxPageSize))
	q.Set("ordering", ordering)
	var raw repoList
	err := c.getJSON(ctx, c.endpoint(q, "v2", "namespaces", "library", "repositories"),
		"Docker Hub's list of official images is not available", &raw)
	if err != nil {
		return nil, err
	}
	out := make([]tarport.RepoSummary, 0, len(raw.Results))
	for _, r := range raw.Results {
		if r.Name == "" {
			continue
		}
		r.Namespace = "library"
		out = append(out, r.summary())
	}
	return out, nil
}

// pulls ranks a missing count below every known one.
func pulls(s tarport.RepoSummary) int64 {
	if s.Pulls == nil {
		return -1
	}
	return *s.Pulls
}
