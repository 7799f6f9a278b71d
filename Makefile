# Postwarden. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

GO ?= go
CONTROLLER_GEN := $(GO) tool controller-gen
# Control-plane binaries for envtest, built once from the Go module proxy (hack/envtest-assets.sh).
ENVTEST_BIN_DIR ?= $(CURDIR)/bin/envtest
export ENVTEST_BIN_DIR
# The image's version and name. `make image` builds it offline (hack/image).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_REPO ?= ghcr.io/postwarden/postwarden
IMAGE ?= $(IMAGE_REPO):$(VERSION)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: ## Generate deepcopy code for the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: manifests
manifests: ## Generate CRDs and RBAC into config/, copy them into the Helm chart, and write docs/crd-reference.md.
	$(CONTROLLER_GEN) crd paths="./api/..." output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=postwarden-operator paths="./controllers/..." output:rbac:artifacts:config=config/rbac
	hack/sync-chart.sh
	$(GO) run ./hack/crdref -crds config/crd/bases -out docs/crd-reference.md

.PHONY: verify-gen
verify-gen: generate manifests ## Fail when generated files are stale.
	@git diff --exit-code -- api config charts docs/crd-reference.md || { echo "generated files are stale: run 'make generate manifests' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api config charts docs/crd-reference.md)" || { git status --porcelain -- api config charts docs/crd-reference.md; echo "untracked generated files: run 'make generate manifests' and commit"; exit 1; }

.PHONY: fmt
fmt: ## Run gofmt.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet (also on the dev-only files behind -tags dev).
	$(GO) vet ./...
	$(GO) vet -tags dev .
	$(GO) vet -tags cluster ./test/cluster

.PHONY: envtest
envtest: ## Build (once) kube-apiserver, etcd and kubectl for tests.
	@hack/envtest-assets.sh >/dev/null

.PHONY: test-deps
test-deps: ## Install what the tests drive: real SMTP clients (swaks, python3) and jq.
	@hack/test-deps.sh

.PHONY: test
test: verify-gen vet envtest test-deps ## Run every test against a real API server.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(GO) test -race -shuffle=on -count=1 ./...

.PHONY: test-cluster
test-cluster: envtest test-deps ## The chart and image in a real single-node cluster with cert-manager (root; hack/cluster.sh).
	hack/cluster-deps.sh
	hack/cluster-assets.sh >/dev/null
	$(GO) test -tags cluster -count=1 -v -timeout 40m ./test/cluster

# Fuzz targets, as package:Target; their seed corpora run in `make test`.
FUZZ_TARGETS := relay/internal/smtpd:FuzzSession relay/internal/smtpd:FuzzFieldNames \
	relay/internal/directory:FuzzParseMailbox relay/internal/proxyproto:FuzzReadHeader \
	relay/snapshot:FuzzUnmarshal relay/internal/dsn:FuzzHeaderSection
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s); findings land in testdata/fuzz.
	for t in $(FUZZ_TARGETS); do \
		echo "fuzz: $$t for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*} || exit 1; \
	done

.PHONY: bench
bench: envtest ## Benchmarks: the relay beside a private Postfix (installed from Debian when root), then package benchmarks.
	$(GO) test -run '^$$' -bench . -benchtime 500x -count 3 -timeout 20m ./test/bench
	$(GO) test -p 1 -run '^$$' -bench . -benchmem ./relay/internal/directory ./relay/internal/smtpd ./relay/internal/dkim ./relay/internal/sendlimit ./controllers/compiler
	$(GO) test -run '^$$' -bench BenchmarkAccept -benchmem ./relay/internal/spool
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" $(GO) test -run '^$$' -bench 'BenchmarkReload|BenchmarkUserStory' -benchtime 5x -benchmem ./relay ./test/e2e

.PHONY: build
build: ## Build bin/postwarden, the binary the image ships.
	$(GO) build -o bin/postwarden .

.PHONY: build-dev
build-dev: ## Build bin/postwarden-dev: postwarden plus the `dev` command (-tags dev), which links envtest.
	$(GO) build -tags dev -o bin/postwarden-dev .

.PHONY: run
run: envtest build-dev ## Start the whole system locally on an embedded control plane.
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" bin/postwarden-dev dev $(DEV_FLAGS)

.PHONY: image
image: ## Build the image without Docker: bin/image/postwarden-oci (OCI layout, amd64+arm64) and an amd64 tarball to docker/podman load.
	for arch in amd64 arm64; do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/linux-$$arch/postwarden . ; \
	done
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct)} $(GO) run ./hack/image \
		-binary linux/amd64=bin/linux-amd64/postwarden \
		-binary linux/arm64=bin/linux-arm64/postwarden \
		-version $(VERSION) -revision $$(git rev-parse HEAD) \
		-tag $(IMAGE) \
		-oci-layout bin/image/postwarden-oci \
		-tar bin/image/postwarden-$(VERSION)-linux-amd64.tar
