package registry_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/tarport/tarport/shared/registry"
)

// TestRetryAfter: a registry's Retry-After is read in seconds or as an
// HTTP date; nonsense and the past ask for no wait.
func TestRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"30":  30 * time.Second,
		" 5 ": 5 * time.Second,
		"0":   0,
		"-3":  0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Minute).Format(http.TimeFormat):     0,
		"soon": 0,
		"":     0,
	} {
		if got := registry.RetryAfter(in, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", in, got, want)
		}
	}
}
