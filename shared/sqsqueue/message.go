package sqsqueue

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// MessageVersion is the version of the message body written here. Decode
// reads it and version 1 (tasks written before tasks had kinds, still in
// the queue during an upgrade); a newer producer's message fails (and is
// redelivered) rather than running half understood.
const MessageVersion = 2

// KeySize is the length of a sealing key (AES-256).
const KeySize = 32

// DefaultCredsTTL is how long sealed credentials can be opened by default:
// far longer than a layer waits in the queue, far shorter than SQS keeps a
// message (4 days).
const DefaultCredsTTL = 6 * time.Hour

var (
	// ErrUndecodable marks a message body that is not a task message this
	// code can run (MessageVersion or version 1, a known kind).
	ErrUndecodable = errors.New("undecodable task message")
	// ErrNoKey: credentials cannot be sealed or opened without a key.
	ErrNoKey = errors.New("no key configured for task credentials")
	// ErrCredsExpired: sealed credentials outlived their TTL.
	ErrCredsExpired = errors.New("task credentials expired")
	// ErrCredsInvalid: sealed credentials were altered, moved to another
	// task, or sealed with another key.
	ErrCredsInvalid = errors.New("task credentials do not open")
)

// body is a task message. The task's own fields are as download.Task
// writes them (Creds is json:"-"); credentials travel only sealed.
type body struct {
	V int `json:"v"`
	download.Task
	Sealed string `json:"creds,omitempty"`
}

// bodyV1 is a version 1 message: no kind, a split layer's range task
// carried its part flat, a verify task a flag.
type bodyV1 struct {
	V        int                   `json:"v"`
	JobID    string                `json:"job_id"`
	Layer    int                   `json:"layer"`
	Ref      string                `json:"ref"`
	Desc     descriptor.Descriptor `json:"desc"`
	Origin   tarport.Origin        `json:"origin"`
	Client   string                `json:"client"`
	Part     int                   `json:"part"`
	Parts    int                   `json:"parts"`
	UploadID string                `json:"upload_id"`
	Offset   int64                 `json:"offset"`
	Length   int64                 `json:"length"`
	Verify   bool                  `json:"verify"`
	Sealed   string                `json:"creds"`
}

// body is a version 1 message in today's shape.
func (old bodyV1) body() body {
	t := download.Task{Kind: download.KindLayer, JobID: old.JobID, Layer: old.Layer, Ref: old.Ref, Desc: old.Desc, Origin: old.Origin, Client: old.Client}
	up := download.SplitUpload{ID: old.UploadID, Parts: old.Parts}
	switch {
	case old.Verify:
		t.Kind, t.Verify = download.KindVerify, &up
	case old.Parts > 0:
		t.Kind, t.Range = download.KindRange, &download.RangePart{SplitUpload: up, Part: old.Part, Offset: old.Offset, Length: old.Length}
	}
	return body{V: 1, Task: t, Sealed: old.Sealed}
}

// sealed is the plaintext of a sealed blob; the expiry is inside, so it is
// authenticated with the credentials.
type sealed struct {
	Username string `json:"u"`
	Password string `json:"p"`
	Expires  int64  `json:"exp"` // Unix seconds
}

// sealVersion leads every blob, so the scheme can change without guessing.
const sealVersion byte = 1

// Codec turns tasks into message bodies and back. Credentials are sealed
// with AES-256-GCM under a random nonce; the additional data binds the blob
// to the message version, job id, layer, reference and layer digest, so it
// opens only in the task it was sealed for: moved onto another task (or
// with the task pointed at another registry) it does not open.
type Codec struct {
	aead cipher.AEAD // nil without a key
	ttl  time.Duration
	now  func() time.Time
}

// NewCodec returns a codec sealing with key (KeySize bytes; empty for none:
// then tasks with credentials cannot be encoded) for ttl (DefaultCredsTTL
// when 0).
func NewCodec(key []byte, ttl time.Duration) (*Codec, error) {
	if ttl < 0 {
		return nil, fmt.Errorf("configuring task messages: negative credentials TTL %s", ttl)
	}
	if ttl == 0 {
		ttl = DefaultCredsTTL
	}
	c := &Codec{ttl: ttl, now: time.Now}
	if len(key) == 0 {
		return c, nil
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("configuring task messages: the key has %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("configuring task messages: %w", err)
	}
	if c.aead, err = cipher.NewGCM(block); err != nil {
		return nil, fmt.Errorf("configuring task messages: %w", err)
	}
	return c, nil
}

// Encode returns the message body of t.
func (c *Codec) Encode(t download.Task) (string, error) {
	b := body{V: MessageVersion, Task: t}
	if !t.Creds.Anonymous() {
		if c.aead == nil {
			return "", fmt.Errorf("encoding layer %d of job %s: %w", t.Layer, t.JobID, ErrNoKey)
		}
		// The credentials' life counts from when the requester gave them
		// (a task sent again, as an await task is, does not renew them).
		exp := c.now().Add(c.ttl)
		if !t.Asked.IsZero() && t.Asked.Add(c.ttl).Before(exp) {
			exp = t.Asked.Add(c.ttl)
		}
		plain, err := json.Marshal(sealed{Username: t.Creds.Username, Password: t.Creds.Password, Expires: exp.Unix()})
		if err != nil {
			return "", fmt.Errorf("encoding layer %d of job %s: %w", t.Layer, t.JobID, err)
		}
		ns := c.aead.NonceSize()
		blob := make([]byte, 1+ns, 1+ns+len(plain)+c.aead.Overhead())
		blob[0] = sealVersion
		if _, err := rand.Read(blob[1:]); err != nil {
			return "", fmt.Errorf("encoding layer %d of job %s: %w", t.Layer, t.JobID, err)
		}
		blob = c.aead.Seal(blob, blob[1:], plain, additionalData(MessageVersion, t))
		b.Sealed = base64.RawURLEncoding.EncodeToString(blob)
	}
	out, err := json.Marshal(b)
	if err != nil {
		return "", fmt.Errorf("encoding layer %d of job %s: %w", t.Layer, t.JobID, err)
	}
	return string(out), nil
}

// Decode reads a message body. A body that is no task message this code
// can run fails with ErrUndecodable; the task it returns then holds the job
// id when the body names one (a message of a newer version, or a malformed
// task), so a dead-lettered one can still fail its job. Credentials that do
// not open (expired, altered, moved, no key) leave the task without them and
// fail with a CodeCredentialsGone error wrapping ErrCredsExpired,
// ErrCredsInvalid or ErrNoKey: the task is returned all the same, so its job
// can be failed.
func (c *Codec) Decode(s string) (download.Task, error) {
	b, err := decodeBody(s)
	if err != nil {
		return b.Task, fmt.Errorf("decoding task message: %w (%w)", ErrUndecodable, err)
	}
	t := b.Task
	if err := t.Validate(); err != nil {
		return download.Task{JobID: t.JobID}, fmt.Errorf("decoding task message: %w (%w)", ErrUndecodable, err)
	}
	if err := t.Desc.Digest.Validate(); err != nil {
		return download.Task{JobID: t.JobID}, fmt.Errorf("decoding task message: %w (%w)", ErrUndecodable, err)
	}
	if b.Sealed == "" {
		return t, nil
	}
	creds, err := c.open(b.V, t, b.Sealed)
	if err != nil {
		return t, tarport.Wrap(err, tarport.CodeCredentialsGone, "the registry credentials of download %s could not be used for layer %s; request the image again", t.JobID, t.Desc.Digest)
	}
	t.Creds = creds
	return t, nil
}

// decodeBody reads one JSON message of MessageVersion or version 1. Any
// other version is refused with the job id it names, if it names one.
func decodeBody(s string) (body, error) {
	var probe struct {
		V     int    `json:"v"`
		JobID string `json:"job_id"`
	}
	if err := strictJSON(s, &probe); err != nil {
		return body{}, err
	}
	switch probe.V {
	case MessageVersion:
		var b body
		err := strictJSON(s, &b)
		return b, err
	case 1:
		var old bodyV1
		err := strictJSON(s, &old)
		return old.body(), err
	}
	return body{Task: download.Task{JobID: probe.JobID}}, fmt.Errorf("version %d, want %d", probe.V, MessageVersion)
}

// strictJSON decodes exactly one JSON value, with nothing after it.
func strictJSON(s string, v any) error {
	d := json.NewDecoder(strings.NewReader(s))
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the message")
	}
	return nil
}

func (c *Codec) open(version int, t download.Task, s string) (tarport.Credentials, error) {
	if c.aead == nil {
		return tarport.Credentials{}, ErrNoKey
	}
	blob, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(blob) < 1+c.aead.NonceSize() || blob[0] != sealVersion {
		return tarport.Credentials{}, ErrCredsInvalid
	}
	nonce := blob[1 : 1+c.aead.NonceSize()]
	plain, err := c.aead.Open(nil, nonce, blob[1+c.aead.NonceSize():], additionalData(version, t))
	if err != nil {
		return tarport.Credentials{}, ErrCredsInvalid
	}
	var p sealed
	if err := json.Unmarshal(plain, &p); err != nil {
		return tarport.Credentials{}, ErrCredsInvalid
	}
	if !c.now().Before(time.Unix(p.Expires, 0)) {
		return tarport.Credentials{}, ErrCredsExpired
	}
	return tarport.Credentials{Username: p.Username, Password: p.Password}, nil
}

// additionalData is what a sealed blob is bound to (in a message of the
// given version), each field length prefixed so no two tasks share it.
func additionalData(version int, t download.Task) []byte {
	var b []byte
	for _, f := range []string{"tarport sqs task creds", strconv.Itoa(version), string(sealVersion), t.JobID, strconv.Itoa(t.Layer), t.Ref, t.Desc.Digest.String()} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}
