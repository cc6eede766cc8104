package dynalite

import (
	"strings"
	"sync/atomic"
)

var tableSeq atomic.Int64

// sanitize keeps a test name within DynamoDB's table name alphabet
// ([a-zA-Z0-9_.-], at most 255 characters with the prefix).
func sanitize(name string) string {
	name = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		default:
			return '-'
		}
	}, name)
	return name[:min(len(name), 200)]
}
