package regtest_test

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/tarport/tarport/shared/testkit/regtest"
)

// TestPushLarge checks that a large layer is streamed: the push must not hold it in
// memory. Not parallel, since peak RSS belongs to the whole test process.
func TestPushLarge(t *testing.T) {
	reg := regtest.Start(t)
	debug.FreeOSMemory()
	resetPeakRSS(t)

	const big = 256 << 20
	p := regtest.PushLarge(t, reg, "large/image", "v1", []int64{big, 5000})

	peak := peakRSS(t)
	t.Logf("peak RSS while pushing a %d MiB layer: %d MiB", big>>20, peak>>20)
	if peak > 100<<20 {
		t.Errorf("peak RSS %d MiB, want < 100 MiB: the layer is not streamed", peak>>20)
	}
	img := p.Images[0]
	if img.Layers[0].Size != big || img.Layers[1].Size != 5120 || img.Layers[0].MediaType != regtest.MediaTypeOCILayer {
		t.Errorf("layers %+v, want %d and 5120 bytes of %s", img.Layers, big, regtest.MediaTypeOCILayer)
	}
	checkImage(t, reg, p.Ref, img)

	again := regtest.PushLarge(t, reg, "large/image", "v1", []int64{big, 5000})
	if again.Digest() != p.Digest() {
		t.Errorf("pushing the same large image twice: digests %s, %s", p.Digest(), again.Digest())
	}
}

// resetPeakRSS zeroes VmHWM (Linux >= 4.0) so earlier tests do not count.
func resetPeakRSS(t *testing.T) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Logf("cannot reset peak RSS, measuring since process start: %v", err)
	}
}

func peakRSS(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Skip("no VmHWM in /proc/self/status")
	return 0
}
