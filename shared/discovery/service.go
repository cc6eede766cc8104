package discovery

import (
	"context"
	"fmt"
	"slices"

	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarport"
)

// Cache keys carry a version: a change of a cached value's shape bumps it
// and old entries are never read again.
const keyPrefix = "v1:"

// Search returns one page of Docker Hub search results. page 0 means 1
// and limit 0 means DefaultLimit.
func (s *Service) Search(ctx context.Context, query string, page, limit int) (Result[tarport.SearchPage], error) {
	q, err := normalizeQuery(query)
	if err != nil {
		return Result[tarport.SearchPage]{}, err
	}
	if page, err = normalizePage(page); err != nil {
		return Result[tarport.SearchPage]{}, err
	}
	if limit, err = normalizeLimit(limit); err != nil {
		return Result[tarport.SearchPage]{}, err
	}
	key := fmt.Sprintf("%ssearch:%d:%d:%s", keyPrefix, page, limit, q)
	return fetch(ctx, s, key, s.cfg.SearchTTL, false, func(ctx context.Context) (tarport.SearchPage, error) {
		p, err := s.hub.Search(ctx, q, page, limit)
		if err != nil {
			return p, fmt.Errorf("searching Docker Hub for %q: %w", q, err)
		}
		p.Query, p.Page, p.Limit = q, page, limit
		if p.Results == nil {
			p.Results = []tarport.RepoSummary{}
		}
		return p, nil
	})
}

// Details returns a Docker Hub repository with its newest tags. image is
// "nginx", "library/nginx", "bitnami/redis" or "docker.io/bitnami/redis".
func (s *Service) Details(ctx context.Context, image string) (Result[tarport.RepoDetails], error) {
	if r, err := tarport.ParseReference(image); err == nil && r.Registry != "docker.io" && s.cfg.Registry != nil {
		return s.registryDetails(ctx, r)
	}
	namespace, name, err := hubRepository(image)
	if err != nil {
		return Result[tarport.RepoDetails]{}, err
	}
	return s.details(ctx, namespace, name, false)
}

// registryDetails answers for images outside Docker Hub from their
// registry, cached like Hub details. The asked tag leads the list.
func (s *Service) registryDetails(ctx context.Context, r ref.Ref) (Result[tarport.RepoDetails], error) {
	key := fmt.Sprintf("%sdetails:%s/%s:%s", keyPrefix, r.Registry, r.Repository, r.Tag)
	return fetch(ctx, s, key, s.cfg.DetailsTTL, false, func(ctx context.Context) (tarport.RepoDetails, error) {
		d, err := s.cfg.Registry.Details(ctx, r, s.cfg.RegistryPlatformTags)
		if err != nil {
			return d, fmt.Errorf("listing %s/%s: %w", r.Registry, r.Repository, err)
		}
		if len(d.Tags) > s.cfg.DetailsTags {
			d.Tags = d.Tags[:s.cfg.DetailsTags]
		}
		return d, nil
	})
}

func (s *Service) details(ctx context.Context, namespace, name string, refresh bool) (Result[tarport.RepoDetails], error) {
	key := fmt.Sprintf("%sdetails:docker.io/%s/%s", keyPrefix, namespace, name)
	return fetch(ctx, s, key, s.cfg.DetailsTTL, refresh, func(ctx context.Context) (tarport.RepoDetails, error) {
		d, err := s.hub.Repository(ctx, namespace, name)
		if err != nil {
			return d, fmt.Errorf("getting repository %s/%s: %w", namespace, name, err)
		}
		tags, err := s.hub.Tags(ctx, namespace, name, s.cfg.DetailsTags)
		if err != nil {
			return d, fmt.Errorf("listing tags of %s/%s: %w", namespace, name, err)
		}
		if tags == nil {
			tags = []tarport.TagInfo{}
		}
		d.Tags = tags
		return d, nil
	})
}

// Popular returns the first limit repositories of the popular list
// (limit 0 means DefaultLimit). The list is fetched and cached once at
// Config.PopularSize, whatever limit is asked.
func (s *Service) Popular(ctx context.Context, limit int) (Result[[]tarport.RepoSummary], error) {
	limit, err := normalizeLimit(limit)
	if err != nil {
		return Result[[]tarport.RepoSummary]{}, err
	}
	res, err := s.popular(ctx, false)
	if err != nil {
		return res, err
	}
	res.Value = slices.Clone(res.Value[:min(limit, len(res.Value))])
	return res, nil
}

func (s *Service) popular(ctx context.Context, refresh bool) (Result[[]tarport.RepoSummary], error) {
	key := fmt.Sprintf("%spopular:%d", keyPrefix, s.cfg.PopularSize)
	return fetch(ctx, s, key, s.cfg.PopularTTL, refresh, func(ctx context.Context) ([]tarport.RepoSummary, error) {
		list, err := s.hub.Popular(ctx, s.cfg.PopularSize, s.cfg.PopularNotable)
		if err != nil {
			return nil, fmt.Errorf("listing popular repositories: %w", err)
		}
		if list == nil {
			list = []tarport.RepoSummary{}
		}
		return list, nil
	})
}
