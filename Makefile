# tarport: `make run` runs the product locally, `make test` installs what the
# tests need and runs them all. See README.md.
SHELL := bash
GO ?= go
TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)

.PHONY: run build test test-deps check fuzz bench clean

## run: the whole product as one local process on http://127.0.0.1:8080
run:
	$(GO) run ./infra/local

## build: the local binary in bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/tarport ./infra/local

## test-deps: registries, runtimes and readers the tests start for real
test-deps:
	./infra/dev/install-deps.sh

## check: formatting and vet
check:
	@unformatted=$$(gofmt -l shared infra functions); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

## test: everything, with missing tools an error rather than a skip
test: test-deps check
	TARPORT_REQUIRE_TOOLS=1 $(GO) test -count=1 -timeout 45m ./...

## fuzz: a short run of every fuzz target
fuzz:
	$(GO) test ./shared/tarplan -run '^$$' -fuzz FuzzParts -fuzztime 60s
	$(GO) test ./shared/tarplan -run '^$$' -fuzz FuzzHeader -fuzztime 60s

## bench: tarport local against crane, skopeo and regctl on a local registry;
## rewrites the figures in docs/BENCHMARKS.md (e.g. BENCHFLAGS="-runs 5 -cases small,1g")
bench:
	./infra/dev/install-deps.sh
	./infra/bench/install-peers.sh
	GO=$(GO) $(GO) run ./infra/bench $(BENCHFLAGS)

clean:
	rm -rf bin .data
