package limits

import (
	"context"
	"slices"
	"sync"
	"time"
)

// maxKeys bounds each of Memory's maps: past it, entries whose time has
// passed are swept, so a flood of client addresses cannot grow memory
// beyond what their live counters need.
const maxKeys = 100_000

// Memory is the local server's Store: one process, counters in maps.
type Memory struct {
	mu    sync.Mutex
	tats  map[string]time.Time
	hours map[string]map[time.Time]int64
	marks map[string]time.Time // expiry
}

// NewMemory returns an empty Store.
func NewMemory() *Memory {
	return &Memory{tats: map[string]time.Time{}, hours: map[string]map[time.Time]int64{}, marks: map[string]time.Time{}}
}

func (m *Memory) Take(_ context.Context, key string, now time.Time, every time.Duration, burst, cost int) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sweepPast(m.tats, now)
	next, wait := Admit(m.tats[key], now, every, burst, cost)
	if wait == 0 {
		m.tats[key] = next
	}
	return wait, nil
}

func (m *Memory) Usage(_ context.Context, key string, since time.Time) ([]Bucket, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Bucket
	for h, n := range m.hours[key] {
		if !h.Before(since) {
			out = append(out, Bucket{Hour: h, Bytes: n})
		}
	}
	slices.SortFunc(out, func(a, b Bucket) int { return a.Hour.Compare(b.Hour) })
	return out, nil
}

func (m *Memory) Add(_ context.Context, key string, hour time.Time, n, max int64) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	hours := m.hours[key]
	if hours == nil {
		if len(m.hours) > maxKeys {
			m.sweepHours(hour)
		}
		hours = map[time.Time]int64{}
		m.hours[key] = hours
	}
	if max >= 0 && hours[hour]+n > max {
		return false, nil
	}
	hours[hour] += n
	// Hours out of the window count for nothing.
	for h := range hours {
		if h.Before(hour.Add(-Day)) {
			delete(hours, h)
		}
	}
	return true, nil
}

// sweepPast drops, once m has outgrown maxKeys, the entries whose time is
// past: a bucket full again, a mark expired.
func sweepPast(m map[string]time.Time, now time.Time) {
	if len(m) <= maxKeys {
		return
	}
	for k, t := range m {
		if !t.After(now) {
			delete(m, k)
		}
	}
}

func (m *Memory) sweepHours(now time.Time) {
	for k, hours := range m.hours {
		live := false
		for h := range hours {
			live = live || h.After(now.Add(-Day))
		}
		if !live {
			delete(m.hours, k)
		}
	}
}

func (m *Memory) Mark(_ context.Context, key string, now time.Time, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sweepPast(m.marks, now)
	if exp, ok := m.marks[key]; ok && exp.After(now) {
		return false, nil
	}
	m.marks[key] = now.Add(ttl)
	return true, nil
}

func (m *Memory) Marked(_ context.Context, key string, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp, ok := m.marks[key]
	return ok && exp.After(now), nil
}
