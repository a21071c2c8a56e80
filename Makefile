# Nagare: the two set-up commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin

.PHONY: all setup build test test-short vet bench bench-go demo screenshots acceptance fmt clean

all: build

setup:
	@./scripts/setup.sh

build:
	$(GO) build -o $(BIN)/ ./cmd/...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

# The whole suite: unit, fuzz seeds, API and CLI end to end, namespaces (root).
# test/e2e runs after the rest: the kernel's per-CPU packet backlog is shared
# by every namespace, and the datapath packages' bursts would otherwise drop
# the e2e tests' probes. It runs twice: on the userspace datapath and on the
# kernel (eBPF) one.
test: setup vet
	$(GO) test -count=1 -timeout 30m $$($(GO) list ./... | grep -v /test/e2e)
	$(GO) test -count=1 -timeout 20m ./test/e2e/...
	NAGARE_E2E_DATAPATH=ebpf $(GO) test -count=1 -timeout 20m ./test/e2e/...

# gophercloud's own networking acceptance suite, unmodified, against a real
# server and agent on loopback (about 1.5 minutes; part of make test too).
acceptance: setup
	$(GO) test -count=1 -timeout 30m -v -run TestGophercloudNetworking ./test/acceptance/

test-short: vet
	$(GO) test -count=1 -short ./...

# Benchmarks: Go benchmarks of the control plane (and, later, the datapath
# side by side with the kernel). Prints one table; see README.
bench: setup build
	./scripts/bench.sh

demo: setup build
	./scripts/demo.sh

# Pictures of the dashboard's pages for the README (docs/img/*.png): the
# browser test, run with a real server, agents and VMs, saves each page.
screenshots: setup
	NAGARE_SCREENSHOTS=$(CURDIR)/docs/img $(GO) test -count=1 -timeout 10m -run '^(TestDashboard|TestDashboardAtScale)$$' -v ./test/e2e/

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
