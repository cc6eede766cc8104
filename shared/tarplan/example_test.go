package tarplan_test

import (
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/tarport/tarport/shared/tarplan"
)

// Plan needs only what the manifest and config say: the tar's size and
// every entry's offset are known before a layer byte is fetched. Parts then
// cuts the tar into S3 multipart parts: stored layers are copied from the
// entry store, the tail (small layers and metadata) is uploaded.
func ExamplePlan() {
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	img := tarplan.Image{
		Name:         "docker.io/library/app",
		RepoTags:     []string{"app:1.0"},
		RefName:      "1.0",
		Manifest:     []byte(`{"schemaVersion":2}`), // as the registry served it
		Config:       config,
		ConfigDigest: digest.FromBytes(config),
		Layers: []tarplan.Blob{
			{Digest: digest.FromString("base"), Size: 30 << 20},
			{Digest: digest.FromString("app"), Size: 6 << 30},
			{Digest: digest.FromString("tweak"), Size: 1500},
		},
	}
	layout, err := tarplan.Plan(img)
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, e := range layout.Entries {
		kind := "inline"
		if i < layout.Stored {
			kind = "stored"
		} else if e.Fetched() {
			kind = "fetched"
		}
		fmt.Printf("%-7s %-24.24s offset %10d  size %10d\n", kind, e.Name, e.Offset, e.Size)
	}
	fmt.Println("tail at", layout.TailOffset, "tar size", layout.Size)

	parts, err := tarplan.Parts(layout, tarplan.S3Limits)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range parts {
		src := "upload tail"
		if p.Copy() {
			src = "copy " + p.Digest.Encoded()[:8]
		}
		fmt.Printf("part %d: %-13s from %10d, %10d bytes\n", p.Number, src, p.SourceOffset, p.Size)
	}
	// Output:
	// stored  blobs/sha256/a172cedcae4 offset          0  size 6442450944
	// stored  blobs/sha256/cae662172fd offset 6442451456  size   31457280
	// fetched blobs/sha256/3982f19bef1 offset 6473909248  size       1500
	// inline  blobs/sha256/c5b1d63604f offset 6473911296  size         78
	// inline  blobs/sha256/bafebd36189 offset 6473912320  size         19
	// inline  oci-layout               offset 6473913344  size         30
	// inline  index.json               offset 6473914368  size        352
	// inline  manifest.json            offset 6473915392  size        366
	// tail at 6473909248 tar size 6473917440
	// part 1: copy a172cedc from          0, 3221225728 bytes
	// part 2: copy a172cedc from 3221225728, 3221225728 bytes
	// part 3: copy cae66217 from          0,   31457792 bytes
	// part 4: upload tail   from          0,       8192 bytes
}
