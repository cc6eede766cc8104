// Package s3store is the object store on AWS: layer entries, cached
// manifests and configs, and stitched tars in one S3 bucket. It writes big
// objects by multipart upload with memory bounded by the parts in flight,
// publishes an object only once every promised byte arrived and its source
// ended cleanly (aborting the upload otherwise), stitches tars server-side
// from ranges of stored entries (UploadPartCopy) plus an uploaded tail,
// lets several workers put the parts of one object (a layer split by byte
// ranges) and moves it into place once checked, and signs time-limited
// download links. It is the S3 twin of dirstore: same keys, same
// semantics.
package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// Client is the part of the S3 API the store uses; *s3.Client has it.
type Client interface {
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error)
	UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error)
	UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opts ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error)
	CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
	ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	CopyObject(ctx context.Context, in *s3.CopyObjectInput, opts ...func(*s3.Options)) (*s3.CopyObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// Presigner signs GET requests; *s3.PresignClient has it.
type Presigner interface {
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

// Options tune a Store. Zero values take the defaults.
type Options struct {
	// PartSize is the size of an uploaded part, and of the buffer that
	// holds it until S3 has it (default 16 MiB, at least S3's 5 MiB, at
	// most its 5 GiB). Objects up to PartSize go in one PutObject; objects
	// over 10,000 parts of it get bigger parts.
	PartSize int64
	// PartsInFlight bounds the parts of one Put uploaded at once (default
	// 4). A Put holds at most PartsInFlight x PartSize bytes, or one part
	// when an object needs parts bigger than that.
	PartsInFlight int
	// CopyConcurrency bounds the parts of one Stitch, or of one Move of an
	// object over 5 GiB, sent at once (default 16). Copy parts run inside
	// S3 and cost no memory here.
	CopyConcurrency int
	// Credentials, when set, are the ones the presign client signs links
	// with: a link is kept within their expiry (see Sign).
	Credentials aws.CredentialsProvider
}

// Defaults of Options.
const (
	DefaultPartSize        = 16 << 20
	DefaultPartsInFlight   = 4
	DefaultCopyConcurrency = 16
)

// Store keeps objects in one S3 bucket.
type Store struct {
	client  Client
	presign Presigner
	bucket  string
	opts    Options

	// allocated, when set, is told of every part buffer allocated: the
	// tests' window on the memory bound.
	allocated func(n int64)
	// copyMax is the biggest object Move copies in one CopyObject, and
	// copyPart the range of a part of a bigger one's multipart copy: S3's
	// 5 GiB for both, lowered by tests that cannot write 5 GiB.
	copyMax, copyPart int64
}

var (
	_ download.Objects       = (*Store)(nil)
	_ download.MetaStore     = (*Store)(nil)
	_ download.Signer        = (*Store)(nil)
	_ download.PartedObjects = (*Store)(nil)
)

// New returns a store of bucket. Wire it with the same client twice:
// New(c, s3.NewPresignClient(c), bucket, Options{}).
func New(client Client, presign Presigner, bucket string, opts Options) *Store {
	if opts.PartSize == 0 {
		opts.PartSize = DefaultPartSize
	}
	opts.PartSize = min(max(opts.PartSize, tarplan.S3Limits.MinPart), tarplan.S3Limits.MaxPart)
	if opts.PartsInFlight <= 0 {
		opts.PartsInFlight = DefaultPartsInFlight
	}
	if opts.CopyConcurrency <= 0 {
		opts.CopyConcurrency = DefaultCopyConcurrency
	}
	return &Store{
		client: client, presign: presign, bucket: bucket, opts: opts,
		copyMax: tarplan.S3Limits.MaxPart, copyPart: tarplan.S3Limits.MaxPart,
	}
}

// Size returns an object's size, or a CodeNotFound error.
func (s *Store) Size(ctx context.Context, key string) (int64, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return 0, fmt.Errorf("sizing %s: %w", key, classify(key, err))
	}
	return aws.ToInt64(out.ContentLength), nil
}

// Get opens an object, or returns a CodeNotFound error.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("getting %s: %w", key, classify(key, err))
	}
	return out.Body, nil
}

// GetRange returns exactly length bytes of key from offset on: the verify
// task reads a split layer's entry with several of these at once.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if offset < 0 || length <= 0 {
		return nil, fmt.Errorf("getting %s: bytes %d+%d are no range", key, offset, length)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket), Key: aws.String(key),
		Range: aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)),
	})
	if err != nil {
		return nil, fmt.Errorf("getting bytes %d+%d of %s: %w", offset, length, key, classify(key, err))
	}
	if n := aws.ToInt64(out.ContentLength); n != length {
		out.Body.Close()
		return nil, fmt.Errorf("getting bytes %d+%d of %s: %d bytes came", offset, length, key, n)
	}
	return out.Body, nil
}

// GetMeta returns a cached manifest or config, or a CodeNotFound error.
// With PutMeta it is the registry client's MetaCache.
func (s *Store) GetMeta(ctx context.Context, o tarport.Origin, d digest.Digest) ([]byte, error) {
	rc, err := s.Get(ctx, download.MetaKey(o, d))
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", download.MetaKey(o, d), err)
	}
	return b, nil
}

// PutMeta caches a manifest or config; callers have verified d. The key
// names its content, so writing it again changes nothing.
func (s *Store) PutMeta(ctx context.Context, o tarport.Origin, d digest.Digest, b []byte) error {
	return s.Put(ctx, download.MetaKey(o, d), bytes.NewReader(b), int64(len(b)))
}

// classify turns S3's "no such key" into the domain's CodeNotFound.
func classify(key string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return tarport.Wrap(err, tarport.CodeNotFound, "object %s not found", key)
		}
	}
	return err
}
