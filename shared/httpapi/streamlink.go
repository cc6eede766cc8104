package httpapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// StreamLinkPrefix is where a job's stream links are served: a job's tar
// as it is built, for a browser, which can neither send the access token
// nor registry credentials with a download it starts. The signature is
// the credential: the link is given to the requester a job was just made
// (or joined) for, whose credentials the registry had just accepted.
const StreamLinkPrefix = "/api/streams/"

// StreamLinkTTL is how long a stream link may be started: long enough to
// reach the browser's download manager, short because it is a bearer
// token. A stream started in time runs to its end.
const StreamLinkTTL = 10 * time.Minute

// streamLinks signs and checks stream links with a key of this process:
// a link dies with the server, as the streams it would serve do.
type streamLinks struct {
	key []byte
}

func newStreamLinks() streamLinks {
	key := make([]byte, 32)
	rand.Read(key) // never fails (crypto/rand since Go 1.24)
	return streamLinks{key: key}
}

// sign returns the path of job id's stream link, valid until exp.
func (l streamLinks) sign(id string, exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	q := url.Values{"exp": {e}, "sig": {l.mac(id, e)}}
	return StreamLinkPrefix + url.PathEscape(id) + "?" + q.Encode()
}

// check says whether a stream link's exp and sig are ours for id and in
// time.
func (l streamLinks) check(id, exp, sig string, now time.Time) error {
	e, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !hmac.Equal([]byte(sig), []byte(l.mac(id, exp))) {
		return tarport.Errorf(tarport.CodeLinkInvalid, "this download link is not valid")
	}
	if now.Unix() > e {
		return tarport.Errorf(tarport.CodeLinkExpired, "this download link has expired; download the finished tar from the job's link, or ask for the image again")
	}
	return nil
}

func (l streamLinks) mac(id, exp string) string {
	m := hmac.New(sha256.New, l.key)
	io.WriteString(m, "stream\n"+id+"\n"+exp)
	return hex.EncodeToString(m.Sum(nil))
}

// isStreamLink says whether a request is for a stream link (served
// where there are Tars), whose signature stands in for the access token.
func (a *API) isStreamLink(r *http.Request) bool {
	return a.opts.Tars != nil && strings.HasPrefix(r.URL.Path, StreamLinkPrefix)
}

// streamLink serves a stream link: the job's tar, streamed as it is built.
func (a *API) streamLink(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	if err := a.links.check(id, q.Get("exp"), q.Get("sig"), time.Now()); err != nil {
		writeError(w, r, a.log, err)
		return
	}
	job, err := a.opts.Tars.Job(r.Context(), id)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	a.streamTar(w, r, download.View{Job: job})
}

// withStreamLink adds a stream link to a job just made or joined for this
// requester, while there is something to stream that the finished tar's
// link does not serve better (it resumes).
func (a *API) withStreamLink(out jobResponse) jobResponse {
	if a.opts.Tars == nil || out.Status.Terminal() {
		return out
	}
	out.StreamURL = a.absolute(a.links.sign(out.ID, time.Now().Add(StreamLinkTTL)))
	return out
}
