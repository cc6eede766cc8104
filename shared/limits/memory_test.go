package limits_test

import (
	"testing"

	"github.com/tarport/tarport/shared/limits"
	"github.com/tarport/tarport/shared/limits/limitstest"
)

func TestMemory(t *testing.T) {
	limitstest.Run(t, func(*testing.T) limits.Store { return limits.NewMemory() })
}
