// Command assemble is the Lambda on the task queue (and its dead-letter
// queue): each message fetches and verifies one layer into S3; the last
// one stitches the tar.
package main

import (
	"context"

	"github.com/tarport/tarport/infra/lambdaapp"
)

func main() {
	lambdaapp.Main(func(ctx context.Context, a *lambdaapp.App) (any, error) {
		return a.Assemble(ctx)
	})
}
