package lambdaapp

import "testing"

// TestMemoryLimit: 85% of the function's memory, unless GOMEMLIMIT says
// otherwise or Lambda does not tell.
func TestMemoryLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env    map[string]string
		want   int64
		wantOK bool
	}{
		{map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769"}, 1769 << 20 * 85 / 100, true},
		{map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512"}, 512 << 20 * 85 / 100, true},
		{map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769", "GOMEMLIMIT": "900MiB"}, 0, false},
		{map[string]string{}, 0, false},
		{map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "lots"}, 0, false},
	} {
		got, ok := memoryLimit(func(k string) string { return tc.env[k] })
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%v: %d, %v; want %d, %v", tc.env, got, ok, tc.want, tc.wantOK)
		}
	}
	if got, _ := memoryLimit(func(k string) string { return map[string]string{"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512"}[k] }); got < 400<<20 || got > 512<<20 {
		t.Errorf("512 MB gives a %d-byte limit", got)
	}
}
