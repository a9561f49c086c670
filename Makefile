# strata build, test and benchmark entry points. `make test` is what CI runs.
GO        ?= go
PKG       := github.com/strata-ml/strata
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X $(PKG)/stages.version=$(VERSION) -X $(PKG)/stages.commit=$(COMMIT)
BIN       := bin/strata
FUZZTIME  ?= 15s
BENCHTIME ?= 1s

.PHONY: all build test test-race bench fuzz vet clean demo

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

vet:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# test: vet + gofmt, every package, and the numerics again under the race
# detector.
test: vet
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race ./compute/...

# demo: the whole pilot on the digits data embedded in the binary, in a
# fresh directory under TMPDIR (or DEMOFLAGS='--workdir DIR'); prints
# the decision, the headline table and the path of report.html.
demo:
	$(GO) run . pilot --demo $(DEMOFLAGS)

# bench: the benchmark table of issue #2 (apply, apply + gradients and
# projection of every family vs dense), printed as ratios.
bench: bin
	$(GO) test -run '^$$' -bench 'Benchmark(Apply|ApplyGrad)$$' -benchtime $(BENCHTIME) ./compute/ | tee bin/bench-apply.txt
	$(GO) test -run '^$$' -bench 'BenchmarkProject$$' -benchtime 1x ./compute/ | tee bin/bench-project.txt
	$(GO) run .ci/benchtable.go bin/bench-apply.txt bin/bench-project.txt

# fuzz: a short run of every fuzz target.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

clean:
	rm -rf bin

bin:
	mkdir -p bin
