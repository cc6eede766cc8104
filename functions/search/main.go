// Command search is the Lambda behind /api/search: Docker Hub search,
// cached in DynamoDB.
package main

import (
	"context"

	"github.com/tarport/tarport/infra/lambdaapp"
)

func main() {
	lambdaapp.Main(func(ctx context.Context, a *lambdaapp.App) (any, error) {
		return a.HTTP(ctx, lambdaapp.Discovery)
	})
}
