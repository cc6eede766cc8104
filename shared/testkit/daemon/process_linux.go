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

// killGroup puts the server in a process group of its own and makes
// cancellation kill the whole group.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr.Setpgid = true
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
