package sqsqueue

import "time"

// SetClock sets the clock a codec seals and opens credentials by.
func SetClock(c *Codec, now func() time.Time) { c.now = now }
