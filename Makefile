# tarport: `make run` runs the product locally, `make test` installs what the
# tests need and runs them all. See README.md.
SHELL := bash
GO ?= go
TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(CURDIR)/.tools/py/bin:$(PATH)

.PHONY: run build test test-deps check fuzz bench screenshots smoke clean

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

## screenshots: the web UI's main screens at phone and desktop widths, light and dark,
## into docs/screenshots/ (a real chromium against the local server and its fakes)
screenshots: test-deps
	TARPORT_REQUIRE_TOOLS=1 TARPORT_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test ./infra/webtest -run '^TestScreenshots$$' -count=1 -v

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

## smoke: check a running tarport end to end: make smoke SITE=https://... [TOKEN=...]
## (health, search, details, one small public image downloaded and verified; prints the cost)
smoke:
	@if [ -z "$(SITE)" ]; then echo "make smoke: give SITE=https://<distribution>.cloudfront.net (or http://127.0.0.1:8080)" >&2; exit 2; fi
	$(GO) run ./infra/smoke -site "$(SITE)" -token "$(TOKEN)" $(SMOKEFLAGS)

clean:
	rm -rf bin .data

# ---- AWS (docs/DEPLOY.md) ----

# sam build (template.yaml: BuildMethod makefile, CodeUri .) runs
# `make build-<LogicalId>` with ARTIFACTS_DIR set; each target writes one
# function's $(ARTIFACTS_DIR)/bootstrap for provided.al2023. Tests set
# LAMBDA_GOARCH=amd64 to run a bootstrap under the Lambda emulator here.
LAMBDA_GOARCH ?= arm64
# make deploy: the stack and region of samconfig.toml unless given.
STACK_NAME ?= $(or $(shell sed -n 's/^stack_name *= *"\(.*\)"/\1/p' samconfig.toml | head -n1),tarport)
DEPLOY_REGION ?= $(or $(shell sed -n 's/^region *= *"\(.*\)"/\1/p' samconfig.toml | head -n1),us-east-1)

.PHONY: build-SearchFunction build-DetailsFunction build-PopularFunction build-DownloadFunction build-AssembleFunction build-WarmFunction deploy

# lambda-bootstrap builds ./functions/$(1) as $(ARTIFACTS_DIR)/bootstrap.
define lambda-bootstrap
	@if [ -z "$(ARTIFACTS_DIR)" ]; then echo "$@: ARTIFACTS_DIR is not set (sam build sets it; by hand: make $@ ARTIFACTS_DIR=dir)" >&2; exit 1; fi
	CGO_ENABLED=0 GOOS=linux GOARCH=$(LAMBDA_GOARCH) $(GO) build -trimpath -tags lambda.norpc -ldflags="-s -w" -o "$(ARTIFACTS_DIR)/bootstrap" ./functions/$(1)
endef

## build-SearchFunction, build-DetailsFunction, build-PopularFunction, build-DownloadFunction,
## build-AssembleFunction, build-WarmFunction: one Lambda's $(ARTIFACTS_DIR)/bootstrap (sam build runs these)
build-SearchFunction:
	$(call lambda-bootstrap,search)

build-DetailsFunction:
	$(call lambda-bootstrap,details)

build-PopularFunction:
	$(call lambda-bootstrap,popular)

build-DownloadFunction:
	$(call lambda-bootstrap,download)

build-AssembleFunction:
	$(call lambda-bootstrap,assemble)

build-WarmFunction:
	$(call lambda-bootstrap,warm)

## deploy: sam build + sam deploy, then web/ to the web bucket and a CloudFront invalidation
## (needs sam, aws and AWS credentials; STACK_NAME, DEPLOY_REGION default to samconfig.toml's)
deploy:
	@command -v sam >/dev/null 2>&1 || { echo "make deploy: the AWS SAM CLI (sam) is not installed; see docs/DEPLOY.md" >&2; exit 1; }
	@command -v aws >/dev/null 2>&1 || { echo "make deploy: the AWS CLI (aws) is not installed; see docs/DEPLOY.md" >&2; exit 1; }
	sam build
	sam deploy --stack-name "$(STACK_NAME)" --region "$(DEPLOY_REGION)" $(SAM_DEPLOY_FLAGS)
	@set -euo pipefail; \
	output() { aws cloudformation describe-stacks --region "$(DEPLOY_REGION)" --stack-name "$(STACK_NAME)" \
		--query "Stacks[0].Outputs[?OutputKey=='$$1'].OutputValue" --output text; }; \
	bucket=$$(output WebBucketName); dist=$$(output DistributionId); site=$$(output SiteUrl); \
	if [ -z "$$bucket" ] || [ "$$bucket" = None ] || [ -z "$$dist" ] || [ "$$dist" = None ]; then \
		echo "make deploy: stack $(STACK_NAME) has no WebBucketName/DistributionId outputs" >&2; exit 1; fi; \
	aws s3 sync web/ "s3://$$bucket/" --delete --exclude README.md --exclude '*.go' --region "$(DEPLOY_REGION)"; \
	aws cloudfront create-invalidation --distribution-id "$$dist" --paths '/*' --output text --query Invalidation.Id; \
	echo "tarport is at $$site"
