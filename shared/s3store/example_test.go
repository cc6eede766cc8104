package s3store_test

import (
	"context"
	"log"
	"os"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tarport/tarport/shared/s3store"
)

// A Lambda wires the store from the SDK's default configuration (which
// honours AWS_ENDPOINT_URL_S3 in tests): one client, and a presigner on
// top of it for download links.
func ExampleNew() {
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	c := s3.NewFromConfig(cfg)
	// 4 parts of 64 MiB in flight: a worker's uploads hold at most 256 MiB.
	store := s3store.New(c, s3.NewPresignClient(c), os.Getenv("TARPORT_BUCKET"), s3store.Options{PartSize: 64 << 20, PartsInFlight: 4})
	_ = store
}
