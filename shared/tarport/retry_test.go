package tarport_test

import (
	"testing"

	"github.com/tarport/tarport/shared/tarport"
)

// TestRetryBudget holds the figures the budget's comment states.
func TestRetryBudget(t *testing.T) {
	for _, tc := range []struct {
		name       string
		deliveries int
		want       int
	}{
		{"one delivery", 1, 24},
		{"on AWS", tarport.QueueDeliveries, 72},
		{"locally", tarport.PoolDeliveries, 120},
	} {
		if got := tarport.LayerRequests(tc.deliveries); got != tc.want {
			t.Errorf("%s: LayerRequests(%d) = %d, the comment says %d", tc.name, tc.deliveries, got, tc.want)
		}
	}
}
