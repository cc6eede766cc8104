// Package emf is the Lambdas' metrics.Sink: it sums an invocation's events
// and writes them, when the invocation ends, as CloudWatch Embedded Metric
// Format lines on stdout, which CloudWatch Logs turns into metrics in the
// namespace tarport. No PutMetricData call (no latency, no extra grant).
//
// Format (the EMF specification): a JSON object whose "_aws" member has a
// millisecond Timestamp and CloudWatchMetrics directives, each naming a
// Namespace, Dimensions (lists of at most 30 member names) and Metrics
// (at most 100, each a Name and a Unit); every name a directive uses is a
// top-level member: a dimension's string value, a metric's number or array
// of at most 100 numbers. One line per metric and dimension values keeps
// each line small and independent.
//
// We write it ourselves: the AWS EMF library for Go is not an official
// one, and the format is a few dozen lines against a written specification
// (the tests check each line against it).
package emf

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tarport/tarport/shared/metrics"
)

// Namespace is where the metrics land in CloudWatch.
const Namespace = "tarport"

// maxValues is the spec's limit on a metric's values in one line.
const maxValues = 100

// Sink collects one invocation's events.
type Sink struct {
	mu     sync.Mutex
	series map[string]*series
	// level is the "level" of each line: Lambda's log filter (JSON log
	// format, ApplicationLogLevel) drops lines below its level, and a line
	// without one (or without an RFC 3339 "timestamp") counts as INFO. The
	// configured level always passes.
	level string
}

type series struct {
	def    metrics.Def
	labels []string
	sum    float64
	values []float64 // a histogram's observations
}

// New returns an empty sink whose lines carry level (INFO, WARN, ...).
func New(level string) *Sink {
	return &Sink{series: map[string]*series{}, level: strings.ToUpper(level)}
}

func (s *Sink) Add(d metrics.Def, v float64, labels ...string) {
	key := d.EMF + "\x00" + strings.Join(labels, "\x00")
	s.mu.Lock()
	defer s.mu.Unlock()
	ser := s.series[key]
	if ser == nil {
		ser = &series{def: d, labels: slices.Clone(labels)}
		s.series[key] = ser
	}
	if d.Kind == metrics.Histogram {
		ser.values = append(ser.values, v)
	} else {
		ser.sum += v
	}
}

// Flush writes what was collected as EMF lines stamped now, and forgets it.
func (s *Sink) Flush(w io.Writer, now time.Time) error {
	s.mu.Lock()
	all := s.series
	s.series = map[string]*series{}
	s.mu.Unlock()
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ser := all[k]
		var chunks [][]float64
		if ser.def.Kind == metrics.Histogram {
			for vs := ser.values; len(vs) > 0; vs = vs[min(len(vs), maxValues):] {
				chunks = append(chunks, vs[:min(len(vs), maxValues)])
			}
		} else if ser.sum != 0 {
			chunks = [][]float64{{ser.sum}}
		}
		for _, values := range chunks {
			line, err := s.line(ser, values, now)
			if err != nil {
				return err
			}
			if _, err := w.Write(line); err != nil {
				return fmt.Errorf("writing metrics: %w", err)
			}
		}
	}
	return nil
}

func (s *Sink) line(ser *series, values []float64, now time.Time) ([]byte, error) {
	dims := ser.def.Labels
	if dims == nil {
		dims = []string{}
	}
	doc := map[string]any{
		"_aws": map[string]any{
			"Timestamp": now.UnixMilli(),
			"CloudWatchMetrics": []any{map[string]any{
				"Namespace":  Namespace,
				"Dimensions": dimensionSets(dims, ser.def.Rollup),
				"Metrics":    []any{map[string]string{"Name": ser.def.EMF, "Unit": ser.def.Unit}},
			}},
		},
		// Lambda's filter reads both; without a valid timestamp it counts
		// the line as INFO whatever its level says.
		"level":     s.level,
		"timestamp": now.UTC().Format(time.RFC3339Nano),
	}
	for i, name := range ser.def.Labels {
		if i < len(ser.labels) {
			doc[name] = ser.labels[i]
		}
	}
	if len(values) == 1 && ser.def.Kind != metrics.Histogram {
		doc[ser.def.EMF] = values[0]
	} else {
		doc[ser.def.EMF] = values
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding metrics: %w", err)
	}
	return append(b, '\n'), nil
}

func dimensionSets(dims, rollup []string) [][]string {
	if len(rollup) == 0 {
		return [][]string{dims}
	}
	return [][]string{dims, rollup}
}
