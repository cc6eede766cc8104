package download

import (
	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarport"
)

// The object keys, in one place. Cached bytes are kept per origin (the
// registry host or foreign-layer URL they came from; see tarport.Origin):
// what one registry served is never read back for a request to another.
//
//	entries/<origin>/sha256/<hex>   a layer's verified tar entry (the layer cache)
//	meta/<origin>/sha256/<hex>      a manifest or config
//	tars/<random>.tar               a finished tar; the name is not the job id
//	staging/<job>/sha256/<hex>      a split layer's parts, before verification

// EntryKey is where the tar entry of blob d from origin o is stored.
func EntryKey(o tarport.Origin, d digest.Digest) string {
	return "entries/" + o.Key() + "/" + d.Algorithm().String() + "/" + d.Encoded()
}

// MetaKey is where the manifest or config d from origin o is stored.
func MetaKey(o tarport.Origin, d digest.Digest) string {
	return "meta/" + o.Key() + "/" + d.Algorithm().String() + "/" + d.Encoded()
}

// StagingKey is where a split layer's entry is assembled for one job.
func StagingKey(jobID string, d digest.Digest) string {
	return "staging/" + jobID + "/" + d.Algorithm().String() + "/" + d.Encoded()
}

// TarKey is where a job's tar is stored: under a name of its own, so a link
// (whose path holds the key) reveals no job id, the capability that would
// outlive the link.
func TarKey() string { return "tars/" + newID() + ".tar" }
