package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/tarport/tarport/shared/tarport"
)

// statusByCode is the one table from error codes to HTTP statuses.
var statusByCode = map[tarport.Code]int{
	tarport.CodeInvalid:          http.StatusBadRequest,
	tarport.CodeInvalidReference: http.StatusBadRequest,
	tarport.CodeInvalidPlatform:  http.StatusBadRequest,
	tarport.CodeTooLarge:         http.StatusRequestEntityTooLarge,
	tarport.CodeUnsupported:      http.StatusUnprocessableEntity,
	tarport.CodeUnauthorized:     http.StatusUnauthorized,
	tarport.CodeCredentialsGone:  http.StatusUnauthorized,
	tarport.CodeForbidden:        http.StatusForbidden,
	tarport.CodeBlockedAddress:   http.StatusForbidden,
	tarport.CodeNotFound:         http.StatusNotFound,
	tarport.CodePlatformNotFound: http.StatusNotFound,
	tarport.CodeMethodNotAllowed: http.StatusMethodNotAllowed,
	tarport.CodeRateLimited:      http.StatusTooManyRequests,
	tarport.CodeUpstream:         http.StatusBadGateway,
	tarport.CodeDigestMismatch:   http.StatusBadGateway,
	tarport.CodeUpstreamTimeout:  http.StatusGatewayTimeout,
	tarport.CodeUnavailable:      http.StatusServiceUnavailable,
	tarport.CodeInternal:         http.StatusInternalServerError,
	tarport.CodeMediaType:        http.StatusUnsupportedMediaType,
	tarport.CodeCrossSite:        http.StatusForbidden,
	tarport.CodeRequestTimeout:   http.StatusRequestTimeout,
	tarport.CodeLinkInvalid:      http.StatusForbidden,
	tarport.CodeLinkExpired:      http.StatusForbidden,
	tarport.CodeRangeUnsatisfied: http.StatusRequestedRangeNotSatisfiable,
	tarport.CodePrecondition:     http.StatusPreconditionFailed,
	tarport.CodeAccessDenied:     http.StatusUnauthorized,
	tarport.CodeQuotaExceeded:    http.StatusTooManyRequests,
}

// StatusOf returns the HTTP status for a code.
func StatusOf(code tarport.Code) int {
	if s, ok := statusByCode[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    tarport.Code `json:"code"`
	Message string       `json:"message"`
}

// WriteError answers with the error's code, status and safe message in
// the JSON error shape; internal detail goes to log only. Everything that
// answers an error over HTTP (the API, the local download links) uses it.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	writeError(w, r, log, err)
}

// writeError answers with the error's code and safe message; internal
// detail goes to the log only.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := tarport.ErrorCode(err)
	status := StatusOf(code)
	id := w.Header().Get("X-Request-Id")
	if status >= 500 {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "code", code, "request", id, "err", err)
	} else {
		log.Info("request refused", "method", r.Method, "path", r.URL.Path, "code", code, "request", id, "err", err)
	}
	var te *tarport.Error
	if errors.As(err, &te) && te.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(te.RetryAfter))
	}
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: tarport.ErrorMessage(err)}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
