// Package tarport holds the domain of the product: coded errors, image
// references and platforms, resolved images and download jobs. It depends
// on the standard library and regclient's leaf types (with the digest type
// they use) only, so everything built on it can be tested without a
// network; infra/depcheck holds it to that.
package tarport

import (
	"errors"
	"fmt"
)

// Code classifies a failure for the client. The HTTP layer maps each code
// to exactly one status in one table; nothing else leaks to a client.
type Code string

const (
	CodeInvalid          Code = "invalid_request"        // malformed input
	CodeInvalidReference Code = "invalid_reference"      // not a Docker image reference
	CodeInvalidPlatform  Code = "invalid_platform"       // not os/arch[/variant]
	CodeTooLarge         Code = "too_large"              // body or image over a limit
	CodeUnsupported      Code = "unsupported"            // e.g. schema1 manifests
	CodeUnauthorized     Code = "unauthorized"           // registry wants (other) credentials
	CodeForbidden        Code = "forbidden"              // registry or policy refuses
	CodeNotFound         Code = "not_found"              // image, tag or job missing
	CodePlatformNotFound Code = "platform_not_found"     // image lacks the asked platform
	CodeRateLimited      Code = "rate_limited"           // we or the registry throttle
	CodeUpstream         Code = "upstream_error"         // registry failed or lied
	CodeUpstreamTimeout  Code = "upstream_timeout"       // registry too slow
	CodeDigestMismatch   Code = "digest_mismatch"        // bytes did not match their digest
	CodeMethodNotAllowed Code = "method_not_allowed"     // wrong HTTP method
	CodeInternal         Code = "internal_error"         // our bug; details only in logs
	CodeUnavailable      Code = "service_unavailable"    // shutting down, store offline
	CodeBlockedAddress   Code = "blocked_address"        // SSRF guard refused a host
	CodeCredentialsGone  Code = "credentials_required"   // a private job's link (or resume) needs credentials
	CodeMediaType        Code = "unsupported_media_type" // a body that is not JSON
	CodeCrossSite        Code = "cross_site_request"     // a job asked for by another site's page
	CodeRequestTimeout   Code = "request_timeout"        // a client too slow sending its request
	CodeLinkInvalid      Code = "invalid_signature"      // a download link altered or made up
	CodeLinkExpired      Code = "link_expired"           // a download link past its expiry
	CodeRangeUnsatisfied Code = "range_not_satisfiable"  // a Range outside the file
	CodePrecondition     Code = "precondition_failed"    // an If-Match or If-Unmodified-Since that failed
	CodeAccessDenied     Code = "access_denied"          // no or a wrong access token (TARPORT_ACCESS_TOKEN)
	CodeQuotaExceeded    Code = "quota_exceeded"         // a client's daily bytes, or the service's daily budget, used up
)

// Error is a failure with a code and a message that is safe to show a user.
// The wrapped Err keeps internal detail for logs and errors.Is.
type Error struct {
	Code    Code
	Message string
	// RetryAfter, when set, tells the client how long to wait (seconds).
	RetryAfter int
	Err        error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds a coded error with a user-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap attaches a code and a user-safe message to an internal error.
func Wrap(err error, code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal when there is none: an uncoded error is a bug of ours.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the user-safe message of err, never internal detail.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
