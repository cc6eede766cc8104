// Package web is the static UI: plain files (ES modules, no framework, no
// build step) that the local server embeds and serves at /, and that
// `make deploy` copies to the web bucket behind CloudFront. Nothing is
// loaded from a third-party host at run time.
package web

import "embed"

// Files are the UI's files, rooted at this directory.
//
//go:embed index.html assets
var Files embed.FS

// CSP is the Content-Security-Policy the UI is served with, by the local
// server and by the CloudFront distribution (template.yaml carries the
// same string; infra/templatecheck holds them equal).
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
