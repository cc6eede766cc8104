// Command warm runs on a schedule: it refreshes the popular list and the
// top images' details, and pre-fetches the layers of the hot images.
package main

import (
	"context"

	"github.com/tarport/tarport/infra/lambdaapp"
)

func main() {
	lambdaapp.Main(func(ctx context.Context, a *lambdaapp.App) (any, error) {
		return a.Warm(ctx)
	})
}
