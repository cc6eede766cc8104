// Package download runs download jobs: it resolves and plans a tar, hands
// one task per layer to a queue, fetches each layer into the entry store
// (verified), and stitches the tar when the last layer is in. The same code
// runs locally (goroutine pool, data directory, bbolt) and on AWS (SQS, S3,
// DynamoDB); only the adapters behind these interfaces differ.
package download

import (
	"context"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// Registry resolves images and streams their layers. An origin is where a
// layer's bytes come from (tarport.Origin): the registry, or one of a
// foreign layer's URLs.
type Registry interface {
	Resolve(ctx context.Context, r ref.Ref, p tarport.Platform, creds tarport.Credentials) (tarport.Image, error)
	// Locate says which origin serves layer d to this requester.
	Locate(ctx context.Context, r ref.Ref, d descriptor.Descriptor, creds tarport.Credentials) (tarport.Origin, error)
	// OpenBlob returns d's bytes from origin o, in a stream that fails at
	// EOF unless size and digest match d.
	OpenBlob(ctx context.Context, r ref.Ref, d descriptor.Descriptor, o tarport.Origin, creds tarport.Credentials) (io.ReadCloser, error)
	// CheckBlob says whether origin o lets creds read d (for the registry:
	// in r's repository), without reading it: the gate in front of an
	// entry cached from o for someone else.
	CheckBlob(ctx context.Context, r ref.Ref, d descriptor.Descriptor, o tarport.Origin, creds tarport.Credentials) error
	// CheckManifest says whether creds may read r (by digest): the gate in
	// front of a private job's link.
	CheckManifest(ctx context.Context, r ref.Ref, creds tarport.Credentials) error
}

// RangeRegistry reads a byte range of a blob, for a layer split across
// tasks. The bytes are not verified (a range cannot be hashed alone): the
// split layer's whole entry is hashed in order before anyone uses it.
type RangeRegistry interface {
	OpenBlobRange(ctx context.Context, r ref.Ref, d descriptor.Descriptor, o tarport.Origin, offset, length int64, creds tarport.Credentials) (io.ReadCloser, error)
}

// PartedObjects writes one object in parts put by several workers (an S3
// multipart upload); the object appears only when FinishParts completes
// it, and is used only once its bytes were checked.
type PartedObjects interface {
	// BeginParts starts writing the object key and returns the upload id.
	BeginParts(ctx context.Context, key string) (uploadID string, err error)
	// PutPart stores part n (1-based) of exactly size bytes from r, which
	// must end there; putting a part again replaces it. Every part but the
	// last is at least 5 MiB.
	PutPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) error
	// FinishParts makes the object from parts 1..count. Called again
	// after it succeeded (the upload gone, the object there), it succeeds.
	FinishParts(ctx context.Context, key, uploadID string, count int) error
	// AbortParts drops an unfinished upload and its parts.
	AbortParts(ctx context.Context, key, uploadID string) error
	// Move makes the object from (size bytes) the object to, server-side,
	// and then deletes from. Moving again once from is gone, with to in
	// place at that size, succeeds.
	Move(ctx context.Context, from, to string, size int64) error
	Delete(ctx context.Context, key string) error
}

// WatchedObjects is an object store whose Put in progress can be read
// while it is written (the local store, whose temporary file is on this
// machine): started gets the file's path before the first byte. The file
// is written from its start, in order, and never rewritten: a failed
// write's file is removed, so a reader that holds it open still reads
// what was written. A stream of a job follows its own task's write of a
// layer through it.
type WatchedObjects interface {
	PutWatched(ctx context.Context, key string, r io.Reader, size int64, started func(path string)) error
}

// PartedJobs counts the finished parts of split layers; a job's split
// layers carry their part counts (LayerProgress.Parts).
type PartedJobs interface {
	// FinishPart marks part n (1-based) of a layer done once; it reports
	// how many parts of the layer remain and whether this call marked it.
	FinishPart(ctx context.Context, id string, layer, part int) (remaining int, first bool, err error)
	// LeaseSplit makes lease the lease on key (a split entry's) unless
	// one is held that does not yield to the caller (tarport.SplitLease's
	// Yields, with prev the holder the caller saw end, or ""), in one
	// conditional write; it returns the lease held after the call.
	LeaseSplit(ctx context.Context, key string, lease tarport.SplitLease, prev string) (tarport.SplitLease, error)
}

// Objects is the object store: layer entries, metadata and tars.
type Objects interface {
	// Size returns an object's size, or a CodeNotFound error.
	Size(ctx context.Context, key string) (int64, error)
	// Put stores exactly size bytes from r under key; the object becomes
	// visible only when all of them arrived and r ended without error.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stitch writes the tar under key from parts: copy parts read the
	// entry objects named by entryKey, upload parts read the tail.
	Stitch(ctx context.Context, key string, parts []tarplan.Part, entryKey func(digest.Digest) string, tail TailFunc) error
}

// TailFunc returns the bytes [offset, offset+size) of a tar's tail.
type TailFunc func(ctx context.Context, offset, size int64) (io.ReadCloser, error)

// MetaStore keeps manifests and configs by origin and digest (the registry
// adapter's cache), from which a job's tar is re-planned at stitch time.
type MetaStore interface {
	GetMeta(ctx context.Context, o tarport.Origin, d digest.Digest) ([]byte, error)
}

// Jobs stores job records. Every operation is a single conditional or
// atomic write, so a DynamoDB table can implement it without transactions.
type Jobs interface {
	// Create stores job unless a live job (not failed, not expired) has
	// the same Key; then it returns that one and created=false.
	Create(ctx context.Context, job tarport.Job) (live tarport.Job, created bool, err error)
	// Get returns a job or a CodeNotFound error.
	Get(ctx context.Context, id string) (tarport.Job, error)
	// SetStatus moves a job on; a terminal job never changes again.
	SetStatus(ctx context.Context, id string, status tarport.Status, jobErr *tarport.JobError) error
	// AddProgress adds delta to one layer's done bytes.
	AddProgress(ctx context.Context, id string, layer int, delta int64) error
	// FinishLayer marks a layer done (its done bytes = size) once; it
	// reports the layers still remaining and whether this call was the one
	// that marked it, so a redelivered task never counts twice.
	FinishLayer(ctx context.Context, id string, layer int) (remaining int, first bool, err error)
}

// Queue runs layer tasks, each at least once, somewhere.
type Queue interface {
	Enqueue(ctx context.Context, tasks []Task) error
}

// DelayedQueue holds tasks back before they run (SQS's DelaySeconds, at
// most 15 minutes): a task waiting for another job's split layer looks
// again later without holding a worker meanwhile.
type DelayedQueue interface {
	EnqueueAfter(ctx context.Context, delay time.Duration, tasks []Task) error
}

// Quota charges a requester for a tar's bytes before anything is fetched
// (limits.Limiter): the client's daily quota and the service's budget. A
// repeat of the same mark within the day is not charged again.
type Quota interface {
	Charge(ctx context.Context, client, mark string, bytes int64) error
}

// Signer makes time-limited download links for finished tars.
type Signer interface {
	// Sign returns a link valid for at most ttl and the lifetime it
	// really has: less when the credentials that sign it expire sooner.
	Sign(ctx context.Context, key, fileName string, ttl time.Duration) (url string, lifetime time.Duration, err error)
}
