package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// Config is one smoke run: the site and what to ask it.
type Config struct {
	Site     string // https://d123.cloudfront.net or http://127.0.0.1:8080
	Token    string // X-Tarport-Token, when the site has one
	Query    string // a search
	Details  string // an image whose details are read
	Image    string // a small public image downloaded end to end
	Platform string
	Timeout  time.Duration // for the download to be ready
	Client   *http.Client
	Log      io.Writer // one line per check
}

// Report is what a run did and what it cost.
type Report struct {
	Passed   []string
	Requests int   // HTTP requests made to the site (and its links)
	APIBytes int64 // bytes of API answers
	TarBytes int64 // bytes of the tar downloaded
}

// run makes the checks in order and stops at the first failure.
func run(ctx context.Context, cfg Config) (Report, error) {
	s := &session{cfg: cfg, client: cfg.Client}
	if s.client == nil {
		s.client = &http.Client{Timeout: 2 * time.Minute}
	}
	for _, c := range []struct {
		name string
		fn   func(context.Context) (string, error)
	}{
		{"health", s.health},
		{"search", s.search},
		{"details", s.details},
		{"download", s.download},
	} {
		detail, err := c.fn(ctx)
		if err != nil {
			return s.report, fmt.Errorf("%s: %w", c.name, err)
		}
		line := fmt.Sprintf("ok   %-9s %s", c.name, detail)
		s.report.Passed = append(s.report.Passed, line)
		if cfg.Log != nil {
			fmt.Fprintln(cfg.Log, line)
		}
	}
	return s.report, nil
}

type session struct {
	cfg    Config
	client *http.Client
	report Report
}

// api makes one API call and decodes its JSON answer into out; a status
// other than want is an error carrying the server's message.
func (s *session) api(ctx context.Context, method, p string, body any, want []int, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(s.cfg.Site, "/")+p, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.cfg.Token != "" {
		req.Header.Set("X-Tarport-Token", s.cfg.Token)
	}
	s.report.Requests++
	res, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	s.report.APIBytes += int64(len(raw))
	if err != nil {
		return res.StatusCode, fmt.Errorf("%s %s: reading the answer: %w", method, p, err)
	}
	ok := false
	for _, w := range want {
		ok = ok || res.StatusCode == w
	}
	if !ok {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
			return res.StatusCode, fmt.Errorf("%s %s: %d %s: %s", method, p, res.StatusCode, e.Error.Code, e.Error.Message)
		}
		return res.StatusCode, fmt.Errorf("%s %s: status %d: %.200s", method, p, res.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return res.StatusCode, fmt.Errorf("%s %s: not the API's JSON: %w", method, p, err)
		}
	}
	return res.StatusCode, nil
}

func (s *session) health(ctx context.Context) (string, error) {
	var h struct{ Status string }
	if _, err := s.api(ctx, http.MethodGet, "/api/health", nil, []int{200}, &h); err != nil {
		return "", err
	}
	if h.Status != "ok" {
		return "", fmt.Errorf("status %q", h.Status)
	}
	return "", nil
}

func (s *session) search(ctx context.Context) (string, error) {
	var page struct {
		Total   int
		Results []struct{ Name string }
	}
	if _, err := s.api(ctx, http.MethodGet, "/api/search?"+url.Values{"q": {s.cfg.Query}, "limit": {"5"}}.Encode(), nil, []int{200}, &page); err != nil {
		return "", err
	}
	if len(page.Results) == 0 {
		return "", fmt.Errorf("no results for %q", s.cfg.Query)
	}
	return fmt.Sprintf("%q: %d results, first %s", s.cfg.Query, page.Total, page.Results[0].Name), nil
}

func (s *session) details(ctx context.Context) (string, error) {
	var d struct {
		Tags []struct {
			Name      string
			Platforms []struct{ OS, Architecture string }
		}
	}
	if _, err := s.api(ctx, http.MethodGet, "/api/image-details?"+url.Values{"image": {s.cfg.Details}}.Encode(), nil, []int{200}, &d); err != nil {
		return "", err
	}
	if len(d.Tags) == 0 {
		return "", fmt.Errorf("%s has no tags", s.cfg.Details)
	}
	return fmt.Sprintf("%s: %d tags", s.cfg.Details, len(d.Tags)), nil
}

type job struct {
	ID         string
	Status     string
	TotalBytes int64 `json:"total_bytes"`
	Digest     string
	URL        string
	Error      *struct{ Code, Message string }
}

// download asks for the image, polls its job until ready, then fetches the
// link and checks the tar: its size, every blob against its digest, and
// manifest.json naming the manifest's config and layers.
func (s *session) download(ctx context.Context) (string, error) {
	var j job
	if _, err := s.api(ctx, http.MethodPost, "/api/downloads", map[string]string{"image": s.cfg.Image, "platform": s.cfg.Platform}, []int{200, 202}, &j); err != nil {
		return "", err
	}
	started := time.Now()
	deadline := time.Now().Add(s.cfg.Timeout)
	for j.Status != "ready" {
		if j.Status == "failed" {
			msg := "no error given"
			if j.Error != nil {
				msg = j.Error.Code + ": " + j.Error.Message
			}
			return "", fmt.Errorf("job %s failed: %s", j.ID, msg)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("job %s still %s after %s", j.ID, j.Status, s.cfg.Timeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second):
		}
		if _, err := s.api(ctx, http.MethodGet, "/api/downloads/"+url.PathEscape(j.ID), nil, []int{200}, &j); err != nil {
			return "", err
		}
	}
	ready := time.Since(started)
	link, err := url.Parse(j.URL)
	if err != nil || j.URL == "" {
		return "", fmt.Errorf("job %s is ready without a link (%q)", j.ID, j.URL)
	}
	base, _ := url.Parse(s.cfg.Site)
	link = base.ResolveReference(link) // a local server's links are on its own address
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, link.String(), nil)
	if err != nil {
		return "", err
	}
	s.report.Requests++
	res, err := s.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetching the link: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetching the link: status %d", res.StatusCode)
	}
	counted := &countingReader{r: res.Body}
	blobs, err := checkTar(counted, j.Digest)
	s.report.TarBytes += counted.n
	if err != nil {
		return "", err
	}
	if counted.n != j.TotalBytes {
		return "", fmt.Errorf("the tar has %d bytes, the job said %d", counted.n, j.TotalBytes)
	}
	return fmt.Sprintf("%s (%s): ready in %s, %d bytes, %d blobs verified", s.cfg.Image, s.cfg.Platform, ready.Round(100*time.Millisecond), counted.n, blobs), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// checkTar reads a tar stream once: every blobs/sha256/<hex> entry must
// hash to its name; manifest.json must name a config and layers that are
// all in the tar, and the image manifest (the job's digest) must be there.
func checkTar(r io.Reader, manifestDigest string) (int, error) {
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	files := map[string]bool{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("reading the tar: %w", err)
		}
		files[h.Name] = true
		switch {
		case strings.HasPrefix(h.Name, "blobs/sha256/"):
			want := path.Base(h.Name)
			sum := sha256.New()
			if _, err := io.Copy(sum, tr); err != nil {
				return 0, fmt.Errorf("reading %s: %w", h.Name, err)
			}
			if got := hex.EncodeToString(sum.Sum(nil)); got != want {
				return 0, fmt.Errorf("%s hashes to sha256:%s", h.Name, got)
			}
			seen[h.Name] = true
		case h.Name == "manifest.json":
			if err := json.NewDecoder(io.LimitReader(tr, 4<<20)).Decode(&manifest); err != nil {
				return 0, fmt.Errorf("manifest.json: %w", err)
			}
		}
	}
	for _, f := range []string{"oci-layout", "index.json", "manifest.json"} {
		if !files[f] {
			return 0, fmt.Errorf("no %s in the tar", f)
		}
	}
	if len(manifest) != 1 || len(manifest[0].Layers) == 0 {
		return 0, fmt.Errorf("manifest.json lists %d images", len(manifest))
	}
	for _, name := range append([]string{manifest[0].Config}, manifest[0].Layers...) {
		if !seen[name] {
			return 0, fmt.Errorf("manifest.json names %s, which is not in the tar", name)
		}
	}
	if hexDigest, ok := strings.CutPrefix(manifestDigest, "sha256:"); !ok || !seen["blobs/sha256/"+hexDigest] {
		return 0, fmt.Errorf("the image manifest %s is not in the tar", manifestDigest)
	}
	return len(seen), nil
}
