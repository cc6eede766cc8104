package dockerhub

import (
	"context"
	"encoding/json"
	"net/url"

	"github.com/tarport/tarport/shared/tarport"
)

// repoInfo is Hub's repository_info, also the shape of a repository list entry.
type repoInfo struct {
	Name            string          `json:"name"`
	Namespace       string          `json:"namespace"`
	Description     *string         `json:"description"`
	FullDescription *string         `json:"full_description"`
	StarCount       json.RawMessage `json:"star_count"`
	PullCount       json.RawMessage `json:"pull_count"`
	LastUpdated     *string         `json:"last_updated"`
}

func (r repoInfo) summary() tarport.RepoSummary {
	s := tarport.RepoSummary{
		Name:      displayName(r.Namespace, r.Name),
		Namespace: r.Namespace,
		Official:  r.Namespace == "library",
		Stars:     count(r.StarCount),
		Pulls:     count(r.PullCount),
		Updated:   hubTime(r.LastUpdated),
	}
	if r.Description != nil {
		s.Description = *r.Description
	}
	return s
}

// Repository returns the facts of one repository (namespace "" or "library"
// for official images); Tags is left nil, see Tags. It reads the documented
// /v2/namespaces/{ns}/repositories/{name}; the older /v2/repositories/{ns}/{name}/
// is deprecated since 2025-09 and answers the same body.
func (c *Client) Repository(ctx context.Context, namespace, name string) (tarport.RepoDetails, error) {
	namespace, name, err := checkRepo(namespace, name)
	if err != nil {
		return tarport.RepoDetails{}, err
	}
	var raw repoInfo
	u := c.endpoint(url.Values{}, "v2", "namespaces", namespace, "repositories", name)
	if err := c.getJSON(ctx, u, notFoundMessage(namespace, name), &raw); err != nil {
		return tarport.RepoDetails{}, err
	}
	// The path is what was asked; Hub's echo of it could only disagree by a bug.
	raw.Namespace, raw.Name = namespace, name
	d := tarport.RepoDetails{RepoSummary: raw.summary()}
	if raw.FullDescription != nil {
		d.FullDescription = *raw.FullDescription
	}
	return d, nil
}

func notFoundMessage(namespace, name string) string {
	return "repository " + displayName(namespace, name) + " was not found on Docker Hub (it may be private)"
}
