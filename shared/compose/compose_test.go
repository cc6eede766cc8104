package compose_test

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tarport/tarport/shared/compose"
	"github.com/tarport/tarport/shared/tarport"
)

func parse(t *testing.T, yaml string) ([]compose.Service, error) {
	t.Helper()
	return compose.Parse(context.Background(), []byte(yaml))
}

// TestImagesByComposeRules: every service's image, by the Compose rules;
// build-only services are skipped and named; the same image written three
// ways is one.
func TestImagesByComposeRules(t *testing.T) {
	t.Parallel()
	services, err := parse(t, `
x-cache: &cache
  image: redis:${REDIS_TAG:-7.2}
services:
  web:
    build: .
  api:
    build: ./api
    image: myorg/api:dev
  a: {image: nginx}
  b: {image: "library/nginx:latest"}
  c: {image: docker.io/library/nginx}
  cache:
    <<: *cache
  worker:
    extends: {service: cache}
  db:
    image: postgres:16
    profiles: [debug]
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []compose.Service{
		{Name: "a", Image: "nginx"},
		{Name: "api", Skipped: "built from source (build:); its image myorg/api:dev is the build's name"},
		{Name: "b", Image: "library/nginx:latest"},
		{Name: "c", Image: "docker.io/library/nginx"},
		{Name: "cache", Image: "redis:7.2"},
		{Name: "db", Image: "postgres:16"},
		{Name: "web", Skipped: "built from source (build:)"},
		{Name: "worker", Image: "redis:7.2"},
	}
	if !reflect.DeepEqual(services, want) {
		t.Fatalf("services\n got %+v\nwant %+v", services, want)
	}
	images, err := compose.Images(services)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"nginx", "redis:7.2", "postgres:16"}; !reflect.DeepEqual(images, want) {
		t.Fatalf("images %v, want %v", images, want)
	}
}

// TestRefused: what cannot be a bundle is a 400 that says why, and which
// service.
func TestRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"empty", "  \n", "empty"},
		{"not yaml", "services: [\n", "cannot be read"},
		{"no image, no build", "services:\n  web:\n    ports: [\"80:80\"]\n", `"web"`},
		{"required variable", "services:\n  web:\n    image: app:${TAG:?set TAG}\n", "TAG"},
		{"bad reference", "services:\n  web:\n    image: \"UPPER/Case:1\"\n", `"web"`},
		{"only builds", "services:\n  web:\n    build: .\n  api:\n    build: ./api\n", "api, web"},
		{"services not a map", "services: 3\n", "cannot be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			services, err := parse(t, tc.yaml)
			if err == nil {
				_, err = compose.Images(services)
			}
			if tarport.ErrorCode(err) != tarport.CodeInvalid || !strings.Contains(tarport.ErrorMessage(err), tc.want) {
				t.Fatalf("error %v (code %s), want invalid naming %q", err, tarport.ErrorCode(err), tc.want)
			}
		})
	}
}

// TestNoServerFiles: a client's compose file reads nothing from the
// server's disk or environment: extends.file and include are refused,
// env_file is never opened, a variable of the server's environment is
// unset.
func TestNoServerFiles(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret.yaml")
	if err := os.WriteFile(secret, []byte("services:\n  s:\n    image: leaked/secret:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, yaml := range []string{
		"services:\n  web:\n    extends: {file: " + secret + ", service: s}\n",
		"include:\n  - " + secret + "\nservices:\n  web:\n    image: nginx\n",
		// No path to include, yet compose-go reads the entry's env_file.
		"include:\n  - path: []\n    env_file: " + secret + "\nservices:\n  web:\n    image: nginx\n",
		"include:\n  - path: []\n    env_file: /proc/self/mounts\nservices:\n  web:\n    image: nginx\n",
	} {
		services, err := parse(t, yaml)
		if err == nil || strings.Contains(err.Error(), "leaked") || strings.Contains(err.Error(), "proc") && strings.Contains(err.Error(), "rw") {
			t.Fatalf("%q: %+v, %v; want refused, nothing read", yaml, services, err)
		}
		if tarport.ErrorCode(err) != tarport.CodeInvalid {
			t.Fatalf("%q: code %s", yaml, tarport.ErrorCode(err))
		}
	}
	t.Setenv("TARPORT_TEST_SECRET", "leaked")
	services, err := parse(t, "services:\n  web:\n    image: nginx:${TARPORT_TEST_SECRET:-safe}\n    env_file: "+secret+"\n")
	if err != nil || len(services) != 1 || services[0].Image != "nginx:safe" {
		t.Fatalf("%+v, %v; want nginx:safe", services, err)
	}
}

// TestAliasBomb: a file of nested aliases that would expand to billions
// of nodes is refused, quickly.
func TestAliasBomb(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("x-a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n")
	for i, prev := range "abcdefgh" {
		name := string("bcdefghi"[i])
		b.WriteString("x-" + name + ": &" + name + " [*" + string(prev) + ",*" + string(prev) + ",*" + string(prev) + ",*" + string(prev) + ",*" + string(prev) + ",*" + string(prev) + ",*" + string(prev) + ",*" + string(prev) + ",*" + string(prev) + "]\n")
	}
	b.WriteString("services:\n  web:\n    image: nginx\n    labels: *i\n")
	if _, err := parse(t, b.String()); err == nil {
		t.Fatal("an alias bomb parsed")
	}
}

// TestPlatform: a bundle has one platform. The services' platform: decides
// it when the request names none; a request for another, or services that
// name different ones, is a 400 naming the services; spellings of one
// platform are one (linux/arm64/v8 is linux/arm64), variants are not
// (linux/arm/v6 is not linux/arm/v7); a built service's platform is not
// the bundle's business.
func TestPlatform(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, yaml, asked string
		want              string // the bundle's platform; or
		refused           []string
	}{
		{name: "none named", yaml: "services:\n  a: {image: nginx}\n", want: ""},
		{name: "none named, one asked", yaml: "services:\n  a: {image: nginx}\n", asked: "linux/ARM64", want: "linux/arm64"},
		{name: "the file decides", yaml: "services:\n  a: {image: nginx, platform: linux/arm64}\n  b: {image: redis}\n", want: "linux/arm64"},
		{name: "spellings agree", yaml: "services:\n  a: {image: nginx, platform: linux/arm64/v8}\n  b: {image: redis, platform: linux/aarch64}\n", asked: "linux/arm64", want: "linux/arm64"},
		{name: "arm defaults to v7", yaml: "services:\n  a: {image: nginx, platform: linux/arm}\n", asked: "linux/arm/v7", want: "linux/arm/v7"},
		{name: "built service ignored", yaml: "services:\n  a: {image: nginx, platform: linux/arm64}\n  b: {build: ., platform: linux/amd64}\n", want: "linux/arm64"},
		{name: "variant differs", yaml: "services:\n  a: {image: nginx, platform: linux/arm/v6}\n", asked: "linux/arm/v7", refused: []string{"linux/arm/v7", `linux/arm/v6 for "a"`}},
		{name: "asked differs", yaml: "services:\n  a: {image: nginx, platform: linux/arm64}\n  b: {image: redis, platform: linux/arm64}\n  c: {image: x}\n", asked: "linux/amd64", refused: []string{`linux/arm64 for "a", "b"`}},
		{name: "services differ", yaml: "services:\n  a: {image: nginx, platform: linux/arm64}\n  b: {image: redis, platform: linux/amd64}\n", refused: []string{`linux/arm64 for "a"`, `linux/amd64 for "b"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			services, err := parse(t, tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			got, err := compose.Platform(services, tc.asked)
			if tc.refused == nil {
				if err != nil || got != tc.want {
					t.Fatalf("platform %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			if tarport.ErrorCode(err) != tarport.CodeInvalid {
				t.Fatalf("platform %q, %v; want refused", got, err)
			}
			for _, w := range tc.refused {
				if !strings.Contains(tarport.ErrorMessage(err), w) {
					t.Errorf("message %q does not say %q", tarport.ErrorMessage(err), w)
				}
			}
		})
	}
	t.Run("not a platform", func(t *testing.T) {
		_, err := parse(t, "services:\n  web: {image: nginx, platform: linux}\n")
		if tarport.ErrorCode(err) != tarport.CodeInvalidPlatform || !strings.Contains(tarport.ErrorMessage(err), `"web"`) {
			t.Fatalf("%v (code %s); want invalid_platform naming the service", err, tarport.ErrorCode(err))
		}
	})
}
