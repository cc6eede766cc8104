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

// Job is one image+platform+tag download. It holds no credentials, ever:
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

	TarKey   string // object key of the finished tar
	FileName string // suggested file name for the download

	CreatedAt time.Time
	UpdatedAt time.Time
	ExpiresAt time.Time
}

// LayerProgress is one distinct layer of the image.
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
