# mirrorkit build, test, demo and benchmark entry points. Every tool these targets need is installed by them.
SHELL      := /bin/bash
GO         ?= go
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
LDFLAGS    := -X github.com/mirrorkit/mirrorkit/engine/version.Software=$(VERSION)
BIN        := bin
TOOLS      := $(CURDIR)/.tools
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
FUZZTIME   ?= 20s

.PHONY: all build test test-short demo bench longfaults fuzz lint tools chromium clean

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

# The whole suite: unit tests (with the race detector), end-to-end tests on the real binaries, vet and format checks.
test: lint chromium tools
	$(GO) test -race -timeout 20m ./...

test-short:
	$(GO) test -short ./...

demo: build
	./scripts/demo.sh

bench: build tools
	./scripts/bench.sh

# The long linearizability run under faults (200 rounds, about 15 minutes), recorded in bench/longfaults.md for BENCHMARKS.md.
longfaults:
	./scripts/longfaults.sh

# Each fuzz target for FUZZTIME (go test runs one fuzz target at a time).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.tools/*' -not -path './.bench/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Debian's chromium, for the Mirror Monitor's browser test (headless).
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# Test servers used by later test tiers, installed into a git-ignored folder.
tools: $(TOOLS)/bin/minio

$(TOOLS)/bin/minio:
	GOBIN=$(TOOLS)/bin $(GO) install github.com/minio/minio@$(MINIO_VERSION)

clean:
	rm -rf $(BIN)
