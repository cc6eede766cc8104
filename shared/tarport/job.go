package tarport

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// Status is where a download job stands.
type Status string

const (
	StatusQueued     Status = "queued"     // created, no layer task started yet
	StatusFetching   Status = "fetching"   // layer tasks running
	StatusAssembling Status = "assembling" // every layer stored; the tar being stitched
	StatusReady      Status = "ready"      // the tar is whole; links are signed on read
	StatusFailed     Status = "failed"     // ended with Job.Error; never changes again
)

// Rank orders the statuses a job moves through.
func (s Status) Rank() int {
	switch s {
	case StatusQueued:
		return 0
	case StatusFetching:
		return 1
	case StatusAssembling:
		return 2
	}
	return 3
}

// Terminal reports whether the job will not change any more.
func (s Status) Terminal() bool { return s == StatusReady || s == StatusFailed }

// CanBecome says whether a job at status s may be set to status to: a
// terminal job never changes; any other may fail, or move forward (or stay:
// a redelivered task repeats its step), never back.
func (s Status) CanBecome(to Status) bool {
	return !s.Terminal() && (to == StatusFailed || s.Rank() <= to.Rank())
}

// The rules every job store applies (download.Jobs; the jobstest suite
// holds each store to them): a job past ExpiresAt is gone (not found); a
// request joins the job with its Key only while that job is Joinable,
// else it makes a new job that takes the key over; statuses move as
// CanBecome says; a layer's progress stays within [0, Size] and is frozen
// once the layer is finished, which happens once (FinishLayer).

// JoinMargin is how long a job must still have to live for a new request
// to join it: a requester must not be handed a tar about to be collected.
const JoinMargin = time.Hour

// Expired says whether the job is gone at now.
func (j Job) Expired(now time.Time) bool { return !now.Before(j.ExpiresAt) }

// Live says whether the job is neither failed nor expired at now.
func (j Job) Live(now time.Time) bool { return j.Status != StatusFailed && !j.Expired(now) }

// Joinable says whether a new request with the job's Key gets this job at
// now rather than a new one: live, with JoinMargin to spare.
func (j Job) Joinable(now time.Time) bool { return j.Live(now.Add(JoinMargin)) }

// AddProgress adds delta done bytes to layer i, kept within [0, size];
// a finished layer (or no such layer) is left as it is. It reports whether
// the job changed.
func (j *Job) AddProgress(i int, delta int64) bool {
	if i < 0 || i >= len(j.Layers) || j.Layers[i].Finished {
		return false
	}
	l := &j.Layers[i]
	before := l.DoneBytes
	l.DoneBytes = min(max(l.DoneBytes+delta, 0), l.Size)
	return l.DoneBytes != before
}

// FinishLayer marks layer i finished (all its bytes done) and counts it
// off Remaining, once: it reports whether this call did it.
func (j *Job) FinishLayer(i int) bool {
	if i < 0 || i >= len(j.Layers) || j.Layers[i].Finished {
		return false
	}
	j.Layers[i].Finished = true
	j.Layers[i].DoneBytes = j.Layers[i].Size
	j.Remaining--
	return true
}

// Job is one image+platform+tag download (or several images', a bundle,
// in one tar). It holds no credentials, ever:
// a private job's workers get them in memory from the request that made it.
type Job struct {
	ID  string // unguessable, handed to the client
	Key string // what identical requests share (made by the download service's jobKey)

	Image    string // as the user should see it: nginx:1.27
	Ref      string // fully qualified: docker.io/library/nginx:1.27
	Platform string
	// Digest is the platform manifest's; ConfigDigest its config's. With
	// the cached manifest and config, they re-plan the tar exactly.
	Digest       digest.Digest
	IndexDigest  digest.Digest
	ConfigDigest digest.Digest
	RepoTags     []string
	RefName      string
	Name         string // fully qualified repository
	Private      bool   // made with credentials: cannot resume without them

	Status     Status
	TotalBytes int64 // exact size of the tar
	Layers     []LayerProgress
	Remaining  int // layer tasks not yet done; the one that makes it 0 stitches
	Error      *JobError

	// Bundle lists the images of a job holding several (in the tar's
	// order); then Ref, Digest, IndexDigest, ConfigDigest, RepoTags,
	// RefName and Name are empty, each image has its own. Empty for a job
	// of one image. Set at create, never changed.
	Bundle []JobImage

	TarKey   string // object key of the finished tar
	FileName string // suggested file name for the download

	CreatedAt time.Time
	UpdatedAt time.Time
	ExpiresAt time.Time
}

// JobImage is one image of a job, as resolved when the job was made.
type JobImage struct {
	Image        string        `json:"image"` // as the user should see it: nginx:1.27
	Ref          string        `json:"ref"`   // fully qualified
	Digest       digest.Digest `json:"digest"`
	IndexDigest  digest.Digest `json:"index_digest,omitempty"`
	ConfigDigest digest.Digest `json:"config_digest"`
	RepoTags     []string      `json:"repo_tags,omitempty"`
	RefName      string        `json:"ref_name,omitempty"`
	Name         string        `json:"name"`
	// Layers are the image's distinct layers, as indexes into Job.Layers.
	Layers []int `json:"layers"`
}

// Images returns the job's images: its Bundle, or the one image its own
// fields describe.
func (j Job) Images() []JobImage {
	if len(j.Bundle) > 0 {
		return j.Bundle
	}
	layers := make([]int, len(j.Layers))
	for i := range layers {
		layers[i] = i
	}
	return []JobImage{{
		Image: j.Image, Ref: j.Ref, Digest: j.Digest, IndexDigest: j.IndexDigest, ConfigDigest: j.ConfigDigest,
		RepoTags: j.RepoTags, RefName: j.RefName, Name: j.Name, Layers: layers,
	}}
}

// LayerProgress is one distinct layer of the image (of the images, for a
// bundle).
type LayerProgress struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	DoneBytes int64         `json:"done_bytes"`
	// Finished is set once, by the task that stored the layer's entry.
	Finished bool `json:"finished"`
	// Parts is how many range tasks fetch a layer split for its size (0:
	// one task fetches it whole).
	Parts int `json:"parts,omitempty"`
}

// JobError is what a failed job tells its user.
type JobError struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Failure is a failed job's error, with the code it was recorded with.
func (j Job) Failure() error {
	if j.Error != nil {
		return Errorf(j.Error.Code, "%s", j.Error.Message)
	}
	return Errorf(CodeInternal, "download %s failed", j.ID)
}

// DoneBytes is the tar bytes accounted for: the layers fetched so far, and
// everything once the job is ready.
func (j Job) DoneBytes() int64 {
	if j.Status == StatusReady {
		return j.TotalBytes
	}
	var n int64
	for _, l := range j.Layers {
		n += l.DoneBytes
	}
	return n
}

// SplitLease names the one job that fetches a split layer (download's
// range tasks) for every job that needs the same entry from the same
// origin: the others wait for the entry instead of fetching the same
// gigabytes again. Each job still checks with its own credentials that it
// may read what the holder stored, and a holder's failure is never a
// waiter's: a waiter that sees the holder end without the entry takes the
// lease over and fetches for itself.
type SplitLease struct {
	Job    string    // the job fetching the layer
	Upload string    // its staging upload, so a redelivered takeover reuses it
	Until  time.Time // when the lease lapses for everyone: its job's expiry
}

// Yields says whether a lease held as l (the zero lease: none) gives way,
// at now, to a job that saw prev (its holder; "" for none) end.
func (l SplitLease) Yields(now time.Time, prev string) bool {
	return l.Job == "" || !now.Before(l.Until) || (prev != "" && l.Job == prev)
}
