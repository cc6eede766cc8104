package dynamo

import (
	"testing"

	"github.com/tarport/tarport/shared/limits"
	"github.com/tarport/tarport/shared/limits/limitstest"
	"github.com/tarport/tarport/shared/testkit/dynalite"
)

// TestLimitsContract: the limits every store keeps, against a real
// DynamoDB API; each case's store is a fresh table.
func TestLimitsContract(t *testing.T) {
	t.Parallel()
	db := dynalite.Start(t)
	limitstest.Run(t, func(t *testing.T) limits.Store {
		return NewLimits(db.Client(), db.CreateTable(t, Schema()))
	})
}
