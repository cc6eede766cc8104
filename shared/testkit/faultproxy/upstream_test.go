package faultproxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

const (
	testRepo         = "test/app"
	testTag          = "v1"
	manifestType     = "application/vnd.oci.image.manifest.v1+json"
	layerSize        = 1 << 20
	layerMediaType   = "application/vnd.oci.image.layer.v1.tar"
	configMediaType  = "application/vnd.oci.image.config.v1+json"
	registryAPIValue = "registry/2.0"
)

// testImage is what the fake upstream serves: one manifest, a config and a
// 1 MiB layer of pseudo-random bytes (the content need not be a real tar).
type testImage struct {
	manifest, config, layer                   []byte
	manifestDigest, configDigest, layerDigest string
}

func digestOf(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func newTestImage(t testing.TB) testImage {
	t.Helper()
	var img testImage
	img.layer = make([]byte, layerSize)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(img.layer)
	img.layerDigest = digestOf(img.layer)
	img.config = fmt.Appendf(nil, `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[%q]}}`, img.layerDigest)
	img.configDigest = digestOf(img.config)
	m, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     manifestType,
		"config":        map[string]any{"mediaType": configMediaType, "digest": img.configDigest, "size": len(img.config)},
		"layers":        []any{map[string]any{"mediaType": layerMediaType, "digest": img.layerDigest, "size": len(img.layer)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	img.manifest = m
	img.manifestDigest = digestOf(m)
	return img
}

// newUpstream is a tiny registry without auth serving img under testRepo.
func newUpstream(t testing.TB, img testImage) *httptest.Server {
	t.Helper()
	serve := func(w http.ResponseWriter, r *http.Request, contentType string, b []byte) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Docker-Content-Digest", digestOf(b))
		w.Header().Set("Etag", fmt.Sprintf("%q", digestOf(b)))
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/{$}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /v2/"+testRepo+"/manifests/{ref}", func(w http.ResponseWriter, r *http.Request) {
		if ref := r.PathValue("ref"); ref != testTag && ref != img.manifestDigest {
			writeError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown", nil)
			return
		}
		serve(w, r, manifestType, img.manifest)
	})
	mux.HandleFunc("GET /v2/"+testRepo+"/blobs/{digest}", func(w http.ResponseWriter, r *http.Request) {
		switch r.PathValue("digest") {
		case img.layerDigest:
			serve(w, r, "application/octet-stream", img.layer)
		case img.configDigest:
			serve(w, r, "application/octet-stream", img.config)
		default:
			writeError(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry", nil)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}
