package registry

import (
	"context"
	"io"

	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarport"
)

// OpenBlob streams one layer. The reader verifies size and digest as the
// bytes pass (regclient's blob reader) and fails at EOF on a mismatch; a
// body that breaks mid-way resumes with a Range request, also through the
// CDN a registry redirects to. Foreign layers come from their URLs when
// the registry does not have them.
func (c *Client) OpenBlob(ctx context.Context, r ref.Ref, d descriptor.Descriptor, creds tarport.Credentials) (io.ReadCloser, error) {
	rc := c.session(r.Registry, creds)
	br, err := rc.BlobGet(ctx, r, d)
	if err != nil {
		return nil, classify(err, "fetching layer %s of %s", d.Digest, r.CommonName())
	}
	return &classifiedReader{ReadCloser: br, what: "reading layer " + d.Digest.String() + " of " + r.CommonName()}, nil
}

// classifiedReader gives read errors a code, so a job fails with a
// message a user can act on.
type classifiedReader struct {
	io.ReadCloser
	what string
}

func (r *classifiedReader) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	if err != nil && err != io.EOF {
		err = classify(err, "%s", r.what)
	}
	return n, err
}
