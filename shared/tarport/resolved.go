package tarport

import (
	"math"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"
)

// Credentials are a requester's registry login, used for one request and
// kept only in memory. Password may be a personal access token.
type Credentials struct {
	Username string
	Password string
}

// Anonymous reports whether no credentials were given.
func (c Credentials) Anonymous() bool { return c.Username == "" && c.Password == "" }

// Image is a reference resolved to one platform's manifest and config.
type Image struct {
	Ref ref.Ref
	// IndexDigest is the digest of the index or manifest list the platform
	// was picked from, empty for a single-platform image.
	IndexDigest digest.Digest
	Platform    Platform
	// Manifest and Config are exactly as served (their digests verified).
	Manifest          []byte
	ManifestDigest    digest.Digest
	ManifestMediaType string
	Config            []byte
	ConfigDigest      digest.Digest
	// Layers keep every field of the manifest's descriptors, including the
	// URLs of Windows foreign layers.
	Layers []descriptor.Descriptor
}

// TotalLayerBytes is the sum of the layer sizes (duplicates counted once),
// saturating at math.MaxInt64 for hostile sizes.
func (img Image) TotalLayerBytes() int64 {
	seen := map[digest.Digest]bool{}
	var n int64
	for _, l := range img.Layers {
		if !seen[l.Digest] {
			seen[l.Digest] = true
			if l.Size < 0 || l.Size > math.MaxInt64-n {
				return math.MaxInt64
			}
			n += l.Size
		}
	}
	return n
}
