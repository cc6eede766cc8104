//go:build !linux

package daemon

import "os/exec"

// dieWithParent has no portable equivalent of Linux's Pdeathsig: elsewhere
// the server is stopped only by the test's cleanup.
func dieWithParent(*exec.Cmd, bool) {}

// killGroup kills only the server itself elsewhere.
func killGroup(*exec.Cmd) {}

// Descendants finds no processes elsewhere: it reads Linux's /proc.
func Descendants(int) []int { return nil }
