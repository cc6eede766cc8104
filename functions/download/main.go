// Command download is the Lambda behind /api/downloads, /api/pull and
// /api/health: it resolves and plans an image, creates or joins its job
// and queues one task per layer; status reads sign a fresh link.
package main

import (
	"context"

	"github.com/tarport/tarport/infra/lambdaapp"
)

func main() {
	lambdaapp.Main(func(ctx context.Context, a *lambdaapp.App) (any, error) {
		return a.HTTP(ctx, lambdaapp.Downloads)
	})
}
