package tarport

import "time"

// RepoSummary is one repository in search results and the popular list,
// the same shape whatever the source. Hub-only facts (stars, pulls) are
// nil where the source does not have them, never invented.
type RepoSummary struct {
	Name        string     `json:"name"`      // as users type it: nginx, bitnami/redis, ghcr.io/o/r
	Namespace   string     `json:"namespace"` // library for official images
	Official    bool       `json:"official"`
	Description string     `json:"description"`
	Stars       *int64     `json:"stars"`
	Pulls       *int64     `json:"pulls"`
	Updated     *time.Time `json:"updated"` // RFC 3339
}

// SearchPage is one page of search results.
type SearchPage struct {
	Query   string        `json:"query"`
	Page    int           `json:"page"`
	Limit   int           `json:"limit"`
	Total   int64         `json:"total"`
	Results []RepoSummary `json:"results"`
}

// RepoDetails is a repository with its tags.
type RepoDetails struct {
	RepoSummary
	FullDescription string    `json:"full_description,omitempty"`
	Tags            []TagInfo `json:"tags"`
}

// TagInfo is one tag and the platforms it offers (attestations left out).
type TagInfo struct {
	Name      string         `json:"name"`
	Digest    string         `json:"digest"` // the index's, or the manifest's for a single-platform tag
	Size      int64          `json:"size"`   // compressed bytes of the biggest platform image
	Updated   *time.Time     `json:"updated"`
	Platforms []PlatformInfo `json:"platforms"`
}

// PlatformInfo is one runnable image of a tag.
type PlatformInfo struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
	Variant      string `json:"variant"`
	Digest       string `json:"digest"`
	Size         int64  `json:"size"` // compressed bytes
}
