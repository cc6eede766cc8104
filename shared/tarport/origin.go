package tarport

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"
)

// Origin is where cached bytes came from, and the unit of trust of every
// cache (docs/ARCHITECTURE.md, "Trust model"): a registry host, or one exact
// foreign-layer URL. A registry is trusted about its own bytes and about
// whom it lets read its own repositories, never about digests it merely
// names; so a cached manifest, config or layer entry is reused only under
// the origin it was fetched from, after that origin authorized the
// requester again.
type Origin string

// RegistryOrigin is the origin of everything a registry host serves
// (host:port, as in a reference: docker.io, ghcr.io, 127.0.0.1:5000).
func RegistryOrigin(host string) Origin { return Origin("registry " + strings.ToLower(host)) }

// URLOrigin is the origin of the bytes served at one foreign-layer URL. It
// is the exact URL, not its host: a URL may carry a capability in its path
// or query, and another URL of the same host proves nothing about it.
func URLOrigin(u string) Origin { return Origin("url " + u) }

// URL returns the foreign-layer URL of a URL origin.
func (o Origin) URL() (string, bool) { return strings.CutPrefix(string(o), "url ") }

// Key is o as one object-key path segment: 32 hex digits of its SHA-256,
// the same length for every origin and safe in any key grammar.
func (o Origin) Key() string {
	sum := sha256.Sum256([]byte(o))
	return hex.EncodeToString(sum[:16])
}

// Origins lists where layer d of an image in r's repository may come from,
// in the order they are tried: the registry, then (for a foreign layer)
// each of its URLs.
func Origins(r ref.Ref, d descriptor.Descriptor) []Origin {
	out := make([]Origin, 0, 1+len(d.URLs))
	out = append(out, RegistryOrigin(r.Registry))
	for _, u := range d.URLs {
		out = append(out, URLOrigin(u))
	}
	return out
}
