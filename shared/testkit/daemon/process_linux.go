package daemon

import (
	"os/exec"
	"syscall"
)

// dieWithParent kills the server when the test binary dies without running
// its cleanups (a -timeout panic, a ^C), so no server outlives its test.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
