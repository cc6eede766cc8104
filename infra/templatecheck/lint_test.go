package templatecheck

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tarport/tarport/shared/testkit/daemon"
)

// TestCfnLint: cfn-lint (which runs the SAM transform first) finds nothing
// in template.yaml: no error, no warning, no informational finding.
func TestCfnLint(t *testing.T) {
	t.Parallel()
	lint := daemon.Binary(t, "cfn-lint")
	root, err := daemon.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), lint, "--format", "parseable", "--", filepath.Join(root, "template.yaml"))
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("cfn-lint: %v\n%s", err, out)
	}
}
