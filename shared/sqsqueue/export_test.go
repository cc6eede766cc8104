package sqsqueue

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/tarport/tarport/shared/download"
)

// SetClock sets the clock a codec seals and opens credentials by.
func SetClock(c *Codec, now func() time.Time) { c.now = now }

// EncodeV1 writes t as a version 1 message (flat split fields, no kind),
// as the producer before task kinds did, sealing creds for version 1.
func EncodeV1(c *Codec, t download.Task) (string, error) {
	old := bodyV1{V: 1, JobID: t.JobID, Layer: t.Layer, Ref: t.Ref, Desc: t.Desc, Origin: t.Origin, Client: t.Client}
	switch {
	case t.Range != nil:
		old.Part, old.Parts, old.UploadID, old.Offset, old.Length = t.Range.Part, t.Range.Parts, t.Range.ID, t.Range.Offset, t.Range.Length
	case t.Verify != nil:
		old.Verify, old.Parts, old.UploadID = true, t.Verify.Parts, t.Verify.ID
	}
	if !t.Creds.Anonymous() {
		plain, err := json.Marshal(sealed{Username: t.Creds.Username, Password: t.Creds.Password, Expires: c.now().Add(c.ttl).Unix()})
		if err != nil {
			return "", err
		}
		blob := make([]byte, 1+c.aead.NonceSize())
		blob[0] = sealVersion
		if _, err := rand.Read(blob[1:]); err != nil {
			return "", err
		}
		old.Sealed = base64.RawURLEncoding.EncodeToString(c.aead.Seal(blob, blob[1:], plain, additionalData(1, t)))
	}
	b, err := json.Marshal(old)
	return string(b), err
}
