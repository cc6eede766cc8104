package discovery

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tarport/tarport/shared/tarport"
)

// Input bounds of DESIGN.md's API table.
const (
	MaxQueryLength = 100 // characters, after trimming
	DefaultLimit   = 25
	MaxLimit       = 100
	MaxPage        = 100
)

// normalizeQuery trims, collapses inner spaces and lowercases a search
// query, so "Nginx " and "nginx" share one cache entry.
func normalizeQuery(q string) (string, error) {
	if !utf8.ValidString(q) {
		return "", tarport.Errorf(tarport.CodeInvalid, "the search query is not valid UTF-8")
	}
	q = strings.ToLower(strings.Join(strings.Fields(q), " "))
	n := utf8.RuneCountInString(q)
	if n == 0 {
		return "", tarport.Errorf(tarport.CodeInvalid, "the search query is empty")
	}
	if n > MaxQueryLength {
		return "", tarport.Errorf(tarport.CodeInvalid, "the search query is longer than %d characters", MaxQueryLength)
	}
	if strings.IndexFunc(q, unicode.IsControl) >= 0 {
		return "", tarport.Errorf(tarport.CodeInvalid, "the search query contains control characters")
	}
	return q, nil
}

// normalizeLimit maps 0 (not given) to DefaultLimit.
func normalizeLimit(limit int) (int, error) {
	if limit == 0 {
		return DefaultLimit, nil
	}
	if limit < 1 || limit > MaxLimit {
		return 0, tarport.Errorf(tarport.CodeInvalid, "limit must be between 1 and %d", MaxLimit)
	}
	return limit, nil
}

// normalizePage maps 0 (not given) to the first page.
func normalizePage(page int) (int, error) {
	if page == 0 {
		return 1, nil
	}
	if page < 1 || page > MaxPage {
		return 0, tarport.Errorf(tarport.CodeInvalid, "page must be between 1 and %d", MaxPage)
	}
	return page, nil
}

// hubRepository parses an image name into a Docker Hub namespace and name:
// "nginx" is library/nginx. A tag or digest is ignored, as details list
// every tag. Other registries are not supported yet.
func hubRepository(image string) (namespace, name string, err error) {
	r, err := tarport.ParseReference(image)
	if err != nil {
		return "", "", err
	}
	if r.Registry != "docker.io" {
		return "", "", tarport.Errorf(tarport.CodeUnsupported, "details of images outside Docker Hub (%s) are not supported yet", r.Registry)
	}
	namespace, name, ok := strings.Cut(r.Repository, "/")
	if !ok || strings.Contains(name, "/") {
		return "", "", tarport.Errorf(tarport.CodeInvalidReference, "%q is not a Docker Hub repository (expected name or namespace/name)", image)
	}
	return namespace, name, nil
}
