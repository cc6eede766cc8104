package depcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/tarport/tarport/shared/testkit/daemon"
)

const module = "github.com/tarport/tarport/"

// pkg is a package of the module and what it imports (not its tests').
type pkg struct {
	ImportPath string
	Imports    []string
}

// adapters talk to one outside system each.
var adapters = []string{
	"shared/boltdb", "shared/dirstore", "shared/dockerhub", "shared/dynamo", "shared/registry",
	"shared/s3store", "shared/sqsqueue", "shared/workpool", "shared/netguard", "shared/lambdahttp",
}

// adapterEdges are the adapter-to-adapter imports allowed.
var adapterEdges = []string{"shared/registry -> shared/netguard"}

// onlyImports are packages held to a short list: the standard library and
// these prefixes.
var onlyImports = map[string][]string{
	// The domain: regclient's leaf types and the digest type they use.
	"shared/tarport": {"github.com/regclient/regclient/types/", "github.com/opencontainers/go-digest"},
	// The pure planner.
	"shared/tarplan": {"github.com/opencontainers/go-digest"},
}

func standard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// check returns every broken rule.
func check(pkgs []pkg) []string {
	var problems []string
	for _, p := range pkgs {
		name := strings.TrimPrefix(p.ImportPath, module)
		for _, imp := range p.Imports {
			dep, ours := strings.CutPrefix(imp, module)
			if allowed, ok := onlyImports[name]; ok && !standard(imp) && !slices.ContainsFunc(allowed, func(a string) bool { return strings.HasPrefix(imp, a) }) {
				problems = append(problems, fmt.Sprintf("%s imports %s: it may import only the standard library and %v", name, imp, allowed))
			}
			if !ours {
				continue
			}
			if slices.Contains(adapters, name) && slices.Contains(adapters, dep) && !slices.Contains(adapterEdges, name+" -> "+dep) {
				problems = append(problems, fmt.Sprintf("adapter %s imports adapter %s: adapters meet only in the wiring (infra/)", name, dep))
			}
			if strings.HasPrefix(name, "shared/") && !strings.HasPrefix(name, "shared/testkit/") && !strings.HasSuffix(name, "test") &&
				(strings.HasPrefix(dep, "shared/testkit/") || strings.HasPrefix(dep, "infra/") || strings.HasPrefix(dep, "functions/")) {
				problems = append(problems, fmt.Sprintf("%s imports %s: production code imports no test kit and no wiring", name, dep))
			}
		}
	}
	return problems
}

// TestImportRules: the module's packages keep the rules.
func TestImportRules(t *testing.T) {
	t.Parallel()
	root, err := daemon.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "go", "list", "-json=ImportPath,Imports", "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found %d packages", len(pkgs))
	}
	for _, p := range check(pkgs) {
		t.Error(p)
	}
}

// TestCheckCatchesForbiddenImports: each rule refuses an import that
// breaks it, so TestImportRules can fail.
func TestCheckCatchesForbiddenImports(t *testing.T) {
	t.Parallel()
	for _, bad := range []pkg{
		{ImportPath: module + "shared/tarport", Imports: []string{module + "shared/tarplan"}},
		{ImportPath: module + "shared/tarport", Imports: []string{"github.com/aws/aws-sdk-go-v2/aws"}},
		{ImportPath: module + "shared/tarplan", Imports: []string{"github.com/regclient/regclient/types/ref"}},
		{ImportPath: module + "shared/dynamo", Imports: []string{module + "shared/s3store"}},
		{ImportPath: module + "shared/netguard", Imports: []string{module + "shared/registry"}},
		{ImportPath: module + "shared/download", Imports: []string{module + "shared/testkit/regtest"}},
		{ImportPath: module + "shared/httpapi", Imports: []string{module + "infra/local/app"}},
	} {
		if len(check([]pkg{bad})) == 0 {
			t.Errorf("%s importing %v passed", bad.ImportPath, bad.Imports)
		}
	}
	for _, good := range []pkg{
		{ImportPath: module + "shared/registry", Imports: []string{module + "shared/netguard", module + "shared/tarport"}},
		{ImportPath: module + "shared/tarport", Imports: []string{"fmt", "github.com/regclient/regclient/types/ref", "github.com/opencontainers/go-digest"}},
		{ImportPath: module + "shared/download/jobstest", Imports: []string{module + "shared/download"}},
	} {
		if p := check([]pkg{good}); len(p) > 0 {
			t.Errorf("an allowed import refused: %v", p)
		}
	}
}
