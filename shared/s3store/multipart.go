package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// abortTimeout bounds the abort of a failed upload, which runs even when
// the caller's context is done: an upload left open keeps its parts (and
// their cost) until a lifecycle rule sweeps them.
const abortTimeout = time.Minute

// upload is one multipart upload; its parts may be sent concurrently.
type upload struct {
	s   *Store
	key string
	id  *string
	crc bool // parts carry CRC32 checksums
	// copyIfMatch, when set, is the ETag every copied part's source must
	// still have.
	copyIfMatch string

	mu    sync.Mutex
	parts []types.CompletedPart
}

// multipart runs one multipart upload of key: send adds its parts, then
// the upload is completed, or aborted if anything failed.
//
// With crc, parts carry CRC32 checksums (the SDK's default for uploads,
// streamed as a trailer over TLS) that S3 checks and Complete repeats.
// Without, parts carry none and an uploaded part is protected by its
// signed SHA-256 payload hash instead: an upload of copied parts must be
// so, since a copied part's checksum is whatever the server reports for
// it (versitygw reports the source object's composite checksum, which its
// own Complete then refuses).
func (s *Store) multipart(ctx context.Context, key, contentType string, crc bool, send func(ctx context.Context, u *upload) error) error {
	in := &s3.CreateMultipartUploadInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}
	if crc {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
	}
	if contentType != "" {
		in.ContentType = aws.String(contentType)
	}
	out, err := s.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return fmt.Errorf("starting upload: %w", err)
	}
	u := &upload{s: s, key: key, id: out.UploadId, crc: crc}
	if err := send(ctx, u); err != nil {
		return u.abort(ctx, err)
	}
	if err := u.complete(ctx); err != nil {
		return u.abort(ctx, err)
	}
	return nil
}

// send uploads one part from body.
func (u *upload) send(ctx context.Context, number int32, body io.ReadSeeker, size int64) error {
	in := &s3.UploadPartInput{
		Bucket:        aws.String(u.s.bucket),
		Key:           aws.String(u.key),
		UploadId:      u.id,
		PartNumber:    aws.Int32(number),
		Body:          body,
		ContentLength: aws.Int64(size),
	}
	var opts []func(*s3.Options)
	if u.crc {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
	} else {
		// S3 refuses a checksummed part in an upload started without
		// one; the SDK would add a CRC32 unless told it is not required.
		opts = append(opts, func(o *s3.Options) { o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired })
	}
	out, err := u.s.client.UploadPart(ctx, in, opts...)
	if err != nil {
		return fmt.Errorf("uploading part %d: %w", number, err)
	}
	p := types.CompletedPart{PartNumber: aws.Int32(number), ETag: out.ETag}
	if u.crc {
		p.ChecksumCRC32 = out.ChecksumCRC32
	}
	u.add(p)
	return nil
}

// copy makes part number from bytes [off, off+size) of the object src.
func (u *upload) copy(ctx context.Context, number int32, src string, off, size int64) error {
	in := &s3.UploadPartCopyInput{
		Bucket:          aws.String(u.s.bucket),
		Key:             aws.String(u.key),
		UploadId:        u.id,
		PartNumber:      aws.Int32(number),
		CopySource:      aws.String(copySource(u.s.bucket, src)),
		CopySourceRange: aws.String(fmt.Sprintf("bytes=%d-%d", off, off+size-1)),
	}
	if u.copyIfMatch != "" {
		in.CopySourceIfMatch = aws.String(u.copyIfMatch)
	}
	out, err := u.s.client.UploadPartCopy(ctx, in)
	if err != nil {
		return fmt.Errorf("copying part %d from %s: %w", number, src, classifyCopy(src, err))
	}
	if out.CopyPartResult == nil {
		return fmt.Errorf("copying part %d from %s: no result", number, src)
	}
	p := types.CompletedPart{PartNumber: aws.Int32(number), ETag: out.CopyPartResult.ETag}
	if u.crc {
		p.ChecksumCRC32 = out.CopyPartResult.ChecksumCRC32
	}
	u.add(p)
	return nil
}

func (u *upload) add(p types.CompletedPart) {
	u.mu.Lock()
	u.parts = append(u.parts, p)
	u.mu.Unlock()
}

// complete publishes the object from its parts, in order.
func (u *upload) complete(ctx context.Context) error {
	u.mu.Lock()
	parts := slices.Clone(u.parts)
	u.mu.Unlock()
	slices.SortFunc(parts, func(a, b types.CompletedPart) int { return int(aws.ToInt32(a.PartNumber) - aws.ToInt32(b.PartNumber)) })
	_, err := u.s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(u.s.bucket),
		Key:             aws.String(u.key),
		UploadId:        u.id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		return fmt.Errorf("completing upload: %w", err)
	}
	return nil
}

// abortAttempts bounds how often an upload is aborted again because a
// part landed after the abort: waits of 0.25, 0.5, ... 1.25 s (3.75 s in
// all) give a part still being written on a loaded server time to land
// (three attempts, 0.75 s, were seen to fall short under load).
const abortAttempts = 6

// abort discards the upload after cause, even when ctx is done, and
// returns cause (joined with the abort's own failure, if any). A part
// whose request was still running on the server (its client side cut off
// by a canceled ctx) may be stored after the abort and revive the upload,
// so, as AWS advises, the abort is repeated until ListParts finds it gone,
// and gone again half a second later (a part landing late was seen to
// revive an upload ListParts had just found gone).
func (u *upload) abort(ctx context.Context, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
	defer cancel()
	var err error
	gone := false
	for attempt := 1; attempt <= abortAttempts; attempt++ {
		_, err = u.s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
			Bucket:   aws.String(u.s.bucket),
			Key:      aws.String(u.key),
			UploadId: u.id,
		})
		if err != nil && !noSuchUpload(err) {
			break
		}
		_, err = u.s.client.ListParts(ctx, &s3.ListPartsInput{
			Bucket:   aws.String(u.s.bucket),
			Key:      aws.String(u.key),
			UploadId: u.id,
			MaxParts: aws.Int32(1),
		})
		wait := time.Duration(attempt) * 250 * time.Millisecond
		switch {
		case noSuchUpload(err) && gone:
			return cause
		case noSuchUpload(err):
			gone, err, wait = true, nil, 500*time.Millisecond
		case err == nil:
			gone, err = false, errors.New("the upload is still there")
		}
		if attempt == abortAttempts {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	if gone && err == nil {
		return cause // gone at the last look
	}
	return errors.Join(cause, fmt.Errorf("aborting upload %s: %w", aws.ToString(u.id), err))
}

func noSuchUpload(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload"
}

// copySource is the x-amz-copy-source of key: bucket/key, URL-encoded.
func copySource(bucket, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return bucket + "/" + strings.Join(segs, "/")
}
