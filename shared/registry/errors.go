package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/regclient/regclient/types/errs"

	"github.com/tarport/tarport/shared/netguard"
	"github.com/tarport/tarport/shared/tarport"
)

// classify turns a regclient, go-containerregistry or HTTP status error into a coded error whose message is
// safe to show; the original stays wrapped for logs. Docker Hub answers
// 401 (not 404) for a repository that is missing or private, so the
// message says both.
func classify(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	var coded *tarport.Error
	switch {
	case errors.As(err, &coded):
		return err
	case errors.Is(err, netguard.ErrBlocked):
		return tarport.Wrap(err, tarport.CodeBlockedAddress, "%s: the registry address is not public, and this server does not trust it", what)
	case errors.Is(err, errs.ErrHTTPRateLimit):
		e := tarport.Wrap(err, tarport.CodeRateLimited, "%s: the registry is rate limiting this server; try again later", what)
		e.RetryAfter = 60
		return e
	case errors.Is(err, errs.ErrHTTPUnauthorized):
		return tarport.Wrap(err, tarport.CodeUnauthorized, "%s: the registry refused access; the image may not exist, or it is private and needs (other) credentials", what)
	case errors.Is(err, errs.ErrNotFound):
		return tarport.Wrap(err, tarport.CodeNotFound, "%s: not found", what)
	case errors.Is(err, errs.ErrDigestMismatch):
		return tarport.Wrap(err, tarport.CodeDigestMismatch, "%s: the registry sent bytes that do not match their digest", what)
	case errors.Is(err, errs.ErrShortRead), errors.Is(err, errs.ErrSizeLimitExceeded):
		return tarport.Wrap(err, tarport.CodeDigestMismatch, "%s: the registry sent a blob of the wrong size", what)
	case errors.Is(err, context.DeadlineExceeded):
		return tarport.Wrap(err, tarport.CodeUpstreamTimeout, "%s: the registry did not answer in time", what)
	case errors.Is(err, context.Canceled), errors.Is(err, errs.ErrCanceled):
		return tarport.Wrap(err, tarport.CodeUnavailable, "%s: canceled", what)
	}
	var status *httpStatusError
	if errors.As(err, &status) {
		return classifyStatus(err, status.status, status.retryAfter, what)
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		return classifyStatus(err, terr.StatusCode, 0, what)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return tarport.Wrap(err, tarport.CodeNotFound, "%s: the registry host %q does not exist", what, dnsErr.Name)
		}
		// No network, or a DNS server that failed: not the user's fault.
		return tarport.Wrap(err, tarport.CodeUpstream, "%s: cannot look up the registry host %q (is this server online?)", what, dnsErr.Name)
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return tarport.Wrap(err, tarport.CodeUpstreamTimeout, "%s: the registry did not answer in time", what)
	}
	return tarport.Wrap(err, tarport.CodeUpstream, "%s: the registry failed", what)
}

// classifyStatus codes an HTTP status from a registry or its CDN.
func classifyStatus(err error, status int, retryAfter time.Duration, what string) error {
	switch {
	case status == http.StatusUnauthorized:
		return tarport.Wrap(err, tarport.CodeUnauthorized, "%s: the registry refused access; the image may not exist, or it is private and needs (other) credentials", what)
	case status == http.StatusForbidden:
		return tarport.Wrap(err, tarport.CodeForbidden, "%s: the registry forbids access", what)
	case status == http.StatusNotFound:
		return tarport.Wrap(err, tarport.CodeNotFound, "%s: not found", what)
	case status == http.StatusTooManyRequests:
		e := tarport.Wrap(err, tarport.CodeRateLimited, "%s: the registry is rate limiting this server; try again later", what)
		e.RetryAfter = max(int(retryAfter.Seconds()), 60)
		return e
	case status == http.StatusGatewayTimeout || status == http.StatusRequestTimeout:
		return tarport.Wrap(err, tarport.CodeUpstreamTimeout, "%s: the registry did not answer in time", what)
	}
	return tarport.Wrap(err, tarport.CodeUpstream, "%s: the registry failed (HTTP %d)", what, status)
}
