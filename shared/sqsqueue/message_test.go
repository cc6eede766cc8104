package sqsqueue_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/sqsqueue"
	"github.com/tarport/tarport/shared/tarport"
)

var testKey = bytes.Repeat([]byte{7}, sqsqueue.KeySize)

const password = "hunter2-s3cr3t-token"

func task(job string, layer int) download.Task {
	return download.Task{
		Kind:  download.KindLayer,
		JobID: job,
		Layer: layer,
		Ref:   "docker.io/library/nginx:1.27",
		Desc: descriptor.Descriptor{
			MediaType:   "application/vnd.oci.image.layer.v1.tar+gzip",
			Digest:      digest.FromString(fmt.Sprintf("%s/%d", job, layer)),
			Size:        int64(1000 + layer),
			Annotations: map[string]string{"n": fmt.Sprint(layer)},
		},
	}
}

func private(t download.Task) download.Task {
	t.Creds = tarport.Credentials{Username: "alice", Password: password}
	return t
}

func codec(t *testing.T, key []byte, ttl time.Duration) *sqsqueue.Codec {
	t.Helper()
	c, err := sqsqueue.NewCodec(key, ttl)
	if err != nil {
		t.Fatalf("NewCodec: %v", err)
	}
	return c
}

func encode(t *testing.T, c *sqsqueue.Codec, tk download.Task) string {
	t.Helper()
	b, err := c.Encode(tk)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

func TestCodecRoundTrip(t *testing.T) {
	t.Parallel()
	c := codec(t, testKey, 0)
	await := private(task("job1", 2))
	await.Kind, await.Await = download.KindAwait, &download.SplitAwait{Holder: "job0"}
	for _, tk := range []download.Task{task("job1", 0), private(task("job1", 3)), await} {
		body := encode(t, c, tk)
		if strings.Contains(body, password) || strings.Contains(body, "alice") {
			t.Errorf("credentials in clear in %s", body)
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(body), &raw); err != nil {
			t.Fatalf("body is not JSON: %v", err)
		}
		if raw["v"] != float64(sqsqueue.MessageVersion) || raw["job_id"] != tk.JobID || raw["layer"] != float64(tk.Layer) {
			t.Errorf("body = %s", body)
		}
		if _, sealed := raw["creds"]; sealed == tk.Creds.Anonymous() {
			t.Errorf("sealed credentials present = %v for %+v", sealed, tk.Creds)
		}
		got, err := c.Decode(body)
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		if !reflect.DeepEqual(got, tk) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, tk)
		}
	}
	// Two seals of the same task differ (random nonce).
	if encode(t, c, private(task("j", 1))) == encode(t, c, private(task("j", 1))) {
		t.Errorf("two encodings are identical")
	}
}

// swapCreds puts the sealed blob of from into the body of to.
func swapCreds(t *testing.T, from, to string) string {
	t.Helper()
	var f, m map[string]any
	json.Unmarshal([]byte(from), &f)
	json.Unmarshal([]byte(to), &m)
	m["creds"] = f["creds"]
	b, _ := json.Marshal(m)
	return string(b)
}

func edit(t *testing.T, body string, change func(m map[string]any)) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	change(m)
	b, _ := json.Marshal(m)
	return string(b)
}

// TestCodecCredentialsAgeFromAsked: a task sent again (an await task
// looks again every few seconds for hours) does not renew its sealed
// credentials: their life counts from when the requester gave them.
func TestCodecCredentialsAgeFromAsked(t *testing.T) {
	t.Parallel()
	c := codec(t, testKey, time.Hour)
	tk := private(task("job1", 2))
	tk.Asked = time.Now().Add(-50 * time.Minute) // given 50 minutes ago
	body := encode(t, c, tk)
	if got, err := c.Decode(body); err != nil || got.Creds != tk.Creds {
		t.Fatalf("within the hour: %+v, %v", got.Creds, err)
	}
	later := codec(t, testKey, time.Hour)
	sqsqueue.SetClock(later, func() time.Time { return time.Now().Add(11 * time.Minute) })
	if _, err := later.Decode(body); !errors.Is(err, sqsqueue.ErrCredsExpired) {
		t.Fatalf("an hour after they were given: %v, want expired", err)
	}
}

func TestCodecRefusesCredentials(t *testing.T) {
	t.Parallel()
	c := codec(t, testKey, time.Hour)
	tk := private(task("job1", 2))
	body := encode(t, c, tk)
	other := encode(t, c, private(task("job2", 2)))
	later := codec(t, testKey, time.Hour)
	sqsqueue.SetClock(later, func() time.Time { return time.Now().Add(time.Hour + time.Minute) })
	tests := []struct {
		name  string
		codec *sqsqueue.Codec
		body  string
		want  download.Task // the task decoded, without credentials
		cause error
	}{
		{"tampered", c, edit(t, body, func(m map[string]any) {
			blob, _ := base64.RawURLEncoding.DecodeString(m["creds"].(string))
			blob[len(blob)-1] ^= 1
			m["creds"] = base64.RawURLEncoding.EncodeToString(blob)
		}), task("job1", 2), sqsqueue.ErrCredsInvalid},
		{"garbage", c, edit(t, body, func(m map[string]any) { m["creds"] = "!!" }), task("job1", 2), sqsqueue.ErrCredsInvalid},
		{"moved to another job", c, swapCreds(t, body, other), task("job2", 2), sqsqueue.ErrCredsInvalid},
		{"moved to another layer", c, edit(t, body, func(m map[string]any) { m["layer"] = 3 }), func() download.Task {
			x := task("job1", 2)
			x.Layer = 3
			return x
		}(), sqsqueue.ErrCredsInvalid},
		{"pointed at another registry", c, edit(t, body, func(m map[string]any) { m["ref"] = "evil.example/x:1" }), func() download.Task {
			x := task("job1", 2)
			x.Ref = "evil.example/x:1"
			return x
		}(), sqsqueue.ErrCredsInvalid},
		{"other key", codec(t, bytes.Repeat([]byte{8}, sqsqueue.KeySize), 0), body, task("job1", 2), sqsqueue.ErrCredsInvalid},
		{"expired", later, body, task("job1", 2), sqsqueue.ErrCredsExpired},
		{"no key", codec(t, nil, 0), body, task("job1", 2), sqsqueue.ErrNoKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.codec.Decode(tc.body)
			if tarport.ErrorCode(err) != tarport.CodeCredentialsGone || !errors.Is(err, tc.cause) {
				t.Fatalf("err = %v, want %s wrapping %v", err, tarport.CodeCredentialsGone, tc.cause)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("error shows the password: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("task = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestCodecNoKey(t *testing.T) {
	t.Parallel()
	c := codec(t, nil, 0)
	if _, err := c.Encode(private(task("j", 0))); !errors.Is(err, sqsqueue.ErrNoKey) {
		t.Errorf("Encode with credentials and no key: %v, want ErrNoKey", err)
	}
	if _, err := c.Decode(encode(t, c, task("j", 0))); err != nil {
		t.Errorf("anonymous task without a key: %v", err)
	}
	for _, n := range []int{16, 31, 33} {
		if _, err := sqsqueue.NewCodec(make([]byte, n), 0); err == nil {
			t.Errorf("NewCodec accepted a %d-byte key", n)
		}
	}
	if _, err := sqsqueue.NewCodec(testKey, -time.Second); err == nil {
		t.Errorf("NewCodec accepted a negative TTL")
	}
}

func TestDecodeUndecodable(t *testing.T) {
	t.Parallel()
	c := codec(t, testKey, 0)
	good := encode(t, c, task("j", 1))
	for name, body := range map[string]string{
		"empty":          "",
		"not json":       "hello",
		"array":          "[1,2]",
		"trailing data":  good + " {}",
		"version 3":      edit(t, good, func(m map[string]any) { m["v"] = 3 }),
		"no kind":        edit(t, good, func(m map[string]any) { delete(m, "kind") }),
		"unknown kind":   edit(t, good, func(m map[string]any) { m["kind"] = "delete" }),
		"range, no part": edit(t, good, func(m map[string]any) { m["kind"] = "range" }),
		"no version":     edit(t, good, func(m map[string]any) { delete(m, "v") }),
		"no job":         edit(t, good, func(m map[string]any) { delete(m, "job_id") }),
		"no ref":         edit(t, good, func(m map[string]any) { m["ref"] = "" }),
		"bad digest":     edit(t, good, func(m map[string]any) { m["desc"].(map[string]any)["digest"] = "sha256:zz" }),
		"negative":       edit(t, good, func(m map[string]any) { m["layer"] = -1 }),
	} {
		if _, err := c.Decode(body); !errors.Is(err, sqsqueue.ErrUndecodable) {
			t.Errorf("%s: err = %v, want ErrUndecodable", name, err)
		}
	}
}

// TestDecodeVersion1: messages a producer wrote before tasks had kinds
// (still queued during an upgrade) decode as the same tasks, sealed
// credentials included.
func TestDecodeVersion1(t *testing.T) {
	t.Parallel()
	c := codec(t, testKey, 0)
	layer := private(task("j", 2))
	up := download.SplitUpload{ID: "upload-1", Parts: 3}
	ranged := task("j", 1)
	ranged.Kind, ranged.Range = download.KindRange, &download.RangePart{SplitUpload: up, Part: 2, Offset: 64 << 20, Length: 64 << 20}
	ranged.Origin = "registry.example"
	ranged = private(ranged)
	verify := task("j", 1)
	verify.Kind, verify.Verify = download.KindVerify, &up
	for _, want := range []download.Task{layer, ranged, verify} {
		body, err := sqsqueue.EncodeV1(c, want)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(body, `"kind"`) || !strings.Contains(body, `"v":1`) {
			t.Fatalf("not a version 1 body: %s", body)
		}
		got, err := c.Decode(body)
		if err != nil {
			t.Fatalf("Decode(%s): %v", body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Decode(%s)\n got %+v\nwant %+v", body, got, want)
		}
	}
	// A version 1 seal does not open as version 2, nor the other way.
	v2 := encode(t, c, layer)
	if _, err := c.Decode(strings.Replace(v2, `"v":2`, `"v":1`, 1)); tarport.ErrorCode(err) != tarport.CodeCredentialsGone || !errors.Is(err, sqsqueue.ErrCredsInvalid) {
		t.Errorf("a version 2 message relabelled 1: err = %v", err)
	}
}
