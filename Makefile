# edgeswitch: build, test and try the zero-downtime switch.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
GO      ?= go
# pipefail: a benchmark that fails must fail make bench, not vanish into tee.
SHELL       := /bin/bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: all
all: build

.PHONY: build
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/edgeswitch ./cmd/edgeswitch

# deps installs what the tests and the demo run against: Debian's nginx-light
# (and its Lua module, for the Lua test config), lintian for the .deb's
# test and sudo for the test of a deploy user's sudoers line. It needs root.
.PHONY: deps
deps:
	@command -v nginx >/dev/null && [ -e /etc/nginx/modules-enabled/50-mod-http-lua.conf ] && command -v lintian >/dev/null && command -v sudo >/dev/null || { \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light libnginx-mod-http-lua lintian sudo; }

# test runs the unit tests and the end-to-end tests against a real nginx,
# systemd user manager and D-Bus. -p 1 runs the packages one at a time: the
# load tests of two packages at once would measure each other on a small
# machine.
.PHONY: test
test: deps
	$(GO) test -count=1 -p 1 -timeout 30m ./...

# test-repeat runs the tests that TEST matches COUNT times in a row and
# stops at the first failure, for whoever changes an end-to-end test (not in
# CI): make test-repeat TEST=TestBakeOfAHealthyBuild COUNT=30. Keep the CPU
# busy beside it (stress-ng --cpu 2) to find a test that only passes on an
# idle machine.
TEST  ?=
COUNT ?= 10
PKG   ?= ./cmd/edgeswitch/
.PHONY: test-repeat
test-repeat: deps
	@[ -n "$(TEST)" ] || { echo "usage: make test-repeat TEST=NAME [COUNT=10] [PKG=./cmd/edgeswitch/]"; exit 2; }
	$(GO) test -count=$(COUNT) -failfast -timeout 0 -run '$(TEST)' -v $(PKG)

# test-short runs what needs no nginx or systemd: under -short every
# end-to-end test skips (internal/testedge.New), installed or not.
.PHONY: test-short
test-short:
	$(GO) test -short ./...

.PHONY: lint
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt wants to change:"; echo "$$out"; exit 1; }

# bench measures edgeswitch on the sandbox edge beside the alternatives
# (failed requests, switch overhead, readiness delay), in socket and reload
# mode, the failed requests again on a machine with Debian's nginx.service
# (systemd as PID 1), the bad build's failures and the config scale beside
# nginx -t, prints the figures and writes BENCHMARKS.md. Each figure is a
# median over BENCH_COUNT runs; bin/bench.txt keeps the raw output. About
# 35 minutes with BENCH_COUNT=5.
BENCH_COUNT ?= 5
.PHONY: bench
bench: deps
	@mkdir -p bin
	$(GO) test -run '^$$' -bench '^Benchmark(FailedRequests|SwitchOverhead|SocketOverhead|Readiness)$$' -benchtime 20x -count $(BENCH_COUNT) -timeout 60m ./cmd/edgeswitch/ | tee bin/bench.txt
	$(GO) test -run '^$$' -bench '^BenchmarkMachineFailedRequests$$' -benchtime 20x -count $(BENCH_COUNT) -timeout 40m ./cmd/edgeswitch/ | tee -a bin/bench.txt
	$(GO) test -run '^$$' -bench BadBuild -benchtime 3x -count $(BENCH_COUNT) -timeout 30m ./cmd/edgeswitch/ | tee -a bin/bench.txt
	$(GO) test -run '^$$' -bench . -benchtime 5x -count $(BENCH_COUNT) -timeout 30m ./upstream/ | tee -a bin/bench.txt
	$(GO) run ./internal/benchreport -in bin/bench.txt -out BENCHMARKS.md -nginx /usr/sbin/nginx

# fuzz grows the upstream editor's corpus in upstream/testdata/fuzz.
.PHONY: fuzz
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzTo -fuzztime 2m ./upstream/

# soak switches 200 times in a row under load and checks for leaks.
.PHONY: soak
soak: deps
	$(GO) test -count=1 -timeout 30m -run TestSoak -v ./cmd/edgeswitch/ -soak 200

# demo brings up a sandbox edge, switches under load and tears it down, in
# socket mode (a link moves, nginx never reloads) under clients that never
# resend; make demo MODE=reload shows the reload mode.
MODE ?= socket
.PHONY: demo
demo: deps build
	$(GO) run ./internal/testedge/demo -bin bin/edgeswitch -mode $(MODE)

# man writes docs/edgeswitch.1 from the CLI's own grammar; commit the result.
# -c /dev/null: the page must not depend on this host's config file.
.PHONY: man
man: build
	@mkdir -p docs
	bin/edgeswitch -c /dev/null man > docs/edgeswitch.1.tmp
	mv docs/edgeswitch.1.tmp docs/edgeswitch.1

# deb builds dist/edgeswitch_<version>_<arch>.deb with nfpm (run through
# go run, so go.mod stays as it is): a static stripped binary, the man page,
# completions, the init examples and /var/lib/edgeswitch; no unit.
# Check it with lintian (apt-get install lintian).
.PHONY: deb
deb:
	GO="$(GO)" packaging/build-deb.sh

.PHONY: clean
clean:
	rm -rf bin
