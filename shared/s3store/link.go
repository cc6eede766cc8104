package s3store

import (
	"context"
	"fmt"
	"mime"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// MaxLinkTTL is the longest a SigV4 presigned link can live.
const MaxLinkTTL = 7 * 24 * time.Hour

// linkMargin is how long before its signing credentials expire a link
// stops being offered: clocks differ, and a download started must not
// find the link dead a second later.
const linkMargin = time.Minute

// minLinkLife is the least a link should live: credentials with less left
// are renewed first, when their provider can be told to (a cache of
// assumed-role sessions, aws.CredentialsCache).
const minLinkLife = 30 * time.Minute

// Sign returns a presigned GET link to key that makes a browser save the
// file as fileName, valid for ttl or until the credentials that sign it
// expire (S3 refuses a link whose signer's session ended, whatever its
// X-Amz-Expires says), and the lifetime it really has. Callers sign at
// read time (see download), so a later read gets a fresh link.
func (s *Store) Sign(ctx context.Context, key, fileName string, ttl time.Duration) (string, time.Duration, error) {
	if ttl <= 0 || ttl > MaxLinkTTL {
		return "", 0, fmt.Errorf("signing a link to %s: lifetime %s outside (0, %s]", key, ttl, MaxLinkTTL)
	}
	if s.opts.Credentials != nil {
		creds, err := s.opts.Credentials.Retrieve(ctx)
		if inv, ok := s.opts.Credentials.(interface{ Invalidate() }); ok && err == nil && creds.CanExpire && time.Until(creds.Expires)-linkMargin < min(ttl, minLinkLife) {
			inv.Invalidate()
			creds, err = s.opts.Credentials.Retrieve(ctx)
		}
		if err != nil {
			return "", 0, fmt.Errorf("signing a link to %s: %w", key, err)
		}
		if creds.CanExpire {
			left := time.Until(creds.Expires) - linkMargin
			if left <= 0 {
				return "", 0, fmt.Errorf("signing a link to %s: the signing credentials expire at %s", key, creds.Expires.Format(time.RFC3339))
			}
			ttl = min(ttl, left.Truncate(time.Second))
		}
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket:                     aws.String(s.bucket),
		Key:                        aws.String(key),
		ResponseContentDisposition: aws.String(attachment(fileName)),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", 0, fmt.Errorf("signing a link to %s: %w", key, err)
	}
	return req.URL, ttl, nil
}

// attachment is a Content-Disposition that saves the file as name (RFC
// 6266): a plain filename when name is printable ASCII, otherwise an ASCII
// stand-in for old clients plus filename* with the UTF-8 name.
func attachment(name string) string {
	if name == "" {
		return "attachment"
	}
	if printableASCII(name) {
		if v := mime.FormatMediaType("attachment", map[string]string{"filename": name}); v != "" {
			return v
		}
	}
	fallback := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '%' {
			return '_'
		}
		return r
	}, name)
	return `attachment; filename="` + fallback + `"; filename*=UTF-8''` + extValue(name)
}

func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// extValue percent-encodes s as an RFC 8187 value: UTF-8 bytes, all but
// attr-char escaped.
func extValue(s string) string {
	const attrChar = "!#$&+-.^_`|~"
	var b strings.Builder
	for i := range len(s) {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(attrChar, c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
