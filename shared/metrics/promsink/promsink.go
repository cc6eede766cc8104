// Package promsink is the local server's metrics.Sink: Prometheus
// collectors in a registry of their own, served in the text format by
// Handler. We use the Prometheus Go client rather than writing the format
// ourselves: it is the reference implementation, and its registry checks
// names, labels and help text as Prometheus expects them.
package promsink

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tarport/tarport/shared/metrics"
)

// Sink holds one collector per metrics.Def.
type Sink struct {
	reg      *prometheus.Registry
	counters map[string]*prometheus.CounterVec
	hists    map[string]*prometheus.HistogramVec
}

// New registers every metric of metrics.All, and the Go runtime's and the
// process's own collectors.
func New() *Sink {
	s := &Sink{reg: prometheus.NewRegistry(), counters: map[string]*prometheus.CounterVec{}, hists: map[string]*prometheus.HistogramVec{}}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, d := range metrics.All {
		switch d.Kind {
		case metrics.Counter:
			c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: d.Prom, Help: d.Help}, d.Labels)
			s.reg.MustRegister(c)
			if len(d.Labels) == 0 {
				c.WithLabelValues() // shown as 0 before anything happens
			}
			s.counters[d.Prom] = c
		case metrics.Histogram:
			// Jobs take from under a second (cached) to hours (tens of GB).
			h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: d.Prom, Help: d.Help,
				Buckets: []float64{0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800}}, d.Labels)
			s.reg.MustRegister(h)
			s.hists[d.Prom] = h
		}
	}
	return s
}

func (s *Sink) Add(d metrics.Def, v float64, labels ...string) {
	if c, ok := s.counters[d.Prom]; ok {
		c.WithLabelValues(labels...).Add(v)
	} else if h, ok := s.hists[d.Prom]; ok {
		h.WithLabelValues(labels...).Observe(v)
	}
}

// Handler serves the registry in Prometheus' text format.
func (s *Sink) Handler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
}
