# azp-entrypoint. `make demo` and `make test` work on a fresh machine with Go; `make tools` installs
# the linters at pinned versions into .tools/bin (scripts/tools.sh; CI runs it from .ci/run).
SHELL        := bash
GO           ?= go
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT       ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
PKG          := github.com/azp-entrypoint/azp-entrypoint
LDFLAGS      := -s -w -X $(PKG)/internal/version.Version=$(VERSION) -X $(PKG)/internal/version.Commit=$(COMMIT)
TOOLS        := $(CURDIR)/.tools/bin
export PATH  := $(TOOLS):$(PATH)

.PHONY: all build build-native test lint bench soak demo demo-scale tools clean image test-containers container-tools

all: build

# Static binaries (no cgo) for both Fargate architectures, plus native ones for local use.
build:
	@mkdir -p bin
	for arch in amd64 arm64; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/azp-entrypoint-linux-$$arch ./cmd/azp-entrypoint || exit 1; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w' -o bin/azp-sim-linux-$$arch ./cmd/azp-sim || exit 1; \
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
	@if ! d=$$($(GO) mod tidy -diff); then echo "go.mod/go.sum not tidy (run go mod tidy):"; echo "$$d"; exit 1; fi
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

# Autoscaling on a local ECS whose tasks run the entrypoint in PID namespaces (needs root).
demo-scale: build-native
	bash scripts/demo-scale.sh

# Pinned versions and the per-version build cache: scripts/tools.sh.
tools:
	bash scripts/tools.sh

# The agent image (Alpine by default; BASE_IMAGE=... for a glibc base) from the binaries of `make build`.
IMAGE      ?= azp-entrypoint:local
BASE_IMAGE ?= alpine:3.22
image: build
	docker buildx build --load -f image/Dockerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

# buildx and compose (pinned, from the Go module proxy) and the Debian base the tests build on.
container-tools:
	bash scripts/install-docker-plugins.sh
	bash scripts/debian-base.sh >/dev/null

# The image and compose.yaml built and run in the local Docker engine (internal/containertest and
# the ECS task definition run in internal/deploytest). Skipped with the reason when no engine answers.
test-containers:
	@if ! docker version >/dev/null 2>&1; then echo "container tests skipped: no Docker engine answers (docker version)"; exit 0; fi; \
	  set -e; bash scripts/install-docker-plugins.sh; base="$$(bash scripts/debian-base.sh)"; \
	  AZP_CONTAINER_TESTS=1 AZP_TEST_BASE_IMAGE="$$base" $(GO) test -p 1 -count=1 -timeout 25m -v \
	    -run 'TestCompose$$|TestRunOnce|TestImageContent|TestHealthAnswersFast|TestECSContainer' \
	    ./internal/containertest/ ./internal/deploytest/

clean:
	rm -rf bin dist/containertest
