package main

import (
	"archive/tar"
	"bytes"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/infra/local/app"
	"github.com/tarport/tarport/shared/settings"
	"github.com/tarport/tarport/shared/testkit/fakehub"
	"github.com/tarport/tarport/shared/testkit/regtest"
)

// site starts the local server on a fake Docker Hub (its fixtures) and a
// registry standing in for docker.io that holds library/hello-world, with
// more settings given as name, value pairs.
func site(t *testing.T, more ...string) string {
	t.Helper()
	reg := regtest.Start(t)
	regtest.PushImage(t, reg, "library/hello-world", "latest", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 12 << 10, Random: true, Seed: "smoke"}}})
	hub := fakehub.New(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"TARPORT_PUBLIC_URL":          "http://" + ln.Addr().String(),
		"TARPORT_DATA_DIR":            t.TempDir(),
		"TARPORT_WARM_EVERY":          "0",
		"TARPORT_HUB_API":             hub.URL,
		"TARPORT_DOCKERHUB_REGISTRY":  reg.URL(),
		"TARPORT_INSECURE_REGISTRIES": reg.Host,
	}
	for i := 0; i+1 < len(more); i += 2 {
		env[more[i]] = more[i+1]
	}
	s, err := settings.Parse(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(t.Context(), s, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Listener.Close()
	srv.Listener, srv.Config = ln, a.Server()
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		a.Close()
	})
	return srv.URL
}

func config(siteURL, token string, log *bytes.Buffer) Config {
	cfg := Config{Site: siteURL, Token: token, Query: "nginx", Details: "nginx", Image: "hello-world:latest",
		Platform: "linux/amd64", Timeout: time.Minute}
	if log != nil {
		cfg.Log = log
	}
	return cfg
}

// TestSmokeLocal: the operator's smoke run passes against the local server,
// with an access token, and reports its cost.
func TestSmokeLocal(t *testing.T) {
	t.Parallel()
	url := site(t, "TARPORT_ACCESS_TOKEN", "smoke-token-0123456789")
	var log bytes.Buffer
	rep, err := run(t.Context(), config(url, "smoke-token-0123456789", &log))
	if err != nil {
		t.Fatalf("smoke: %v\n%s", err, log.String())
	}
	if len(rep.Passed) != 4 || rep.Requests < 5 || rep.TarBytes < 12<<10 || rep.APIBytes == 0 {
		t.Fatalf("report %+v\n%s", rep, log.String())
	}
	for _, want := range []string{"ok   health", "ok   search", "ok   details", "ok   download", "blobs verified"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, log.String())
		}
	}
}

// TestSmokeFails: a wrong token fails the run at the first guarded call,
// with the server's reason.
func TestSmokeFails(t *testing.T) {
	t.Parallel()
	url := site(t, "TARPORT_ACCESS_TOKEN", "smoke-token-0123456789")
	_, err := run(t.Context(), config(url, "wrong", nil))
	if err == nil || !strings.Contains(err.Error(), "search") || !strings.Contains(err.Error(), "access_denied") {
		t.Fatalf("with a wrong token: %v", err)
	}
}

// TestCheckTarRefusesBadTars: the tar check catches a blob whose bytes do
// not match its name, a missing manifest.json and a layer it names but the
// tar lacks.
func TestCheckTarRefusesBadTars(t *testing.T) {
	t.Parallel()
	const layer = "hello"
	layerHex := "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824" // sha256("hello")
	build := func(files map[string]string) *bytes.Buffer {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for name, body := range files {
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body))})
			tw.Write([]byte(body))
		}
		tw.Close()
		return &buf
	}
	manifest := `[{"Config":"blobs/sha256/` + layerHex + `","Layers":["blobs/sha256/` + layerHex + `"]}]`
	good := map[string]string{"oci-layout": "{}", "index.json": "{}", "manifest.json": manifest, "blobs/sha256/" + layerHex: layer}
	if n, err := checkTar(build(good), "sha256:"+layerHex); err != nil || n != 1 {
		t.Fatalf("a good tar: %d, %v", n, err)
	}
	for name, files := range map[string]map[string]string{
		"a blob that does not match": {"oci-layout": "{}", "index.json": "{}", "manifest.json": manifest, "blobs/sha256/" + layerHex: "hellO"},
		"no manifest.json":           {"oci-layout": "{}", "index.json": "{}", "blobs/sha256/" + layerHex: layer},
		"a named layer missing":      {"oci-layout": "{}", "index.json": "{}", "manifest.json": strings.Replace(manifest, `"Layers":["`, `"Layers":["blobs/sha256/00","`, 1), "blobs/sha256/" + layerHex: layer},
	} {
		if _, err := checkTar(build(files), "sha256:"+layerHex); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
