package tarplan_test

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarplan"
)

// checkParts checks parts against the multipart rules and the layout:
// numbered 1..N in tar order, back to back from 0 to l.Size, each at most
// MaxPart, each but the last at least MinPart, at most MaxParts of them;
// a copy part reads a range of one stored entry (at the same place in the
// tar), an upload part a range of the tail; and no more parts than needed.
func checkParts(t testing.TB, l tarplan.Layout, lim tarplan.Limits, parts []tarplan.Part) {
	t.Helper()
	if len(parts) == 0 {
		t.Fatal("no parts")
	}
	if len(parts) > lim.MaxParts {
		t.Fatalf("%d parts, more than MaxParts %d", len(parts), lim.MaxParts)
	}
	stored := map[string]tarplan.Entry{}
	for _, e := range l.Entries[:l.Stored] {
		stored[e.Digest.String()] = e
	}
	// Parts of one source (an entry, or the tail) are near-equal: their
	// sizes differ by a byte at most.
	type span struct{ min, max int64 }
	spans := map[string]span{}
	var off int64
	for i, p := range parts {
		last := i == len(parts)-1
		src := p.Digest.String()
		if s, ok := spans[src]; ok {
			spans[src] = span{min(s.min, p.Size), max(s.max, p.Size)}
		} else {
			spans[src] = span{p.Size, p.Size}
		}
		if p.Number != i+1 {
			t.Fatalf("part %d is numbered %d", i+1, p.Number)
		}
		if p.Offset != off {
			t.Fatalf("part %d at offset %d, want %d (contiguous)", p.Number, p.Offset, off)
		}
		if p.Size <= 0 || p.Size > lim.MaxPart {
			t.Fatalf("part %d is %d bytes, want 1..%d", p.Number, p.Size, lim.MaxPart)
		}
		if !last && p.Size < lim.MinPart {
			t.Fatalf("part %d of %d is %d bytes, under MinPart %d", p.Number, len(parts), p.Size, lim.MinPart)
		}
		if p.SourceOffset < 0 {
			t.Fatalf("part %d: SourceOffset %d", p.Number, p.SourceOffset)
		}
		if p.Copy() {
			e, ok := stored[p.Digest.String()]
			if !ok {
				t.Fatalf("copy part %d reads %s, not a stored entry", p.Number, p.Digest)
			}
			if p.SourceOffset+p.Size > e.Len() {
				t.Fatalf("copy part %d reads %d+%d bytes of a %d-byte entry", p.Number, p.SourceOffset, p.Size, e.Len())
			}
			if p.Offset != e.Offset+p.SourceOffset {
				t.Fatalf("copy part %d at %d, but its source is at %d+%d", p.Number, p.Offset, e.Offset, p.SourceOffset)
			}
		} else {
			if p.Offset < l.TailOffset || p.Offset != l.TailOffset+p.SourceOffset {
				t.Fatalf("upload part %d at %d (tail offset %d) reads tail offset %d", p.Number, p.Offset, l.TailOffset, p.SourceOffset)
			}
			if p.SourceOffset+p.Size > l.Size-l.TailOffset {
				t.Fatalf("upload part %d reads %d+%d bytes of a %d-byte tail", p.Number, p.SourceOffset, p.Size, l.Size-l.TailOffset)
			}
		}
		off += p.Size
	}
	if off != l.Size {
		t.Fatalf("parts end at %d, want Size %d", off, l.Size)
	}
	for src, s := range spans {
		if s.max-s.min > 1 {
			t.Fatalf("parts of %q range from %d to %d bytes, not near-equal", src, s.min, s.max)
		}
	}
	if want := fewestParts(l, lim); int64(len(parts)) != want {
		t.Fatalf("%d parts, want the fewest: %d", len(parts), want)
	}
}

// fewestParts is how many parts a layout needs: each stored entry and the
// tail cut into pieces of at most MaxPart.
func fewestParts(l tarplan.Layout, lim tarplan.Limits) int64 {
	ceil := func(n int64) int64 { return (n-1)/lim.MaxPart + 1 }
	var n int64
	for _, e := range l.Entries[:l.Stored] {
		n += ceil(e.Len())
	}
	return n + ceil(l.Size-l.TailOffset)
}

func TestParts(t *testing.T) {
	t.Parallel()
	small := tarplan.Limits{MinPart: 1024, MaxPart: 4096, MaxParts: 10_000}
	tests := []struct {
		name   string
		layers []int64
		limits tarplan.Limits // S3Limits if zero
		// copies are the sizes of the copy parts in order, nCopies their
		// number where listing them would not help; uploads is the number
		// of upload parts (the tail).
		copies  []int64
		nCopies int
		uploads int
	}{
		{name: "no layers", layers: nil, uploads: 1},
		{name: "small layers only", layers: []int64{0, 1, 4 * mib, 3000}, uploads: 1},
		{name: "entry of exactly 5 MiB", layers: []int64{5*mib - 512}, copies: []int64{5 * mib}, uploads: 1},
		{name: "layer of 5 MiB", layers: []int64{5 * mib}, copies: []int64{5*mib + 512}, uploads: 1},
		{name: "entry just under 5 MiB rides in the tail", layers: []int64{5*mib - 1024}, uploads: 1},
		{name: "entry of exactly 5 GiB", layers: []int64{5*gib - 512}, copies: []int64{5 * gib}, uploads: 1},
		{name: "layer of 5 GiB", layers: []int64{5 * gib}, copies: []int64{5*gib/2 + 256, 5*gib/2 + 256}, uploads: 1},
		{name: "layer of 5 GiB + 1", layers: []int64{5*gib + 1}, copies: []int64{5*gib/2 + 512, 5*gib/2 + 512}, uploads: 1},
		{name: "layer of 12 GiB (PAX)", layers: []int64{12 * gib}, copies: []int64{4*gib + 512, 4*gib + 512, 4*gib + 512}, uploads: 1},
		{
			// 1536 + 10 GiB + 513 + 511 = 10737420800 bytes = 3 * 3579140266 + 2
			name:    "layer of 10 GiB + 513 (uneven split)",
			layers:  []int64{10*gib + 513},
			copies:  []int64{3579140267, 3579140267, 3579140266},
			uploads: 1,
		},
		{
			// 11 GiB + 1536 = 11811161600 = 3 * 3937053866 + 2
			name:    "stored entries biggest first",
			layers:  []int64{6 * mib, 100, 11 * gib, 6 * gib, 7 * mib},
			copies:  []int64{3937053867, 3937053867, 3937053866, 3*gib + 256, 3*gib + 256, 7*mib + 512, 6*mib + 512},
			uploads: 1,
		},
		{
			// 13 one-block layers, config, manifest, oci-layout, index.json,
			// manifest.json, end of archive: 22528 bytes in 4096-byte parts.
			name:    "tail bigger than MaxPart",
			layers:  []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13},
			limits:  small,
			uploads: 6,
		},
		{
			// 6 MiB + 512 = 6291968 bytes in 1537 parts of 4093 or 4094;
			// the tail is 8192 bytes.
			name:    "small limits with a stored entry",
			layers:  []int64{6 * mib, 1000},
			limits:  small,
			nCopies: 1537,
			uploads: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lim := tt.limits
			if lim == (tarplan.Limits{}) {
				lim = tarplan.S3Limits
			}
			l := planSizes(t, tt.layers...)
			checkLayout(t, l)
			parts, err := tarplan.Parts(l, lim)
			if err != nil {
				t.Fatal(err)
			}
			checkParts(t, l, lim, parts)
			var copies []int64
			uploads := 0
			for _, p := range parts {
				if p.Copy() {
					copies = append(copies, p.Size)
				} else {
					uploads++
				}
			}
			if uploads != tt.uploads {
				t.Errorf("%d upload parts, want %d", uploads, tt.uploads)
			}
			if tt.copies == nil {
				if len(copies) != tt.nCopies {
					t.Fatalf("%d copy parts, want %d", len(copies), tt.nCopies)
				}
				return
			}
			if !slices.Equal(copies, tt.copies) {
				t.Fatalf("copy part sizes %v, want %v", copies, tt.copies)
			}
		})
	}
}

// fill returns n copies of v.
func fill(v int64, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// A tail bigger than 5 GiB under S3's own limits: more than a thousand
// layers just under the 5 MiB threshold.
func TestPartsS3TailBiggerThanMaxPart(t *testing.T) {
	t.Parallel()
	sizes := fill(tarplan.BigEntryMin-1024, 1100)
	l := planSizes(t, sizes...)
	checkLayout(t, l)
	if l.Stored != 0 || l.Size-l.TailOffset <= tarplan.S3Limits.MaxPart {
		t.Fatalf("stored %d, tail %d bytes: want all tail, over 5 GiB", l.Stored, l.Size-l.TailOffset)
	}
	parts, err := tarplan.Parts(l, tarplan.S3Limits)
	if err != nil {
		t.Fatal(err)
	}
	checkParts(t, l, tarplan.S3Limits, parts)
	if len(parts) != 2 || parts[0].Copy() || parts[1].Copy() {
		t.Fatalf("parts = %+v, want two upload parts", parts)
	}
}

func TestPartsCount(t *testing.T) {
	t.Parallel()
	// With the tar capped at MaxTarSize, only many stored entries can
	// need more than S3's 10,000 parts: each is at least one part.
	tests := []struct {
		name    string
		layers  []int64
		limits  tarplan.Limits
		wantErr bool
	}{
		{
			name:   "exactly 10000 parts",
			layers: fill(5*mib, 9999),
			limits: tarplan.S3Limits, // 9999 copy parts + 1 tail part
		},
		{
			name:    "10001 parts",
			layers:  fill(5*mib, 10000),
			limits:  tarplan.S3Limits,
			wantErr: true,
		},
		{
			name:    "more stored entries than parts",
			layers:  []int64{6 * mib, 7 * mib, 8 * mib},
			limits:  tarplan.Limits{MinPart: 5 * mib, MaxPart: 5 * gib, MaxParts: 3},
			wantErr: true,
		},
		{
			name:   "as many parts as allowed",
			layers: []int64{6 * mib, 7 * mib},
			limits: tarplan.Limits{MinPart: 5 * mib, MaxPart: 5 * gib, MaxParts: 3},
		},
		{
			name:   "one part",
			layers: []int64{1000},
			limits: tarplan.Limits{MinPart: 5 * mib, MaxPart: 5 * gib, MaxParts: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := planSizes(t, tt.layers...)
			parts, err := tarplan.Parts(l, tt.limits)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Parts gave %d parts (limit %d), want an error", len(parts), tt.limits.MaxParts)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkParts(t, l, tt.limits, parts)
			if int64(len(parts)) != fewestParts(l, tt.limits) || (tt.limits == tarplan.S3Limits && len(parts) != 10_000) {
				t.Fatalf("%d parts", len(parts))
			}
		})
	}
}

func TestPartsBadLimits(t *testing.T) {
	t.Parallel()
	l := planSizes(t, 6*mib, 100)
	tests := []struct {
		name string
		lim  tarplan.Limits
	}{
		{"zero", tarplan.Limits{}},
		{"no MinPart", tarplan.Limits{MinPart: 0, MaxPart: 5 * gib, MaxParts: 10}},
		{"negative MinPart", tarplan.Limits{MinPart: -1, MaxPart: 5 * gib, MaxParts: 10}},
		{"MaxPart equal to MinPart", tarplan.Limits{MinPart: 5 * mib, MaxPart: 5 * mib, MaxParts: 10}},
		{"MaxPart under twice MinPart", tarplan.Limits{MinPart: 5 * mib, MaxPart: 10*mib - 1, MaxParts: 10}},
		{"MaxPart under MinPart", tarplan.Limits{MinPart: 5 * mib, MaxPart: 1, MaxParts: 10}},
		{"negative MaxPart", tarplan.Limits{MinPart: 5 * mib, MaxPart: -5 * gib, MaxParts: 10}},
		{"no MaxParts", tarplan.Limits{MinPart: 5 * mib, MaxPart: 5 * gib}},
		{"negative MaxParts", tarplan.Limits{MinPart: 5 * mib, MaxPart: 5 * gib, MaxParts: -1}},
		// A stored entry (5 MiB and more) smaller than MinPart cannot be a
		// copy part of its own.
		{"MinPart above a stored entry", tarplan.Limits{MinPart: 7 * mib, MaxPart: 5 * gib, MaxParts: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if parts, err := tarplan.Parts(l, tt.lim); err == nil {
				t.Fatalf("Parts(%+v) gave %d parts, want an error", tt.lim, len(parts))
			}
		})
	}
}

// Limits near the int64 range must be refused or honoured, not overflow.
func TestPartsHugeLimits(t *testing.T) {
	t.Parallel()
	l := planSizes(t, 6*mib, 100)
	t.Run("MinPart whose double overflows", func(t *testing.T) {
		t.Parallel()
		lim := tarplan.Limits{MinPart: 1 << 62, MaxPart: 4096, MaxParts: 1 << 30}
		if parts, err := tarplan.Parts(planSizes(t, 100), lim); err == nil {
			t.Fatalf("Parts(%+v) gave %d parts, want an error", lim, len(parts))
		}
	})
	t.Run("MaxPart near MaxInt64", func(t *testing.T) {
		t.Parallel()
		lim := tarplan.Limits{MinPart: 1, MaxPart: math.MaxInt64, MaxParts: 10}
		parts, err := tarplan.Parts(l, lim)
		if err != nil {
			t.Fatal(err)
		}
		checkParts(t, l, lim, parts)
	})
}

// Parts refuses a layout that needs more than MaxParts parts; it should do
// so at once, not after building every part: a layer size comes from a
// registry's manifest, and 4 TiB in parts of 2 bytes are 2^41 parts.
func TestPartsTooManyFailsFast(t *testing.T) {
	t.Parallel()
	l := planSizes(t, 4<<40)
	start := time.Now()
	if parts, err := tarplan.Parts(l, tarplan.Limits{MinPart: 1, MaxPart: 2, MaxParts: 10_000}); err == nil {
		t.Fatalf("Parts gave %d parts, want an error", len(parts))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("refusing took %v", d)
	}
}

// FuzzParts plans images of random layer sizes, up to several TiB (no
// content is ever allocated), and checks every split Parts makes against
// the multipart rules, and that Parts errs exactly when the rules cannot be
// met.
//
// The input is: one byte choosing the limits (S3's, or small random ones
// that make many parts from small layers), six bytes for those limits,
// then nine bytes per layer: a kind (which size range, or a repeat of an
// earlier layer) and a uint64 to pick the size with.
func FuzzParts(f *testing.F) {
	layer := func(kind byte, v uint64) []byte {
		return binary.BigEndian.AppendUint64([]byte{kind}, v)
	}
	seed := func(limits byte, layers ...[]byte) []byte {
		b := []byte{limits, 0, 0, 0, 0, 0, 0}
		for _, l := range layers {
			b = append(b, l...)
		}
		return b
	}
	f.Add(seed(0))
	f.Add(seed(0, layer(0, 0)))
	f.Add(seed(0, layer(1, 12345), layer(2, 1023), layer(2, 1024), layer(7, 0)))
	f.Add(seed(0, layer(3, 5<<30), layer(4, 0), layer(4, 4096), layer(5, 2048)))
	f.Add(seed(0, layer(6, 7<<40), layer(6, 3<<40), layer(7, 1), layer(6, 1<<40)))
	f.Add(seed(0, layer(6, 5<<40), layer(6, 5<<40+1), layer(6, 5<<40+2), layer(6, 5<<40+3), layer(6, 5<<40+4),
		layer(6, 5<<40+5), layer(6, 5<<40+6), layer(6, 5<<40+7), layer(6, 5<<40+8), layer(6, 5<<40+9)))
	f.Add(append([]byte{1, 0, 10, 0, 3, 0, 200}, seed(0, layer(1, 999), layer(2, 7), layer(0, 5))[7:]...))
	f.Add(append([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, seed(0, layer(3, 1<<33), layer(1, 5))[7:]...))
	f.Fuzz(func(t *testing.T, data []byte) {
		lim, layers := fuzzLayout(data)
		l, err := tarplan.Plan(imageOf(t, layers...))
		// Plan refuses tars over MaxTarSize: allow that error only near or
		// over the cap (headers add at most a few KiB per layer).
		var content int64
		seen := map[digest.Digest]bool{}
		for _, b := range layers {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				content += b.Size
			}
		}
		switch {
		case err != nil && content > tarplan.MaxTarSize-int64(len(layers)+8)*4096:
			return
		case err != nil:
			t.Fatalf("Plan(layers %v): %v", layers, err)
		case content > tarplan.MaxTarSize:
			t.Fatalf("Plan accepted %d content bytes, over MaxTarSize", content)
		}
		checkLayout(t, l)
		parts, err := tarplan.Parts(l, lim)

		minStored := int64(math.MaxInt64)
		for _, e := range l.Entries[:l.Stored] {
			minStored = min(minStored, e.Len())
		}
		switch {
		case minStored < lim.MinPart:
			if err == nil {
				t.Fatalf("stored entry of %d bytes under MinPart %d: no error", minStored, lim.MinPart)
			}
		case fewestParts(l, lim) > int64(lim.MaxParts):
			if err == nil {
				t.Fatalf("%d parts needed, %d allowed: no error", fewestParts(l, lim), lim.MaxParts)
			}
		case err != nil:
			t.Fatalf("Parts(layers %v, %+v): %v", layers, lim, err)
		default:
			checkParts(t, l, lim, parts)
		}
	})
}

// fuzzLayout decodes FuzzParts' input into limits and layers.
func fuzzLayout(data []byte) (tarplan.Limits, []tarplan.Blob) {
	const maxLayers = 64
	lim := tarplan.S3Limits
	if len(data) >= 7 && data[0]%2 == 1 {
		// MinPart 1..64 KiB, MaxPart 2..66 times that, MaxParts 1..4096:
		// small enough that modest layouts need many parts or too many.
		minPart := int64(binary.BigEndian.Uint16(data[1:3]))%(64<<10) + 1
		maxPart := 2*minPart + int64(binary.BigEndian.Uint16(data[3:5]))%64*minPart + int64(data[5])%minPart
		lim = tarplan.Limits{MinPart: minPart, MaxPart: maxPart, MaxParts: (int(data[6])<<8+int(data[5]))%4096 + 1}
		// Sometimes a MinPart above the smallest stored entry size.
		if data[0]%8 == 7 {
			lim.MinPart = tarplan.BigEntryMin + minPart
			lim.MaxPart = max(lim.MaxPart, 2*lim.MinPart)
		}
	}
	if len(data) >= 7 {
		data = data[7:]
	} else {
		data = nil
	}
	var layers []tarplan.Blob
	for ; len(data) >= 9 && len(layers) < maxLayers; data = data[9:] {
		v := binary.BigEndian.Uint64(data[1:9])
		var size int64
		switch data[0] % 8 {
		case 0: // tiny, around block boundaries
			size = int64(v % 2048)
		case 1: // small: rides in the tail
			size = int64(v % uint64(tarplan.BigEntryMin))
		case 2: // around the stored threshold
			size = tarplan.BigEntryMin - 2048 + int64(v%4096)
		case 3: // medium, up to 6 GiB
			size = int64(v % (6 << 30))
		case 4: // around a multiple of S3's 5 GiB part
			size = int64(1+v%8)*5*gib - 4096 + int64(v>>8%8192)
		case 5: // around the ustar limit (8 GiB - 1)
			size = ustarMax - 2048 + int64(v%4096)
		case 6: // huge: up to 8 TiB
			size = int64(v % (8 << 40))
		case 7: // a layer listed again
			if len(layers) > 0 {
				layers = append(layers, layers[v%uint64(len(layers))])
				continue
			}
		}
		layers = append(layers, tarplan.Blob{Digest: fakeDigest(len(layers)), Size: size})
	}
	return lim, layers
}
