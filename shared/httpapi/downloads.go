package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tarport/tarport/shared/compose"
	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/tarport"
)

// downloadRequest is the body of POST /api/downloads (and its seed
// aliases): one image, a list of images, or a Compose file whose images
// go in one tar. token is accepted as a synonym of password.
type downloadRequest struct {
	Image    string   `json:"image"`
	Images   []string `json:"images"`
	Compose  string   `json:"compose"`
	Platform string   `json:"platform"`
	Username string   `json:"username"`
	Password string   `json:"password"`
	Token    string   `json:"token"`
}

// jobResponse is the job shape of DESIGN.md.
type jobResponse struct {
	ID         string            `json:"id"`
	Image      string            `json:"image"`
	Platform   string            `json:"platform"`
	Digest     string            `json:"digest"`
	Status     tarport.Status    `json:"status"`
	TotalBytes int64             `json:"total_bytes"`
	DoneBytes  int64             `json:"done_bytes"`
	Layers     []layerResponse   `json:"layers"`
	Images     []imageResponse   `json:"images,omitempty"` // a bundle's
	URL        string            `json:"url,omitempty"`
	StreamURL  string            `json:"stream_url,omitempty"`
	ExpiresAt  *time.Time        `json:"expires_at,omitempty"`
	Error      *tarport.JobError `json:"error,omitempty"`
	FileName   string            `json:"file_name,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at"`
}

type layerResponse struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	DoneBytes int64  `json:"done_bytes"`
}

// imageResponse is one image of a bundle: its layers (digests, which the
// job's layers list once however many images share them) and their bytes.
type imageResponse struct {
	Image     string   `json:"image"`
	Ref       string   `json:"ref"`
	Digest    string   `json:"digest"`
	Size      int64    `json:"size"`
	DoneBytes int64    `json:"done_bytes"`
	Layers    []string `json:"layers"`
}

func (a *API) toResponse(v download.View) jobResponse {
	out := jobResponse{
		ID: v.ID, Image: v.Image, Platform: v.Platform, Digest: v.Digest.String(), Status: v.Status,
		TotalBytes: v.TotalBytes, DoneBytes: v.DoneBytes(), Error: v.Error, FileName: v.FileName,
		CreatedAt: v.CreatedAt, UpdatedAt: v.UpdatedAt, Layers: make([]layerResponse, 0, len(v.Layers)),
	}
	for _, l := range v.Layers {
		out.Layers = append(out.Layers, layerResponse{Digest: l.Digest.String(), Size: l.Size, DoneBytes: l.DoneBytes})
	}
	for _, ji := range v.Bundle {
		img := imageResponse{Image: ji.Image, Ref: ji.Ref, Digest: ji.Digest.String(), Layers: make([]string, 0, len(ji.Layers))}
		for _, i := range ji.Layers {
			if i >= 0 && i < len(v.Layers) {
				l := v.Layers[i]
				img.Layers = append(img.Layers, l.Digest.String())
				img.Size += l.Size
				img.DoneBytes += l.DoneBytes
			}
		}
		out.Images = append(out.Images, img)
	}
	if v.URL != "" {
		out.URL = a.absolute(v.URL)
		exp := v.LinkExpiresAt.UTC()
		out.ExpiresAt = &exp
	}
	return out
}

// absolute makes a path-only link (local mode) absolute under the
// configured public address, never the request's Host (a forged Host
// would put another site in links); S3 presigned URLs are absolute
// already. Without a public address a path stays a path.
func (a *API) absolute(u string) string {
	if !strings.HasPrefix(u, "/") || a.public == nil {
		return u
	}
	return strings.TrimSuffix(a.public.String(), "/") + u
}

func (a *API) createDownload(w http.ResponseWriter, r *http.Request) {
	var body downloadRequest
	if err := decodeBody(w, r, &body); err != nil {
		writeError(w, r, a.log, err)
		return
	}
	_, v, err := a.create(r, body)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	status := http.StatusAccepted
	if v.Status == tarport.StatusReady {
		status = http.StatusOK
	}
	w.Header().Set("Location", a.absolute("/api/downloads/"+v.ID))
	writeJSON(w, status, a.withStreamLink(a.toResponse(v)))
}

// create makes (or joins) the job a request body asks for, as the client
// the request comes from.
func (a *API) create(r *http.Request, body downloadRequest) (download.Request, download.View, error) {
	req, err := toRequest(r.Context(), body)
	if err != nil {
		return req, download.View{}, err
	}
	req.Client = a.clientOf(r)
	// A bundle asks its registries about every image: it counts as one
	// request per image against the rate limit, all at once or none (the
	// request itself took one).
	if n := min(len(req.Images), download.MaxBundle); n > 1 {
		if err := a.opts.Limits.AllowN(r.Context(), req.Client, n-1); err != nil {
			return req, download.View{}, err
		}
	}
	v, err := a.opts.Downloads.Create(r.Context(), req)
	return req, v, err
}

func (a *API) downloadStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) == 0 || len(id) > 64 {
		writeError(w, r, a.log, tarport.Errorf(tarport.CodeNotFound, "no download job %q", id))
		return
	}
	creds, err := basicCreds(r)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	// A read with credentials makes the registry check them: limited like
	// a job request, or it would be a password-guessing oracle.
	if !creds.Anonymous() && !a.allow(w, r) {
		return
	}
	v, err := a.opts.Downloads.Status(r.Context(), id, creds)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	writeJSON(w, http.StatusOK, a.toResponse(v))
}

// pull is the curl one-liner, `curl -fL --retry 100 URL -o x.tar`:
// locally the tar streams at once; on AWS a 303 to the tar when ready,
// while pending a 503 with Retry-After, which `curl --retry` honours.
// Registry credentials may come as HTTP basic auth (curl -u user:token).
func (a *API) pull(w http.ResponseWriter, r *http.Request) {
	body := downloadRequest{Image: r.PathValue("image"), Platform: r.URL.Query().Get("platform")}
	// A bundle: images separated by commas, which no reference contains.
	if strings.Contains(body.Image, ",") {
		body.Images, body.Image = strings.Split(body.Image, ","), ""
	}
	if u, p, ok := r.BasicAuth(); ok {
		body.Username, body.Password = u, p
	}
	a.tarAnswer(w, r, body)
}

// seedDownload is the seed's POST /api/download and /api/download-stream:
// its JSON body, answered with the tar (`curl -X POST ... --output x.tar`).
func (a *API) seedDownload(w http.ResponseWriter, r *http.Request) {
	var body downloadRequest
	if err := decodeBody(w, r, &body); err != nil {
		writeError(w, r, a.log, err)
		return
	}
	a.tarAnswer(w, r, body)
}

// tarAnswer makes (or joins) the job body asks for and answers with its
// tar: streamed while it is built where the server can (Tars), else a
// redirect to the finished tar's link.
func (a *API) tarAnswer(w http.ResponseWriter, r *http.Request, body downloadRequest) {
	req, v, err := a.create(r, body)
	if err == nil && a.opts.Tars != nil {
		a.streamTar(w, r, v)
		return
	}
	if wait := a.pullWait(r.Context()); err == nil && !v.Status.Terminal() && wait > 0 {
		v, err = a.opts.Downloads.Wait(r.Context(), v.ID, wait, req.Creds)
	}
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	switch v.Status {
	case tarport.StatusReady:
		w.Header().Set("Location", a.absolute(v.URL))
		writeJSON(w, http.StatusSeeOther, a.toResponse(v))
	case tarport.StatusFailed:
		writeError(w, r, a.log, v.Failure())
	default:
		w.Header().Set("Retry-After", "3")
		writeJSON(w, http.StatusServiceUnavailable, a.toResponse(v))
	}
}

// streamTar sends a job's tar as it is built, with its exact length. A job
// that fails before the first layer's bytes is an error answer with its
// status (curl -f reports it); once bytes are out, a failure cuts the
// connection inside an entry, so the client sees a short transfer (curl
// exits non-zero) that no tar reader takes for whole.
func (a *API) streamTar(w http.ResponseWriter, r *http.Request, v download.View) {
	if v.Status == tarport.StatusFailed {
		writeError(w, r, a.log, v.Failure())
		return
	}
	release, err := a.streams.acquire(a.clientOf(r))
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	defer release()
	rc, err := a.opts.Tars.Stream(r.Context(), v.Job)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	defer rc.Close()
	// The answer starts once the first layer's bytes are there (past its
	// tar header), so a job failing at its first layer gets a status.
	first := make([]byte, min(32<<10, v.TotalBytes))
	n, err := io.ReadFull(rc, first)
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-tar")
	h.Set("Content-Length", strconv.FormatInt(v.TotalBytes, 10))
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": v.FileName}))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Tarport-Job", v.ID) // the job to follow for progress
	// No resuming a stream: bytes of a layer sent while it was fetched
	// are verified only when it completes, so a file cut short may hold
	// bytes of a failed attempt. A Range is ignored (the whole tar, 200);
	// the job's link of the finished tar serves Range.
	h.Set("Accept-Ranges", "none")
	w.WriteHeader(http.StatusOK)
	out := newIdleWriter(w, a.opts.StreamIdle)
	defer out.done()
	sent := int64(0)
	_, err = out.Write(first[:n])
	if err == nil {
		sent = int64(n)
		var rest int64
		rest, err = io.Copy(out, rc)
		sent += rest
	}
	if err == nil && sent != v.TotalBytes {
		err = fmt.Errorf("the tar ended after %d of %d bytes", sent, v.TotalBytes)
	}
	if err != nil {
		if r.Context().Err() == nil {
			a.log.Warn("cutting a tar stream", "job", v.ID, "sent", sent, "of", v.TotalBytes, "err", err)
			// What was written is verified (or the plan's own headers):
			// it reaches the client before the cut, so the cut falls
			// inside the entry being awaited.
			_ = http.NewResponseController(w).Flush()
		}
		panic(http.ErrAbortHandler)
	}
}

// basicCreds reads registry credentials sent as HTTP basic auth (curl -u,
// or the web page for a private job), bounded like the JSON fields.
func basicCreds(r *http.Request) (tarport.Credentials, error) {
	u, p, ok := r.BasicAuth()
	if !ok {
		return tarport.Credentials{}, nil
	}
	req, err := toRequest(r.Context(), downloadRequest{Image: "-", Username: u, Password: p})
	return req.Creds, err
}

// Input bounds: generous for real use, small enough to refuse abuse.
const (
	maxPlatformLen = 64
	maxUserLen     = 256
	maxPasswordLen = 8192
)

func toRequest(ctx context.Context, b downloadRequest) (download.Request, error) {
	if len(b.Platform) > maxPlatformLen {
		return download.Request{}, tarport.Errorf(tarport.CodeInvalidPlatform, "platform is longer than %d characters", maxPlatformLen)
	}
	images, platform, err := requestedImages(ctx, b)
	if err != nil {
		return download.Request{}, err
	}
	pass := b.Password
	if pass == "" {
		pass = b.Token
	}
	if len(b.Username) > maxUserLen || len(pass) > maxPasswordLen {
		return download.Request{}, tarport.Errorf(tarport.CodeInvalid, "username or password is too long")
	}
	if (b.Username == "") != (pass == "") {
		return download.Request{}, tarport.Errorf(tarport.CodeInvalid, "give both username and password (or token), or neither")
	}
	req := download.Request{
		Image:    b.Image,
		Images:   images,
		Platform: platform,
		Creds:    tarport.Credentials{Username: b.Username, Password: pass},
	}
	if len(images) > 0 {
		req.Image = ""
	}
	return req, nil
}

// composeImages shows what a bundle of a Compose file holds, before it is
// asked for: every service, with its image or why it has none, and the
// distinct images, and the platform its services name, if any (POST
// /api/compose {"compose": "<compose file>"}).
func (a *API) composeImages(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Compose string `json:"compose"`
	}
	if err := decodeBody(w, r, &body); err != nil {
		writeError(w, r, a.log, err)
		return
	}
	b, err := compose.Read(r.Context(), []byte(body.Compose), "")
	if err != nil {
		writeError(w, r, a.log, err)
		return
	}
	out := map[string]any{"services": b.Services, "images": b.Images}
	if b.Platform != "" {
		out["platform"] = b.Platform // what the file asks for: the bundle's unless the request names another
	}
	writeJSON(w, http.StatusOK, out)
}

// maxListed bounds the entries of an images list before they are parsed
// (the service takes MaxBundle distinct ones).
const maxListed = 500

// requestedImages are the images of a bundle request (from its list or
// its Compose file), none for a request of one image, and the platform
// asked for (a Compose file's services may decide it: compose.Read);
// exactly one of image, images and compose must be given.
func requestedImages(ctx context.Context, b downloadRequest) (images []string, platform string, err error) {
	given := 0
	for _, set := range []bool{strings.TrimSpace(b.Image) != "", b.Images != nil, b.Compose != ""} {
		if set {
			given++
		}
	}
	switch {
	case given == 0:
		return nil, "", tarport.Errorf(tarport.CodeInvalid, `"image" is required, e.g. {"image":"nginx:1.27","platform":"linux/amd64"} (or "images":[...], or "compose":"<compose file>")`)
	case given > 1:
		return nil, "", tarport.Errorf(tarport.CodeInvalid, `give one of "image", "images" and "compose"`)
	case b.Compose != "":
		bundle, err := compose.Read(ctx, []byte(b.Compose), b.Platform)
		if err != nil {
			return nil, "", err
		}
		return bundle.Images, bundle.Platform, nil
	case b.Images != nil:
		if len(b.Images) == 0 {
			return nil, "", tarport.Errorf(tarport.CodeInvalid, `"images" is empty`)
		}
		if len(b.Images) > maxListed {
			return nil, "", tarport.Errorf(tarport.CodeTooLarge, "%d images listed; one tar holds at most %d", len(b.Images), download.MaxBundle)
		}
		return b.Images, b.Platform, nil
	}
	return nil, b.Platform, nil
}

// decodeBody reads one bounded JSON object. Its Content-Type is checked
// (jobCreating) only where a cross-site form could do harm: starting a
// download. A search sent as `curl -d '{...}'` (labelled a form) works.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case tarport.ErrorCode(err) == tarport.CodeRequestTimeout:
			return err
		case errors.As(err, &tooBig):
			return tarport.Errorf(tarport.CodeTooLarge, "the body is over %d bytes", MaxBodyBytes)
		case errors.Is(err, io.EOF):
			return tarport.Errorf(tarport.CodeInvalid, "the body is empty; send a JSON object")
		default:
			return tarport.Wrap(err, tarport.CodeInvalid, `the body is not a valid JSON object, e.g. {"image":"nginx:1.27","platform":"linux/amd64"}`)
		}
	}
	// Only whitespace may follow the object; reading on also catches a
	// body that goes over the limit after it.
	switch _, err := dec.Token(); {
	case errors.Is(err, io.EOF):
		return nil
	case errors.As(err, new(*http.MaxBytesError)):
		return tarport.Errorf(tarport.CodeTooLarge, "the body is over %d bytes", MaxBodyBytes)
	default:
		return tarport.Errorf(tarport.CodeInvalid, "the body must hold one JSON object")
	}
}

// pullReserve is what a pull keeps of its deadline to read the job once
// more and answer.
const pullReserve = 3 * time.Second

// pullWait is how long a pull may still wait for its job: PullWait, but
// never past the request's deadline (on Lambda, the function's timeout,
// under API Gateway's 30 s) less pullReserve, counted after the lookup.
func (a *API) pullWait(ctx context.Context) time.Duration {
	wait := a.opts.PullWait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)-pullReserve)
	}
	return wait
}
