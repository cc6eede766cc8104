package registry

import "time"

// SetBlobBackoff sets the backoff unit of c's blob reads (250 ms by
// default), so a test reaches the give-up path in milliseconds.
func SetBlobBackoff(c *Client, unit time.Duration) { c.blobBackoff = unit }

var RetryAfter = retryAfter
