package memjobs_test

import (
	"testing"
	"time"

	"github.com/tarport/tarport/shared/download/jobstest"
	"github.com/tarport/tarport/shared/testkit/memjobs"
)

// TestJobstest: the in-memory store keeps every rule the real ones do.
func TestJobstest(t *testing.T) {
	t.Parallel()
	jobstest.Run(t, func(t *testing.T, now func() time.Time) jobstest.Store { return memjobs.New(now) })
}
