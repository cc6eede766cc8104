package registry

import (
	"slices"
	"testing"
)

func TestNewestFirst(t *testing.T) {
	t.Parallel()
	tags := []string{"1.9", "1.27.9", "latest", "1.27.10", "1.27", "alpine", "2", "1.27.10-alpine"}
	slices.SortFunc(tags, newestFirst)
	want := []string{"latest", "alpine", "2", "1.27.10-alpine", "1.27.10", "1.27.9", "1.27", "1.9"}
	if !slices.Equal(tags, want) {
		t.Fatalf("sorted %v, want %v", tags, want)
	}
}
