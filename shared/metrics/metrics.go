// Package metrics names tarport's figures once (DESIGN.md, "/metrics") and
// hands each event to a Sink: Prometheus locally (package promsink, served
// at /metrics), Embedded Metric Format log lines on AWS (package emf, which
// CloudWatch turns into metrics without a PutMetricData call). Code that
// records takes a *Metrics; a nil one records nothing, so tests and tools
// need no wiring.
package metrics

import (
	"strconv"
	"time"
)

// Kind is how a metric aggregates.
type Kind int

const (
	Counter   Kind = iota // a sum
	Histogram             // a distribution of observations (seconds)
)

// Def describes one metric for every sink: the Prometheus name, the
// CloudWatch name and unit, and its label (dimension) names, which hold
// only bounded values (routes, status classes, codes), never ids or
// addresses: each CloudWatch dimension combination is a metric billed
// monthly.
type Def struct {
	Prom   string
	EMF    string
	Unit   string // a CloudWatch unit: Count, Bytes, Seconds
	Kind   Kind
	Help   string
	Labels []string
	// Rollup, when set, is a subset of Labels CloudWatch also aggregates
	// by (an alarm cannot sum over a dimension).
	Rollup []string
}

// The metrics. Their Prometheus names are DESIGN.md's.
var (
	HTTPRequests   = Def{"tarport_http_requests_total", "Requests", "Count", Counter, "API requests by route and status class (2xx, 3xx, 4xx, 5xx).", []string{"route", "class"}, []string{"class"}}
	JobsCreated    = Def{"tarport_jobs_created_total", "JobsCreated", "Count", Counter, "Download jobs created (a request joining a live job creates none).", nil, nil}
	JobsFinished   = Def{"tarport_jobs_finished_total", "JobsFinished", "Count", Counter, "Download jobs finished, by status (ready, failed) and error code.", []string{"status", "code"}, []string{"status"}}
	JobDuration    = Def{"tarport_job_duration_seconds", "JobDuration", "Seconds", Histogram, "Time from a job's creation to its end, by status.", []string{"status"}, nil}
	RegistryBytes  = Def{"tarport_registry_bytes_total", "RegistryBytes", "Bytes", Counter, "Layer bytes read from registries.", nil, nil}
	CacheHitBytes  = Def{"tarport_cache_hit_bytes_total", "CacheHitBytes", "Bytes", Counter, "Layer bytes served from the entry cache instead of a registry.", nil, nil}
	RegistryRetry  = Def{"tarport_registry_retries_total", "RegistryRetries", "Count", Counter, "Registry requests and layer fetches tried again after a failure.", nil, nil}
	DiscoveryCache = Def{"tarport_discovery_cache_total", "DiscoveryCache", "Count", Counter, "Discovery answers by cache result (hit, miss, stale).", []string{"result"}, nil}
	ChargedBytes   = Def{"tarport_charged_bytes_total", "ChargedBytes", "Bytes", Counter, "Tar bytes charged to clients' quotas and the daily budget.", nil, nil}
	Refusals       = Def{"tarport_refusals_total", "Refusals", "Count", Counter, "Requests refused by a guard, by code (rate_limited, quota_exceeded, access_denied).", []string{"code"}, nil}
)

// All lists every metric, for sinks that declare them up front.
var All = []Def{HTTPRequests, JobsCreated, JobsFinished, JobDuration, RegistryBytes, CacheHitBytes, RegistryRetry, DiscoveryCache, ChargedBytes, Refusals}

// Sink records events; values come in the order of the Def's labels.
type Sink interface {
	Add(d Def, v float64, labels ...string)
}

// Metrics records tarport's events into a sink.
type Metrics struct{ sink Sink }

// New returns Metrics over sink.
func New(sink Sink) *Metrics { return &Metrics{sink: sink} }

func (m *Metrics) add(d Def, v float64, labels ...string) {
	if m != nil && m.sink != nil {
		m.sink.Add(d, v, labels...)
	}
}

// Request counts an API answer; route is the router's pattern. The status
// goes in by its class: the exact status is in the log line.
func (m *Metrics) Request(route string, status int) {
	if m == nil {
		return
	}
	m.add(HTTPRequests, 1, route, statusClass(status))
}

// statusClass is "2xx" and the like, without building a string per request.
func statusClass(status int) string {
	switch status / 100 {
	case 1:
		return "1xx"
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	case 5:
		return "5xx"
	}
	return strconv.Itoa(status/100) + "xx"
}

func (m *Metrics) JobCreated() { m.add(JobsCreated, 1) }

// JobFinished counts a job's end; code is empty for a ready job.
func (m *Metrics) JobFinished(status, code string, took time.Duration) {
	if code == "" {
		code = "none"
	}
	m.add(JobsFinished, 1, status, code)
	m.add(JobDuration, took.Seconds(), status)
}

func (m *Metrics) RegistryBytes(n int64)        { m.add(RegistryBytes, float64(n)) }
func (m *Metrics) CacheHitBytes(n int64)        { m.add(CacheHitBytes, float64(n)) }
func (m *Metrics) RegistryRetry()               { m.add(RegistryRetry, 1) }
func (m *Metrics) DiscoveryCache(result string) { m.add(DiscoveryCache, 1, result) }
func (m *Metrics) ChargedBytes(n int64)         { m.add(ChargedBytes, float64(n)) }
func (m *Metrics) Refused(code string)          { m.add(Refusals, 1, code) }
