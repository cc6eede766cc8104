// Package webtest owns the browser tests of the web UI (issue #5): a real
// Debian chromium, driven by npm playwright-core from e2e.mjs, against the
// local server wired to the fake Docker Hub (search, popular, details) and
// a loopback registry standing in for docker.io (downloads). The Go side
// starts that stack, runs the script and checks the tar the browser saved
// with independent readers; TestScreenshots reuses it to write
// docs/screenshots/ (`make screenshots`).
package webtest
