package regtest

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills the registry when the test process dies without running its
// cleanups (a go test -timeout panic, a ^C), so no registry outlives its test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
