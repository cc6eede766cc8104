// Package compose reads the images out of a Compose file, for a bundle:
// every service's image, by the Compose specification's own rules
// (interpolation with defaults, anchors and merge keys, extends within
// the file, profiles), through compose-go, the specification's reference
// implementation. The file comes from a client: it may name no other file
// (extends.file and include are refused, env_file and label_file are not
// read: nothing of the server's disk) and no variable of the server's
// environment. A bundle has one platform: a service's platform: decides
// it when the request names none, and refuses a request for another
// (Platform).
package compose

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"

	"github.com/tarport/tarport/shared/tarport"
)

// Service is one service of a Compose file: the image it runs, or why a
// bundle leaves it out.
type Service struct {
	Name  string `json:"service"`
	Image string `json:"image,omitempty"`
	// Platform is the service's platform: in its canonical spelling
	// (linux/arm/v7), empty when the file gives none.
	Platform string `json:"platform,omitempty"`
	// Skipped says why the service has no image to download: it is built
	// from source (build:), as `docker compose pull --ignore-buildable`
	// leaves it to the machine that runs it.
	Skipped string `json:"skipped,omitempty"`
}

// Parse reads the services of a Compose file, in name order. A file that
// does not parse, or a service that has neither an image nor a build, is
// a CodeInvalid error that says which service.
func Parse(ctx context.Context, yaml []byte) ([]Service, error) {
	if len(strings.TrimSpace(string(yaml))) == 0 {
		return nil, tarport.Errorf(tarport.CodeInvalid, "the compose file is empty")
	}
	if err := refuseInclude(yaml); err != nil {
		return nil, err
	}
	project, err := loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  "/",
		ConfigFiles: []types.ConfigFile{{Filename: "compose.yaml", Content: yaml}},
		Environment: types.Mapping{}, // no variable of the server's own
	}, func(o *loader.Options) {
		o.SetProjectName("bundle", true)
		o.ResolvePaths = false
		o.SkipResolveEnvironment = true // env_file would read the server's disk
		o.SkipResolveLabels = true      // label_file likewise
		// include reads files (and an include's env_file and .env) even
		// with no path to include: refused above, and never applied.
		o.SkipInclude = true
		// Tried first, it takes every path: extends.file and include fail
		// with this error instead of reaching the local file loader.
		o.ResourceLoaders = []loader.ResourceLoader{noFiles{}}
	})
	if err != nil {
		return nil, tarport.Wrap(err, tarport.CodeInvalid, "the compose file cannot be read: %s", message(err))
	}
	var out []Service
	for name, svc := range project.AllServices() { // with those of inactive profiles
		s, err := serviceOf(name, svc)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Service) int { return strings.Compare(a.Name, b.Name) })
	for _, s := range out {
		if s.Image == "" && s.Skipped == "" {
			return nil, tarport.Errorf(tarport.CodeInvalid, "service %q has neither an image nor a build", s.Name)
		}
	}
	return out, nil
}

// serviceOf is what a bundle takes of one service: its image, unless it
// is built, and its platform. Services of every profile count: the machine
// that cannot pull may need any of them.
func serviceOf(name string, svc types.ServiceConfig) (Service, error) {
	s := Service{Name: name, Image: strings.TrimSpace(svc.Image)}
	if svc.Build != nil {
		s.Skipped = "built from source (build:)"
		if s.Image != "" {
			s.Skipped += "; its image " + s.Image + " is the build's name"
		}
		s.Image = ""
		return s, nil // what it is built for is the building machine's business
	}
	if p := strings.TrimSpace(svc.Platform); p != "" {
		parsed, err := tarport.ParsePlatform(p)
		if err != nil {
			return Service{}, tarport.Wrap(err, tarport.CodeInvalidPlatform, "service %q: %s", name, tarport.ErrorMessage(err))
		}
		s.Platform = parsed.String()
	}
	return s, nil
}

// Platform is the one platform a bundle of the services is for. asked is
// the request's (empty: none named). Services that name a platform must
// all name the same one, and the asked one if any: a tar holds one
// platform, and an image for another than its service runs on would not
// start there (docker compose would try to pull the right one, on a
// machine that cannot). With none asked, the services' platform is the
// bundle's, or "" (the default) when no service names one. A conflict is
// a CodeInvalid error naming the services.
func Platform(services []Service, asked string) (string, error) {
	want := ""
	if strings.TrimSpace(asked) != "" {
		p, err := tarport.ParsePlatform(asked)
		if err != nil {
			return "", err
		}
		want = p.String()
	}
	byPlatform := map[string][]string{}
	var named []string // platforms in service order
	for _, s := range services {
		if s.Image == "" || s.Platform == "" {
			continue
		}
		if byPlatform[s.Platform] == nil {
			named = append(named, s.Platform)
		}
		byPlatform[s.Platform] = append(byPlatform[s.Platform], s.Name)
	}
	var conflict []string // "linux/arm64 for "db", "x"", for each platform other than the asked one
	for _, p := range named {
		if p != want {
			conflict = append(conflict, fmt.Sprintf("%s for %s", p, strings.Join(quoted(byPlatform[p]), ", ")))
		}
	}
	switch {
	case want != "" && len(conflict) > 0:
		return "", tarport.Errorf(tarport.CodeInvalid, "the bundle is for %s, but the compose file's platform: says %s: ask for that platform, or download those services separately", want, strings.Join(conflict, "; "))
	case want != "":
		return want, nil
	case len(named) > 1:
		return "", tarport.Errorf(tarport.CodeInvalid, "the compose file's services name different platforms (%s); one tar holds one platform: download them separately", strings.Join(conflict, "; "))
	case len(named) == 1:
		return named[0], nil
	}
	return "", nil
}

func quoted(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = fmt.Sprintf("%q", n)
	}
	return out
}

// Images returns the images a bundle of the services downloads, each once
// however it is written (nginx, library/nginx:latest and
// docker.io/library/nginx are one), in service order. An image that is not
// a valid reference is a CodeInvalid error naming its service; a file with
// no image to download at all is one naming the services it skipped.
func Images(services []Service) ([]string, error) {
	var out, skipped []string
	seen := map[string]bool{}
	for _, s := range services {
		if s.Image == "" {
			skipped = append(skipped, s.Name)
			continue
		}
		r, err := tarport.ParseReference(s.Image)
		if err != nil {
			return nil, tarport.Wrap(err, tarport.CodeInvalid, "service %q: %s", s.Name, tarport.ErrorMessage(err))
		}
		if !seen[r.CommonName()] {
			seen[r.CommonName()] = true
			out = append(out, s.Image)
		}
	}
	if len(out) == 0 {
		return nil, tarport.Errorf(tarport.CodeInvalid, "the compose file has no image to download: services %s are built from source", strings.Join(skipped, ", "))
	}
	return out, nil
}

// refuseInclude refuses a file with a top-level include: its entries name
// files of the machine that reads them. The YAML is read as nodes, so
// aliases are not expanded here.
func refuseInclude(b []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return tarport.Wrap(err, tarport.CodeInvalid, "the compose file cannot be read: %s", message(err))
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil // compose-go says what is wrong with it
	}
	top := doc.Content[0].Content
	for i := 0; i+1 < len(top); i += 2 {
		if top[i].Value == "include" {
			return tarport.Errorf(tarport.CodeInvalid, "the compose file includes other files (include:), which a file sent here cannot: paste the included services into it")
		}
	}
	return nil
}

// noFiles refuses every file a Compose file names.
type noFiles struct{}

func (noFiles) Accept(string) bool { return true }
func (noFiles) Load(_ context.Context, path string) (string, error) {
	return "", fmt.Errorf("%q: a compose file sent here cannot refer to other files", path)
}
func (noFiles) Dir(string) string { return "/" }

// message is compose-go's error, first line only.
func message(err error) string {
	m, _, _ := strings.Cut(err.Error(), "\n")
	return m
}

// Bundle is what a bundle of a Compose file holds: its services, the
// images to download and the one platform (Images and Platform).
type Bundle struct {
	Services []Service
	Images   []string
	Platform string // "" when neither the file nor the request names one
}

// Read parses a Compose file into the bundle it makes for a request that
// asked for platform asked ("" for none), with Parse's, Images' and
// Platform's errors.
func Read(ctx context.Context, yaml []byte, asked string) (Bundle, error) {
	services, err := Parse(ctx, yaml)
	if err != nil {
		return Bundle{}, err
	}
	images, err := Images(services)
	if err != nil {
		return Bundle{}, err
	}
	platform, err := Platform(services, asked)
	if err != nil {
		return Bundle{}, err
	}
	return Bundle{Services: services, Images: images, Platform: platform}, nil
}
