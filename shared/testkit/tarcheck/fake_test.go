package tarcheck

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// recorder is a testing.TB that records failures and skips instead of
// reporting them, so a test can assert that a check fails. Like the real
// one, Fatal and Skip end the goroutine: run checks through outcome.
type recorder struct {
	testing.TB // the real test: Cleanup, TempDir, Name, Setenv...
	mu         sync.Mutex
	failed     bool
	skipped    bool
	msgs       []string
}

func (r *recorder) Helper() {}

func (r *recorder) record(fail, skip bool, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = r.failed || fail
	r.skipped = r.skipped || skip
	r.msgs = append(r.msgs, msg)
}

func (r *recorder) Log(args ...any)                 { r.TB.Log(append([]any{"(recorded check) "}, args...)...) }
func (r *recorder) Logf(format string, args ...any) { r.TB.Logf("(recorded check) "+format, args...) }
func (r *recorder) Error(args ...any)               { r.record(true, false, fmt.Sprint(args...)) }
func (r *recorder) Errorf(f string, args ...any)    { r.record(true, false, fmt.Sprintf(f, args...)) }
func (r *recorder) Fail()                           { r.record(true, false, "Fail") }
func (r *recorder) FailNow()                        { r.record(true, false, "FailNow"); runtime.Goexit() }
func (r *recorder) Fatal(args ...any)               { r.Error(args...); runtime.Goexit() }
func (r *recorder) Fatalf(f string, args ...any)    { r.Errorf(f, args...); runtime.Goexit() }
func (r *recorder) Skip(args ...any)                { r.record(false, true, fmt.Sprint(args...)); runtime.Goexit() }
func (r *recorder) Skipf(f string, args ...any) {
	r.record(false, true, fmt.Sprintf(f, args...))
	runtime.Goexit()
}
func (r *recorder) SkipNow() { r.record(false, true, "SkipNow"); runtime.Goexit() }

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func (r *recorder) Skipped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.skipped
}

// outcome runs check with a recorder on its own goroutine and reports
// whether it failed or skipped, and what it said.
func outcome(t testing.TB, check func(tb testing.TB)) (failed, skipped bool, msg string) {
	t.Helper()
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r)
	}()
	<-done
	return r.failed, r.skipped, strings.Join(r.msgs, "\n")
}

// mustFail fails the test unless check fails (a skip is not a failure), and
// returns the failure message.
func mustFail(t testing.TB, what string, check func(tb testing.TB)) string {
	t.Helper()
	failed, skipped, msg := outcome(t, check)
	switch {
	case skipped && !failed:
		t.Fatalf("%s skipped instead of failing: %s", what, msg)
	case !failed:
		t.Fatalf("%s passed; it must fail", what)
	}
	return msg
}

var _ testing.TB = (*recorder)(nil)
