package tarport

// The retry budget, in one place. A layer's bytes are asked for at three
// levels, each bounded here and nowhere else:
//
//  1. BlobRequests: the registry adapter's blob reader sends at most this
//     many failed requests in a row (no byte of progress between them),
//     backing off 2^n x its base up to 30 s or as Retry-After says, before
//     one read of the blob fails. A byte of progress resets the count, and
//     a refusal (401, 403, 404) or a digest mismatch ends the read at once.
//  2. LayerAttempts: the download service reads a layer (or one range of a
//     split layer) at most this many times per delivery of its task, and
//     only after an error another read may help (a broken or corrupt
//     transfer, a timeout, a rate limit), waiting 0.5 s x n² between.
//  3. Deliveries: a task is delivered again only when its worker died or
//     could not record the outcome; a layer that failed its attempts
//     fails its job instead. QueueDeliveries is the SQS queue's
//     maxReceiveCount (template.yaml), PoolDeliveries the local pool's.
//
// So one task delivery sends a failing registry at most
// BlobRequests x LayerAttempts = 8 x 3 = 24 failed blob requests before its
// job fails; the rare redeliveries multiply that to at most 72 on AWS
// (x3) and 120 locally (x5). LayerRequests and TestRetryBudget hold the
// arithmetic; metadata reads (manifests, the HEAD before a cached entry is
// used) have their own short retries in the registry adapter.
const (
	BlobRequests    = 8
	LayerAttempts   = 3
	QueueDeliveries = 3
	PoolDeliveries  = 5
)

// LayerRequests is the most failed blob requests one layer of one job
// can send its registry over the given number of task deliveries.
func LayerRequests(deliveries int) int { return BlobRequests * LayerAttempts * deliveries }
