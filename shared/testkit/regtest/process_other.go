//go:build !linux

package regtest

import "os/exec"

// dieWithParent has no portable equivalent of Linux's Pdeathsig: elsewhere the registry
// is stopped only by the test's cleanup.
func dieWithParent(*exec.Cmd) {}
