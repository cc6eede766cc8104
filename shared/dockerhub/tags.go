package dockerhub

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/tarport/tarport/shared/tarport"
)

// tagsPage is one page of a tag list.
type tagsPage struct {
	Next    *string  `json:"next"`
	Results []hubTag `json:"results"`
}

type hubTag struct {
	Name        string     `json:"name"`
	Digest      string     `json:"digest"` // the index's, or the single manifest's
	LastUpdated *string    `json:"last_updated"`
	FullSize    *int64     `json:"full_size"`
	Images      []hubImage `json:"images"` // an array, whatever latest.yaml says
}

type hubImage struct {
	OS           string  `json:"os"`
	Architecture string  `json:"architecture"`
	Variant      *string `json:"variant"`
	Digest       string  `json:"digest"`
	Size         *int64  `json:"size"`
}

// Tags returns up to limit (1..MaxTags) tags of a repository, newest first,
// each with its runnable platforms.
//
// It pages /v2/namespaces/{ns}/repositories/{name}/tags?ordering=last_updated
// (newest first as measured, though latest.yaml claims otherwise) and still
// sorts locally. It follows only same-origin next links, and a 403 past the
// first page (Hub's anonymous paging depth) or a 404 (past the end) ends the
// list with what it has. BuildKit attestation entries (unknown/unknown) are
// not platforms and are left out.
func (c *Client) Tags(ctx context.Context, namespace, name string, limit int) ([]tarport.TagInfo, error) {
	namespace, name, err := checkRepo(namespace, name)
	if err != nil {
		return nil, err
	}
	if limit < 1 || limit > MaxTags {
		return nil, tarport.Errorf(tarport.CodeInvalid, "the tag limit must be between 1 and %d", MaxTags)
	}
	pageSize := min(limit, MaxPageSize)
	q := url.Values{}
	q.Set("page", "1")
	q.Set("page_size", strconv.Itoa(pageSize))
	q.Set("ordering", "last_updated")
	u := c.endpoint(q, "v2", "namespaces", namespace, "repositories", name, "tags")

	tags := []tarport.TagInfo{}
	for pages := 0; u != nil && len(tags) < limit && pages <= limit/pageSize+1; pages++ {
		var page tagsPage
		err := c.getJSON(ctx, u, notFoundMessage(namespace, name), &page)
		if status := hubStatus(err); pages > 0 && (status == http.StatusForbidden || status == http.StatusNotFound) {
			break
		}
		if err != nil {
			return nil, err
		}
		for _, t := range page.Results {
			tags = append(tags, t.info())
		}
		u = c.sameOrigin(page.Next)
	}
	slices.SortStableFunc(tags, func(a, b tarport.TagInfo) int {
		switch {
		case a.Updated == nil && b.Updated == nil:
			return 0
		case a.Updated == nil:
			return 1
		case b.Updated == nil:
			return -1
		}
		return b.Updated.Compare(*a.Updated)
	})
	if len(tags) > limit {
		tags = tags[:limit]
	}
	return tags, nil
}

// sameOrigin parses a next link and returns it only if it points at the
// base's scheme and host (as Renovate does); nil ends paging.
func (c *Client) sameOrigin(next *string) *url.URL {
	if next == nil || *next == "" {
		return nil
	}
	u, err := url.Parse(*next)
	if err != nil || u.Scheme != c.base.Scheme || u.Host != c.base.Host {
		return nil
	}
	return u
}

func (t hubTag) info() tarport.TagInfo {
	info := tarport.TagInfo{
		Name:      t.Name,
		Digest:    t.Digest,
		Updated:   hubTime(t.LastUpdated),
		Platforms: []tarport.PlatformInfo{},
	}
	for _, im := range t.Images {
		if im.OS == "unknown" && im.Architecture == "unknown" || im.OS == "" || im.Architecture == "" {
			continue // attestation manifest, or nothing to run
		}
		p := tarport.PlatformInfo{OS: im.OS, Architecture: im.Architecture, Digest: im.Digest}
		if im.Variant != nil {
			p.Variant = *im.Variant
		}
		if im.Size != nil {
			p.Size = *im.Size
		}
		info.Size = max(info.Size, p.Size)
		info.Platforms = append(info.Platforms, p)
	}
	if info.Size == 0 && t.FullSize != nil {
		info.Size = *t.FullSize
	}
	if info.Digest == "" && len(info.Platforms) == 1 {
		info.Digest = info.Platforms[0].Digest
	}
	return info
}
