package httpapi

import (
	"context"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/tarport/tarport/shared/tarport"
)

// Headers of the CloudFront hop (template.yaml): CloudFront sets the
// viewer's address, and adds the origin secret, which only it and the
// API know, to every request it forwards.
const (
	ViewerAddressHeader = "CloudFront-Viewer-Address"
	OriginSecretHeader  = "X-Tarport-Origin-Secret"
	TokenHeader         = "X-Tarport-Token"
)

// Limits counts what clients use (limits.Limiter): requests here, tar
// bytes in the download service.
type Limits interface {
	Allow(ctx context.Context, client string) error
	// AllowN counts n requests at once, or none.
	AllowN(ctx context.Context, client string, n int) error
}

// clientOf is who a request counts against. Behind CloudFront (an origin
// secret configured, and checked in ServeHTTP) it is the viewer's address
// CloudFront reports; otherwise the peer's. Forwarded headers are never
// read: anyone can send them.
func (a *API) clientOf(r *http.Request) string {
	if a.opts.OriginSecret != "" {
		// An address CloudFront did not write (not an IP) counts as the
		// peer's: no string of a client's choosing becomes its own key.
		if host := viewerHost(r.Header.Get(ViewerAddressHeader)); host != "" {
			if _, err := netip.ParseAddr(host); err == nil {
				return clientKey(host)
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return clientKey(host)
}

// viewerHost takes the address out of CloudFront-Viewer-Address, which is
// "IP:port" with the IPv6 address unbracketed ("2001:db8::1:46532").
func viewerHost(v string) string {
	v = strings.TrimSpace(v)
	if host, _, err := net.SplitHostPort(v); err == nil {
		return host
	}
	if i := strings.LastIndexByte(v, ':'); i > 0 {
		if _, err := netip.ParseAddr(v[:i]); err == nil {
			return v[:i]
		}
	}
	return v
}

// clientKey is an IPv4 address, or the /64 of an IPv6 address (one
// subscriber holds a whole /64, so a per-address limit would give them
// 2^64 buckets).
func clientKey(host string) string {
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if addr = addr.Unmap(); addr.Is6() {
		return netip.PrefixFrom(addr.WithZone(""), 64).Masked().String()
	}
	return addr.String()
}

func (a *API) limited(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if a.allow(w, r) {
			h(w, r)
		}
	}
}

// allow counts the request against its client, or answers 429.
func (a *API) allow(w http.ResponseWriter, r *http.Request) bool {
	if err := a.opts.Limits.Allow(r.Context(), a.clientOf(r)); err != nil {
		writeError(w, r, a.log, err)
		return false
	}
	return true
}

// admitted checks what every request but health must carry: CloudFront's
// origin secret when one is configured (nothing else may claim a viewer
// address), and the access token when one is set (a stream link's
// signature stands in for it: a browser's download cannot carry it).
func (a *API) admitted(r *http.Request) error {
	if r.URL.Path == "/api/health" {
		return nil
	}
	if a.opts.OriginSecret != "" && !sameSecret(r.Header.Get(OriginSecretHeader), a.opts.OriginSecret) {
		return tarport.Errorf(tarport.CodeForbidden, "this API answers only through its site's address")
	}
	if a.opts.AccessToken != "" && !a.isStreamLink(r) && !sameSecret(r.Header.Get(TokenHeader), a.opts.AccessToken) {
		// A wrong guess counts against the client's rate: the token
		// cannot be tried at line speed.
		if err := a.opts.Limits.Allow(r.Context(), a.clientOf(r)); err != nil {
			return err
		}
		a.opts.Metrics.Refused(string(tarport.CodeAccessDenied))
		return tarport.Errorf(tarport.CodeAccessDenied, "this tarport needs an access token: send it in the %s header", TokenHeader)
	}
	return nil
}

// sameSecret compares in constant time, so timing tells nothing of the secret.
func sameSecret(got, want string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}
