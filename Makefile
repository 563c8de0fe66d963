# tributary — see README.md. `make test` and `make demo` work on a fresh Debian 12
# machine: they install and start what they need.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BIN       := bin/tributary
# Packages whose benchmarks make bench runs; BENCH filters them (a go test
# -bench pattern, passed on as written: make bench BENCH='EndToEndPostgres$' works),
# BENCHCOUNT repeats each.
BENCH      ?= .
BENCHTIME  ?= 1x
BENCHCOUNT ?= 1
# Where make bench keeps the servers' data: memory (/dev/shm) when it has
# 8 GiB free, so ClickHouse's part files and PostgreSQL's WAL do not measure
# the machine's file system (see docs/benchmarks.md); otherwise TMPDIR.
BENCH_TMPDIR ?= $(shell df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 && $$4 > 8 * 1024 * 1024 { print "/dev/shm" }')
BENCH_DATA   := $(or $(BENCH_TMPDIR),$${TMPDIR:-/tmp})

.PHONY: build test check unit bench demo clean fmt vet

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt: these files need formatting:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# check is what `make test` runs inside the private servers' environment.
check: fmt vet
	$(GO) test -race -count=1 -v -run '^TestSmoke' ./internal/testenv
	$(GO) test -race -count=1 -timeout 40m ./...

# test starts a private ClickHouse and PostgreSQL (installing ClickHouse when
# missing), runs gofmt, go vet and go test -race against them, and stops them.
test:
	bash scripts/testbed.sh -- $(MAKE) --no-print-directory check

# bench runs the benchmarks against private servers; numbers go to docs/benchmarks.md.
bench:
	@echo "bench: servers' data under $(BENCH_DATA)"
	TMPDIR=$(BENCH_DATA) bash scripts/testbed.sh -- $(GO) test -run '^$$' -bench '$(value BENCH)' -benchtime $(BENCHTIME) -count $(BENCHCOUNT) -benchmem -timeout 60m ./...

# demo replicates the emulator's history into a private ClickHouse and prints a summary.
demo: build
	bash scripts/demo.sh

clean:
	rm -rf bin
