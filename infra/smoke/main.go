// Command smoke checks a running tarport the way an operator would after
// `sam deploy` (make smoke SITE=https://... [TOKEN=...]): health, a search,
// an image's details and one small public image end to end (the job, its
// link, the tar verified blob by blob), then prints what passed and what it
// cost in requests and bytes. `make test` runs it against the local server.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"
)

func main() {
	var cfg Config
	flag.StringVar(&cfg.Site, "site", os.Getenv("SITE"), "the site: https://<distribution>.cloudfront.net, or http://127.0.0.1:8080")
	flag.StringVar(&cfg.Token, "token", os.Getenv("TOKEN"), "the access token, when the site has one (X-Tarport-Token)")
	flag.StringVar(&cfg.Query, "query", "nginx", "what to search for")
	flag.StringVar(&cfg.Details, "details", "nginx", "the image whose details to read")
	flag.StringVar(&cfg.Image, "image", "hello-world:latest", "a small public image to download end to end")
	flag.StringVar(&cfg.Platform, "platform", "linux/amd64", "its platform")
	flag.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "how long the download may take to be ready")
	flag.Parse()
	if cfg.Site == "" {
		fmt.Fprintln(os.Stderr, "smoke: give the site: make smoke SITE=https://... (or -site)")
		os.Exit(2)
	}
	cfg.Log = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	rep, err := run(ctx, cfg)
	fmt.Printf("cost: %d requests, %d bytes of API answers, %d bytes of tar, in %s\n",
		rep.Requests, rep.APIBytes, rep.TarBytes, time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		fmt.Printf("FAIL %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("PASS %d checks against %s\n", len(rep.Passed), cfg.Site)
}
