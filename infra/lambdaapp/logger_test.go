package lambdaapp

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

// TestLoggerLinesLambdaFilters: every line has what Lambda's log-level
// filter reads: "level" with Lambda's level names, and "timestamp" in RFC
// 3339 (without it, Lambda counts the line as INFO, and a WARN filter drops
// errors).
func TestLoggerLinesLambdaFilters(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelDebug)
	log.Debug("d")
	log.Info("i", "time", "an attribute named time stays")
	log.Warn("w")
	log.Error("e")
	want := []string{"DEBUG", "INFO", "WARN", "ERROR"}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != len(want) {
		t.Fatalf("%d lines: %s", len(lines), buf.String())
	}
	for i, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("not JSON: %s", line)
		}
		ts, _ := rec["timestamp"].(string)
		if _, err := time.Parse(time.RFC3339, ts); err != nil {
			t.Errorf("timestamp %q is not RFC 3339: %s", ts, line)
		}
		if rec["level"] != want[i] {
			t.Errorf("level %v, want %s", rec["level"], want[i])
		}
		if i == 1 && rec["time"] != "an attribute named time stays" {
			t.Errorf("a record attribute was renamed: %s", line)
		}
	}
}

// TestLoggerCarriesTheInvocation: lines written during an invocation name
// it; lines outside one do not.
func TestLoggerCarriesTheInvocation(t *testing.T) {
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelInfo).With("job", "j1")
	invocation.Store("req-123")
	log.Info("inside")
	invocation.Store("")
	log.Info("outside")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	var in, out map[string]any
	if len(lines) != 2 || json.Unmarshal(lines[0], &in) != nil || json.Unmarshal(lines[1], &out) != nil {
		t.Fatalf("lines: %s", buf.String())
	}
	if in["requestId"] != "req-123" || in["job"] != "j1" || out["requestId"] != nil {
		t.Fatalf("inside %v, outside %v", in, out)
	}
}
