// Package fakeclock is the test kits' one settable clock, for code that
// reads time through a now func (the job and cache stores, the limiter,
// the discovery service): safe for concurrent readers, moved only by the
// test. Code that sleeps or uses timers is tested in a testing/synctest
// bubble instead, whose clock moves when every goroutine waits.
package fakeclock

import (
	"sync/atomic"
	"time"
)

// Clock is a settable time source.
type Clock struct{ ns atomic.Int64 }

// At returns a clock reading t.
func At(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

// Now is the clock's time, in UTC.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
