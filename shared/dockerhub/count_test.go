package dockerhub

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

func TestCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw  string
		want int64 // -1: nil
	}{
		{`13718294112`, 13718294112},
		{`"1B+"`, 1_000_000_000},
		{`"10M+"`, 10_000_000},
		{`"1.5K+"`, 1500},
		{`"523"`, 523},
		{`"1,234"`, 1234},
		{`"10m+"`, 10_000_000},
		{`null`, -1},
		{``, -1},
		{`"lots"`, -1},
		{`-5`, -1},
		{`1.5`, -1},
		{`{}`, -1},
	}
	for _, tt := range tests {
		got := count(json.RawMessage(tt.raw))
		switch {
		case tt.want < 0 && got != nil:
			t.Errorf("count(%s) = %d, want nil", tt.raw, *got)
		case tt.want >= 0 && (got == nil || *got != tt.want):
			t.Errorf("count(%s) = %v, want %d", tt.raw, got, tt.want)
		}
	}
}

func FuzzCount(f *testing.F) {
	for _, s := range []string{`"1B+"`, `12`, `"9.9T+"`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n := count(json.RawMessage(s)); n != nil && *n < 0 {
			t.Errorf("count(%q) = %d < 0", s, *n)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name string
		hdr  http.Header
		want int
	}{
		{"none", http.Header{}, 0},
		{"seconds", http.Header{"Retry-After": {"30"}}, 30},
		{"date", http.Header{"Retry-After": {now.Add(time.Minute).UTC().Format(http.TimeFormat)}}, 60},
		{"x unix", http.Header{"X-Retry-After": {"1800000010"}}, 10},
		{"x seconds", http.Header{"X-Retry-After": {"5"}}, 5},
		{"x past", http.Header{"X-Retry-After": {"1700000000"}}, 1},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"huge", http.Header{"Retry-After": {"999999999"}}, 86400},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.hdr, now); got != tt.want {
			t.Errorf("%s: retryAfter = %d, want %d", tt.name, got, tt.want)
		}
	}
}
