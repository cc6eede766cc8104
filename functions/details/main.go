// Command details is the Lambda behind /api/image-details: tags and
// platforms from Docker Hub or the image's registry, cached in DynamoDB.
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
