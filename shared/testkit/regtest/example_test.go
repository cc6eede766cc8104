package regtest_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/regtest"
)

// A benchmark tool, outside any test, runs its own registry and fills it with a 3 GiB
// image; memory stays flat whatever the sizes.
func ExampleWriteLarge() {
	ctx := context.Background()
	bin, err := daemon.FindBinary("registry", "docker-registry")
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "bench-registry")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	reg, err := regtest.Launch(ctx, bin, dir)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Stop()

	p, err := regtest.WriteLarge(ctx, reg.Dest("bench/large", "v1"), []int64{1 << 30, 2 << 30})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(p.Ref, p.Digest(), p.Images[0].Layers[1].Size)
}
