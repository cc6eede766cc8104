package s3store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tarport/tarport/shared/testkit/moto"
)

// fetch GETs a link with plain net/http, as a browser or curl would.
func fetch(t *testing.T, c *http.Client, link, rangeHeader string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, link, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rangeHeader != "" {
		req.Header.Set("Range", rangeHeader)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", link, err)
	}
	return resp, b
}

func TestSign(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, srv server) {
		if _, ok := srv.(*moto.Server); ok {
			// versitygw runs it; S3 documents all three.
			t.Skip("moto's S3 checks no presigned signature or expiry and ignores response-content-disposition")
		}
		ctx := context.Background()
		e := newEnv(t, srv, Options{}, nil)
		body := randomBytes(42, 10_000)
		for _, key := range []string{"tars/a.tar", "tars/b.tar"} {
			if err := e.store.Put(ctx, key, bytes.NewReader(body), int64(len(body))); err != nil {
				t.Fatal(err)
			}
		}
		sign := func(t *testing.T, name string, ttl time.Duration) string {
			t.Helper()
			link, _, err := e.store.Sign(ctx, "tars/a.tar", name, ttl)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			return link
		}
		client := srv.HTTPClient()

		t.Run("full", func(t *testing.T) {
			t.Parallel()
			resp, got := fetch(t, client, sign(t, "fixture_1.tar", time.Hour), "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s, body %.300q", resp.Status, got)
			}
			assertSame(t, "GET", got, body)
			_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
			if err != nil || params["filename"] != "fixture_1.tar" {
				t.Errorf("Content-Disposition = %q, want an attachment named fixture_1.tar", resp.Header.Get("Content-Disposition"))
			}
		})
		t.Run("ranges", func(t *testing.T) {
			t.Parallel()
			link := sign(t, "fixture_1.tar", time.Hour)
			for _, r := range [][2]int{{0, 0}, {100, 199}, {9990, 9999}} {
				resp, got := fetch(t, client, link, fmt.Sprintf("bytes=%d-%d", r[0], r[1]))
				if resp.StatusCode != http.StatusPartialContent {
					t.Fatalf("range %v: status %s, want 206", r, resp.Status)
				}
				assertSame(t, fmt.Sprint("range ", r), got, body[r[0]:r[1]+1])
				if cr, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", r[0], r[1], len(body)); cr != want {
					t.Errorf("Content-Range = %q, want %q", cr, want)
				}
			}
			resp, got := fetch(t, client, link, "bytes=9000-")
			if resp.StatusCode != http.StatusPartialContent {
				t.Fatalf("open range: status %s, want 206", resp.Status)
			}
			assertSame(t, "open range", got, body[9000:])
		})
		t.Run("non-ASCII file name", func(t *testing.T) {
			t.Parallel()
			name := `bitnami_ré"dis_7.2_linux_arm_v7✓.tar`
			resp, got := fetch(t, client, sign(t, name, time.Hour), "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s, body %.300q", resp.Status, got)
			}
			cd := resp.Header.Get("Content-Disposition")
			_, params, err := mime.ParseMediaType(cd)
			if err != nil || params["filename"] != name {
				t.Errorf("Content-Disposition = %q (filename %q, %v), want filename %q", cd, params["filename"], err, name)
			}
		})
		t.Run("expired", func(t *testing.T) {
			t.Parallel()
			const ttl = 3 * time.Second
			signed := time.Now()
			link := sign(t, "fixture_1.tar", ttl)
			if resp, _ := fetch(t, client, link, ""); resp.StatusCode != http.StatusOK {
				t.Fatalf("fresh link: status %s, want 200", resp.Status)
			}
			// Presigned times have one-second resolution.
			time.Sleep(time.Until(signed.Add(ttl + 1500*time.Millisecond)))
			if resp, got := fetch(t, client, link, ""); resp.StatusCode != http.StatusForbidden || bytes.Contains(got, body[:64]) {
				t.Fatalf("expired link: status %s, want 403 without the object", resp.Status)
			}
		})
		t.Run("tampered", func(t *testing.T) {
			t.Parallel()
			valid := sign(t, "fixture_1.tar", time.Hour)
			tamper := func(edit func(u *url.URL, q url.Values)) string {
				u, err := url.Parse(valid)
				if err != nil {
					t.Fatal(err)
				}
				q := u.Query()
				edit(u, q)
				u.RawQuery = q.Encode()
				return u.String()
			}
			for name, link := range map[string]string{
				"signature": tamper(func(_ *url.URL, q url.Values) {
					sig := []byte(q.Get("X-Amz-Signature"))
					if sig[0] == '0' {
						sig[0] = '1'
					} else {
						sig[0] = '0'
					}
					q.Set("X-Amz-Signature", string(sig))
				}),
				"other key": tamper(func(u *url.URL, _ url.Values) { u.Path = strings.Replace(u.Path, "a.tar", "b.tar", 1) }),
				"file name": tamper(func(_ *url.URL, q url.Values) {
					q.Set("response-content-disposition", `attachment; filename="evil.sh"`)
				}),
				"lifetime": tamper(func(_ *url.URL, q url.Values) {
					exp, _ := strconv.Atoi(q.Get("X-Amz-Expires"))
					q.Set("X-Amz-Expires", strconv.Itoa(exp+3600))
				}),
				"unsigned": tamper(func(_ *url.URL, q url.Values) { q.Del("X-Amz-Signature") }),
			} {
				// S3 answers 400 to a link missing a signature parameter.
				resp, got := fetch(t, client, link, "")
				refused := resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusBadRequest
				if !refused || bytes.Contains(got, body[:64]) {
					t.Errorf("%s tampered: status %s, want 403 or 400 without the object", name, resp.Status)
				}
			}
		})
	})
}

func TestSignLifetime(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, "b", Options{}) // refused before the presigner is used
	for _, ttl := range []time.Duration{0, -time.Second, MaxLinkTTL + time.Second} {
		if link, _, err := s.Sign(context.Background(), "tars/a.tar", "a.tar", ttl); err == nil {
			t.Errorf("Sign with lifetime %s = %q, want an error", ttl, link)
		}
	}
}

func TestAttachment(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"nginx_1.27_linux_amd64.tar",
		"with space.tar",
		`quote"and\backslash.tar`,
		"percent%41.tar",
		"ünïcödé.tar",
		"日本語.tar",
		"emoji_🐳.tar",
		"semi;colon=.tar",
	} {
		h := attachment(name)
		if !printableASCII(h) {
			t.Errorf("attachment(%q) = %q: not printable ASCII, unsafe in a header", name, h)
		}
		disp, params, err := mime.ParseMediaType(h)
		if err != nil || disp != "attachment" || params["filename"] != name {
			t.Errorf("attachment(%q) = %q, parsed as %q %q (%v)", name, h, disp, params, err)
		}
		if strings.Contains(h, "filename*=") && !strings.Contains(h, `filename="`) {
			t.Errorf("attachment(%q) = %q: no plain filename for clients without RFC 8187", name, h)
		}
	}
	if h := attachment(""); h != "attachment" {
		t.Errorf(`attachment("") = %q, want attachment`, h)
	}
}

// expiringCredentials are credentials that end at a given time, as a
// role session's do.
type expiringCredentials struct{ expires time.Time }

func (e expiringCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "AKIA", SecretAccessKey: "secret", SessionToken: "token", CanExpire: true, Expires: e.expires}, nil
}

// TestSignWithinCredentials: a link never claims to outlive the session
// that signs it (S3 refuses it once the session ends, whatever its
// X-Amz-Expires says): its lifetime and X-Amz-Expires stop a minute short
// of the credentials' expiry, and credentials about to end sign nothing.
func TestSignWithinCredentials(t *testing.T) {
	t.Parallel()
	store := func(expires time.Time) *Store {
		creds := expiringCredentials{expires}
		c := s3.New(s3.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String("https://s3.example")})
		return New(c, s3.NewPresignClient(c), "bucket", Options{Credentials: creds})
	}
	ctx := context.Background()
	link, lifetime, err := store(time.Now().Add(10*time.Minute)).Sign(ctx, "tars/a.tar", "a.tar", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if lifetime > 9*time.Minute || lifetime < 8*time.Minute {
		t.Errorf("lifetime %s, want about 9 min (the session's 10, less a minute)", lifetime)
	}
	u, _ := url.Parse(link)
	if exp, _ := strconv.Atoi(u.Query().Get("X-Amz-Expires")); exp != int(lifetime.Seconds()) {
		t.Errorf("X-Amz-Expires %d, want the lifetime's %d s", exp, int(lifetime.Seconds()))
	}
	// A long session leaves the asked lifetime alone.
	if _, lifetime, err := store(time.Now().Add(6*time.Hour)).Sign(ctx, "tars/a.tar", "a.tar", time.Hour); err != nil || lifetime != time.Hour {
		t.Errorf("with a 6 h session: %s, %v; want 1h", lifetime, err)
	}
	if _, _, err := store(time.Now().Add(30*time.Second)).Sign(ctx, "tars/a.tar", "a.tar", time.Hour); err == nil {
		t.Errorf("credentials ending in 30 s signed a link")
	}
}

// renewing are credentials a cache can be told to renew, as
// aws.CredentialsCache over an assumed-role session is.
type renewing struct {
	expires  []time.Time // one per session, the next after Invalidate
	sessions int
}

func (r *renewing) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "AKIA", SecretAccessKey: "s", SessionToken: "t", CanExpire: true, Expires: r.expires[r.sessions]}, nil
}

func (r *renewing) Invalidate() { r.sessions++ }

// TestSignRenewsEndingCredentials: a session with under half an hour left
// is renewed before it signs, so a link is not cut short (nor refused in
// the session's last minute).
func TestSignRenewsEndingCredentials(t *testing.T) {
	t.Parallel()
	creds := &renewing{expires: []time.Time{time.Now().Add(40 * time.Second), time.Now().Add(time.Hour)}}
	c := s3.New(s3.Options{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String("https://s3.example")})
	s := New(c, s3.NewPresignClient(c), "bucket", Options{Credentials: creds})
	_, lifetime, err := s.Sign(context.Background(), "tars/a.tar", "a.tar", time.Hour)
	if err != nil || creds.sessions != 1 || lifetime < 58*time.Minute {
		t.Fatalf("Sign with a session 40 s from its end: lifetime %s, %d renewals, %v; want a new session and about 59 min", lifetime, creds.sessions, err)
	}
}
