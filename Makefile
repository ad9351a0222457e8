# azp-entrypoint. `make demo` and `make test` work on a fresh machine with Go; `make tools` installs
# the linters at pinned versions into .tools/bin (CI runs it from .ci/run).
SHELL        := bash
GO           ?= go
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT       ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
PKG          := github.com/azp-entrypoint/azp-entrypoint
LDFLAGS      := -s -w -X $(PKG)/internal/version.Version=$(VERSION) -X $(PKG)/internal/version.Commit=$(COMMIT)
TOOLS        := $(CURDIR)/.tools/bin
export PATH  := $(TOOLS):$(PATH)

STATICCHECK_VERSION ?= v0.8.2
TFLINT_VERSION      ?= v0.55.1
TFSEC_VERSION       ?= v1.28.14

.PHONY: all build build-native test lint bench soak demo tools clean

all: build

# Static binaries (no cgo) for both Fargate architectures, plus native ones for local use.
build:
	@mkdir -p bin
	for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/azp-entrypoint-linux-$$arch ./cmd/azp-entrypoint || exit 1; \
	done
	$(MAKE) build-native

build-native:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/azp-entrypoint ./cmd/azp-entrypoint
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/azp-sim ./cmd/azp-sim

# The whole suite. End-to-end and PID-1 tests need root (they run in PID namespaces they create)
# and skip with a reason otherwise.
test:
	$(GO) test -count=1 -timeout 20m ./...

lint:
	@out=$$(gofmt -l cmd internal bench 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null; then staticcheck ./...; else echo "staticcheck not installed (make tools)"; exit 1; fi
	@if command -v shellcheck >/dev/null; then git ls-files '*.sh' '.ci/run' | xargs -r shellcheck; else echo "shellcheck not installed (apt-get install shellcheck)"; exit 1; fi
	bash scripts/lint-terraform.sh

bench: build-native
	$(GO) run ./bench -out bench/results.md

# 1,000 jobs through the scaler with random faults (not part of make test); writes bench/soak.md.
soak: build-native
	$(GO) run ./bench -soak -out bench/soak.md

demo: build-native
	bash scripts/demo.sh

tools:
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	GOBIN=$(TOOLS) $(GO) install github.com/terraform-linters/tflint@$(TFLINT_VERSION)
	GOBIN=$(TOOLS) $(GO) install github.com/aquasecurity/tfsec/cmd/tfsec@$(TFSEC_VERSION)

clean:
	rm -rf bin
