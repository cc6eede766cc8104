package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
)

// partedContentType is the type of objects written in parts or moved:
// layer entries, bytes for the next step, not for a browser.
const partedContentType = "application/octet-stream"

// BeginParts starts a multipart upload of key and returns its id. Parts
// carry CRC32 checksums, as Put's do, which FinishParts repeats.
func (s *Store) BeginParts(ctx context.Context, key string) (string, error) {
	out, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(key),
		ContentType:       aws.String(partedContentType),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return "", fmt.Errorf("starting parts of %s: %w", key, err)
	}
	if aws.ToString(out.UploadId) == "" {
		return "", fmt.Errorf("starting parts of %s: no upload id", key)
	}
	return aws.ToString(out.UploadId), nil
}

// PutPart stores part n (1..10,000) of the upload: exactly size bytes
// (1 byte to 5 GiB) from r, which must then end with io.EOF, as in Put.
// Putting a part again replaces it. The part is held in one buffer of
// size bytes until S3 has it (the SDK may resend it), so the caller bounds
// memory through the part size and the parts it puts at once. S3's 5 MiB
// minimum for all parts but the last is checked by FinishParts, which
// alone knows which part is the last.
func (s *Store) PutPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) error {
	if err := s.putPart(ctx, key, uploadID, n, r, size); err != nil {
		return fmt.Errorf("putting part %d of %s: %w", n, key, err)
	}
	return nil
}

func (s *Store) putPart(ctx context.Context, key, uploadID string, n int, r io.Reader, size int64) error {
	lim := tarplan.S3Limits
	switch {
	case uploadID == "":
		return errors.New("no upload id")
	case n < 1 || n > lim.MaxParts:
		return fmt.Errorf("part number %d outside 1..%d", n, lim.MaxParts)
	case size < 1 || size > lim.MaxPart:
		return fmt.Errorf("part size %d outside 1..%d", size, lim.MaxPart)
	}
	buf := s.alloc(size)
	if err := fill(ctx, r, buf, true); err != nil {
		return err
	}
	u := &upload{s: s, key: key, id: aws.String(uploadID), crc: true}
	return u.send(ctx, int32(n), bytes.NewReader(buf), size)
}

// FinishParts completes the upload from parts 1..count, which must all be
// there and no others; a missing part fails it and leaves the upload as
// it is, to be finished once the part arrives. When the upload is gone
// and the object is there, another call finished it: that is success.
func (s *Store) FinishParts(ctx context.Context, key, uploadID string, count int) error {
	if err := s.finishParts(ctx, key, uploadID, count); err != nil {
		return fmt.Errorf("finishing parts of %s: %w", key, err)
	}
	return nil
}

func (s *Store) finishParts(ctx context.Context, key, uploadID string, count int) error {
	lim := tarplan.S3Limits
	if uploadID == "" {
		return errors.New("no upload id")
	}
	if count < 1 || count > lim.MaxParts {
		return fmt.Errorf("part count %d outside 1..%d", count, lim.MaxParts)
	}
	parts, err := s.listParts(ctx, key, uploadID)
	if noSuchUpload(err) {
		return s.finished(ctx, key, uploadID, err)
	}
	if err != nil {
		return err
	}
	if err := checkParts(parts, count); err != nil {
		return err
	}
	done := make([]types.CompletedPart, count)
	for i, p := range parts {
		done[i] = types.CompletedPart{PartNumber: p.PartNumber, ETag: p.ETag, ChecksumCRC32: p.ChecksumCRC32}
	}
	_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.bucket),
		Key:             aws.String(key),
		UploadId:        aws.String(uploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: done},
	})
	if noSuchUpload(err) {
		// Completed by another caller since the listing.
		return s.finished(ctx, key, uploadID, err)
	}
	if err != nil {
		return fmt.Errorf("completing upload %s: %w", uploadID, err)
	}
	return nil
}

// listParts returns every part of the upload, in part order.
func (s *Store) listParts(ctx context.Context, key, uploadID string) ([]types.Part, error) {
	var parts []types.Part
	p := s3.NewListPartsPaginator(s.client, &s3.ListPartsInput{
		Bucket:   aws.String(s.bucket),
		Key:      aws.String(key),
		UploadId: aws.String(uploadID),
	})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			if noSuchUpload(err) {
				return nil, err
			}
			return nil, fmt.Errorf("listing parts of upload %s: %w", uploadID, err)
		}
		parts = append(parts, out.Parts...)
	}
	return parts, nil
}

// checkParts requires parts to be exactly 1..count, in order, every one
// but the last at least S3's minimum: S3 would refuse the last two with a
// vaguer error, and the first means the caller is not done.
func checkParts(parts []types.Part, count int) error {
	var missing []int
	next := 1
	for _, p := range parts {
		n := int(aws.ToInt32(p.PartNumber))
		if n < next || n > count {
			return fmt.Errorf("upload has part %d, want parts 1..%d only", n, count)
		}
		for ; next < n; next++ {
			missing = append(missing, next)
		}
		next = n + 1
		if n < count && aws.ToInt64(p.Size) < tarplan.S3Limits.MinPart {
			return fmt.Errorf("part %d is %d bytes, under S3's minimum of %d for all parts but the last", n, aws.ToInt64(p.Size), tarplan.S3Limits.MinPart)
		}
	}
	for ; next <= count; next++ {
		missing = append(missing, next)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d of %d parts missing (first %d)", len(missing), count, missing[0])
	}
	return nil
}

// finished tells a finished upload from a lost one once S3 no longer
// knows uploadID (gone is its NoSuchUpload): the object must be there.
func (s *Store) finished(ctx context.Context, key, uploadID string, gone error) error {
	_, err := s.Size(ctx, key)
	switch {
	case err == nil:
		return nil
	case tarport.ErrorCode(err) == tarport.CodeNotFound:
		return fmt.Errorf("upload %s is gone (aborted or expired) and the object was never made: %w", uploadID, gone)
	default:
		return fmt.Errorf("upload %s is gone; checking for the object: %w", uploadID, err)
	}
}

// AbortParts drops the upload and its parts, verified gone as a failed
// Put's are; an upload already gone is success.
func (s *Store) AbortParts(ctx context.Context, key, uploadID string) error {
	if uploadID == "" {
		return fmt.Errorf("aborting parts of %s: no upload id", key)
	}
	u := &upload{s: s, key: key, id: aws.String(uploadID)}
	if err := u.abort(ctx, nil); err != nil {
		return fmt.Errorf("aborting parts of %s: %w", key, err)
	}
	return nil
}

// Move copies from (size bytes) to to inside S3, then deletes from.
// Objects up to 5 GiB take one CopyObject; bigger ones a multipart copy of
// ranges of at most 5 GiB, up to CopyConcurrency at once, aborted if any
// fails. Both copies are pinned to the ETag of the from that was sized, so
// an object replaced meanwhile is never half copied. Once from is gone and
// to is there at size bytes, a Move (again, or racing another) succeeds.
func (s *Store) Move(ctx context.Context, from, to string, size int64) error {
	if err := s.move(ctx, from, to, size); err != nil {
		return fmt.Errorf("moving %s to %s: %w", from, to, err)
	}
	return nil
}

func (s *Store) move(ctx context.Context, from, to string, size int64) error {
	if from == to {
		return errors.New("source and target are the same object")
	}
	if size < 0 || size > MaxObjectSize {
		return fmt.Errorf("size %d outside 0..%d", size, int64(MaxObjectSize))
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(from)})
	if err != nil {
		err = classify(from, err)
		if tarport.ErrorCode(err) == tarport.CodeNotFound {
			return s.moved(ctx, to, size, err)
		}
		return fmt.Errorf("sizing %s: %w", from, err)
	}
	if n := aws.ToInt64(head.ContentLength); n != size {
		return fmt.Errorf("%s is %d bytes, want %d", from, n, size)
	}
	etag := aws.ToString(head.ETag)
	if size <= s.copyMax {
		err = s.copyObject(ctx, from, to, etag)
	} else {
		err = s.copyParts(ctx, from, to, etag, size)
	}
	if err != nil {
		// Another Move may have taken from in the meantime.
		if tarport.ErrorCode(err) == tarport.CodeNotFound && s.moved(ctx, to, size, err) == nil {
			return nil
		}
		return err
	}
	return s.Delete(ctx, from)
}

// moved reports whether a Move already happened, once its source is gone
// (gone says how): to must be there with size bytes.
func (s *Store) moved(ctx context.Context, to string, size int64, gone error) error {
	n, err := s.Size(ctx, to)
	switch {
	case err == nil && n == size:
		return nil
	case err == nil:
		return fmt.Errorf("the source is gone and the target is %d bytes, want %d: %w", n, size, gone)
	case tarport.ErrorCode(err) == tarport.CodeNotFound:
		return fmt.Errorf("neither the source nor the target exists: %w", gone)
	default:
		return fmt.Errorf("the source is gone; checking the target: %w", err)
	}
}

// copyObject copies from to to in one request (objects up to 5 GiB).
func (s *Store) copyObject(ctx context.Context, from, to, etag string) error {
	in := &s3.CopyObjectInput{
		Bucket:            aws.String(s.bucket),
		Key:               aws.String(to),
		CopySource:        aws.String(copySource(s.bucket, from)),
		ContentType:       aws.String(partedContentType),
		MetadataDirective: types.MetadataDirectiveReplace, // or ContentType is ignored
	}
	if etag != "" {
		in.CopySourceIfMatch = aws.String(etag)
	}
	if _, err := s.client.CopyObject(ctx, in); err != nil {
		return fmt.Errorf("copying: %w", classifyCopy(from, err))
	}
	return nil
}

// copyParts copies from to to by a multipart copy of ranges of at most
// copyPart bytes. Like Stitch's, the upload carries no checksums: a copied
// part's checksum is the server's to report (see multipart).
func (s *Store) copyParts(ctx context.Context, from, to, etag string, size int64) error {
	ps, err := PartSize(size, s.copyPart)
	if err != nil {
		return err
	}
	return s.multipart(ctx, to, partedContentType, false, func(ctx context.Context, u *upload) error {
		u.copyIfMatch = etag
		// As in Stitch, a failure stops new parts (gctx) but lets those
		// sent end under ctx, so none is stored after the abort.
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(s.opts.CopyConcurrency)
		for off, n := int64(0), int32(1); off < size; off, n = off+ps, n+1 {
			if gctx.Err() != nil {
				break
			}
			g.Go(func() error {
				if err := gctx.Err(); err != nil {
					return err
				}
				return u.copy(ctx, n, from, off, min(ps, size-off))
			})
		}
		return g.Wait()
	})
}

// classifyCopy is classify for a copy's source: S3 reports a missing one
// as NoSuchKey, and one replaced since it was sized as PreconditionFailed.
func classifyCopy(src string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed" {
		return fmt.Errorf("%s changed while being copied: %w", src, err)
	}
	return classify(src, err)
}

// Delete removes key; a key already gone is success.
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil && tarport.ErrorCode(classify(key, err)) != tarport.CodeNotFound {
		return fmt.Errorf("deleting %s: %w", key, err)
	}
	return nil
}
