package daemon

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// dieWithParent kills the server when the test binary dies without running
// its cleanups (a -timeout panic, a ^C), so no server outlives its test;
// ownGroup puts it in a process group of its own.
func dieWithParent(cmd *exec.Cmd, ownGroup bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: ownGroup}
}

// killGroup makes cancellation kill the server and every process below
// it. Children may sit in process groups of their own (the Lambda
// emulator starts the function's bootstrap with Setpgid), so the tree is
// found through /proc rather than by group.
func killGroup(cmd *exec.Cmd) {
	cmd.Cancel = func() error {
		pids := Descendants(cmd.Process.Pid)
		err := cmd.Process.Kill()
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return err
	}
}

// Descendants lists the processes below pid, each before its own children
// (a benchmark reads the Lambda emulator's function process through it).
func Descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name (field 2) may hold spaces; fields after its
		// closing parenthesis are "state ppid ...".
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}
