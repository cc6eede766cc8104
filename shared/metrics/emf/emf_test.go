package emf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/metrics"
)

// units are the CloudWatch units the EMF specification allows.
var units = []string{"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
	"Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second", "Kilobytes/Second",
	"Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
	"Gigabits/Second", "Terabits/Second", "Count/Second", "None"}

// checkLine holds one line to the Embedded Metric Format specification
// (the CloudWatch user guide's "Specification: Embedded metric format"):
// the root "_aws" member with an integer millisecond Timestamp and a
// non-empty CloudWatchMetrics list; each directive with a Namespace,
// Dimensions (sets of at most 30 names, each a top-level string member)
// and at most 100 Metrics (a Name and an allowed Unit), each a top-level
// number or array of at most 100 numbers; the event under 1 MB.
func checkLine(t *testing.T, line []byte) map[string]any {
	t.Helper()
	bad := func(format string, args ...any) { t.Helper(); t.Fatalf("%s: %s", fmt.Sprintf(format, args...), line) }
	if len(line) >= 1<<20 {
		bad("a line of %d bytes", len(line))
	}
	var root map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		bad("not a JSON object: %v", err)
	}
	aws, ok := root["_aws"].(map[string]any)
	if !ok {
		bad("no _aws object")
	}
	ts, ok := aws["Timestamp"].(json.Number)
	if _, err := ts.Int64(); !ok || err != nil {
		bad("Timestamp %v is not an integer", aws["Timestamp"])
	}
	directives, ok := aws["CloudWatchMetrics"].([]any)
	if !ok || len(directives) == 0 {
		bad("no CloudWatchMetrics directives")
	}
	for _, dv := range directives {
		d, ok := dv.(map[string]any)
		if !ok {
			bad("a directive is not an object")
		}
		ns, ok := d["Namespace"].(string)
		if !ok || ns == "" || len(ns) > 1024 || strings.TrimSpace(ns) != ns {
			bad("Namespace %v", d["Namespace"])
		}
		sets, ok := d["Dimensions"].([]any)
		if !ok {
			bad("Dimensions is not a list")
		}
		for _, sv := range sets {
			set, ok := sv.([]any)
			if !ok || len(set) > 30 {
				bad("a dimension set %v", sv)
			}
			for _, nv := range set {
				name, _ := nv.(string)
				value, ok := root[name].(string)
				if name == "" || !ok || value == "" || len(value) > 1024 {
					bad("dimension %v has no top-level string value", nv)
				}
			}
		}
		ms, ok := d["Metrics"].([]any)
		if !ok || len(ms) == 0 || len(ms) > 100 {
			bad("Metrics %v", d["Metrics"])
		}
		for _, mv := range ms {
			m, _ := mv.(map[string]any)
			name, _ := m["Name"].(string)
			if name == "" || len(name) > 1024 {
				bad("metric name %v", m["Name"])
			}
			if u, ok := m["Unit"].(string); ok && !slices.Contains(units, u) {
				bad("unit %q is not a CloudWatch unit", u)
			}
			switch v := root[name].(type) {
			case json.Number:
			case []any:
				if len(v) == 0 || len(v) > 100 {
					bad("metric %s has %d values", name, len(v))
				}
				for _, x := range v {
					if _, ok := x.(json.Number); !ok {
						bad("metric %s has a value %v that is not a number", name, x)
					}
				}
			default:
				bad("metric %s has no top-level number", name)
			}
		}
	}
	return root
}

// TestLinesFollowTheSpecification: every metric tarport defines, recorded
// and flushed, gives lines that hold to the specification, with the sums
// and observations recorded, and the configured log level.
func TestLinesFollowTheSpecification(t *testing.T) {
	t.Parallel()
	s := New("warn")
	m := metrics.New(s)
	m.Request("GET /api/search", 200)
	m.Request("GET /api/search", 200)
	m.Request("POST /api/downloads", 429)
	m.JobCreated()
	m.JobFinished("ready", "", 1500*time.Millisecond)
	for i := range 150 { // more than one line's 100 values
		m.JobFinished("failed", "upstream_error", time.Duration(i)*time.Second)
	}
	m.RegistryBytes(1 << 20)
	m.RegistryBytes(1 << 20)
	m.CacheHitBytes(5)
	m.RegistryRetry()
	m.DiscoveryCache("hit")
	m.ChargedBytes(42)
	m.Refused("quota_exceeded")
	var buf bytes.Buffer
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	if err := s.Flush(&buf, now); err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	seen := map[string]bool{}
	for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
		root := checkLine(t, line)
		if root["level"] != "WARN" {
			t.Errorf("line level %v, want WARN (the configured level, so Lambda's filter keeps it)", root["level"])
		}
		if ts, _ := root["timestamp"].(string); ts != "2026-12-07T12:00:00Z" {
			t.Errorf("timestamp %q: Lambda's filter needs RFC 3339, else it counts the line as INFO", ts)
		}
		if ts, _ := root["_aws"].(map[string]any)["Timestamp"].(json.Number).Int64(); ts != now.UnixMilli() {
			t.Errorf("Timestamp %d, want %d", ts, now.UnixMilli())
		}
		d := root["_aws"].(map[string]any)["CloudWatchMetrics"].([]any)[0].(map[string]any)
		if sets := d["Dimensions"].([]any); name(d) == "JobsFinished" && (len(sets) != 2 || fmt.Sprint(sets[1]) != "[status]") {
			t.Errorf("JobsFinished dimension sets %v, want the rollup by status too (the failure-ratio alarm)", sets)
		}
		name := name(d)
		seen[name] = true
		key := name
		for _, dim := range d["Dimensions"].([]any)[0].([]any) {
			key += " " + root[dim.(string)].(string)
		}
		switch v := root[name].(type) {
		case json.Number:
			f, _ := v.Float64()
			got[key] += f
		case []any:
			got[key+" n"] += float64(len(v))
		}
	}
	for key, want := range map[string]float64{
		"Requests GET /api/search 2xx":       2,
		"Requests POST /api/downloads 4xx":   1,
		"JobsCreated":                        1,
		"JobsFinished ready none":            1,
		"JobsFinished failed upstream_error": 150,
		"JobDuration failed n":               150,
		"JobDuration ready n":                1,
		"RegistryBytes":                      2 << 20,
		"CacheHitBytes":                      5,
		"RegistryRetries":                    1,
		"DiscoveryCache hit":                 1,
		"ChargedBytes":                       42,
		"Refusals quota_exceeded":            1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v (all: %v)", key, got[key], want, got)
		}
	}
	for _, d := range metrics.All {
		if !seen[d.EMF] {
			t.Errorf("metric %s was recorded but not written", d.EMF)
		}
	}
	// Flushed is forgotten: the next invocation starts from nothing.
	buf.Reset()
	if err := s.Flush(&buf, now); err != nil || buf.Len() != 0 {
		t.Fatalf("a second flush wrote %q (%v)", buf.String(), err)
	}
}

// TestNilMetrics: code that records into no sink does nothing.
func TestNilMetrics(t *testing.T) {
	t.Parallel()
	var m *metrics.Metrics
	m.Request("x", 200)
	m.JobFinished("ready", "", time.Second)
	metrics.New(nil).JobCreated()
}

func name(directive map[string]any) string {
	return directive["Metrics"].([]any)[0].(map[string]any)["Name"].(string)
}
