# strata build, test and benchmark entry points. `make test` is what CI runs.
GO        ?= go
PKG       := github.com/strata-ml/strata
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X $(PKG)/internal/provenance.version=$(VERSION) -X $(PKG)/internal/provenance.commit=$(COMMIT)
BIN       := bin/strata
FUZZTIME  ?= 15s
BENCHTIME ?= 1s

# BLAS/LAPACK backend: OpenBLAS + LAPACKE through cgo, the faster one
# and the one the performance targets are measured on
# (-tags openblas) when both are installed (Debian: libopenblas-dev
# liblapacke-dev), else pure Go gonum. `go build` alone is always gonum.
# OPENBLAS=0 forces gonum.
OPENBLAS  ?= $(shell { pkg-config --exists openblas lapacke 2>/dev/null || { test -e /usr/lib/x86_64-linux-gnu/libopenblas.so && test -e /usr/include/lapacke.h; }; } && echo 1 || echo 0)
# FFTW (Debian: libfftw3-dev) for the circulant and toeplitz families
# (-tags fftw), else gonum's FFT. FFTW=0 forces gonum's.
FFTW      ?= $(shell { pkg-config --exists fftw3 fftw3f 2>/dev/null || { test -e /usr/include/fftw3.h && test -e /usr/lib/x86_64-linux-gnu/libfftw3f.so; }; } && echo 1 || echo 0)
NATIVE    :=
ifeq ($(OPENBLAS),1)
NATIVE    += openblas
export CGO_ENABLED := 1
export CGO_LDFLAGS += -lopenblas -llapacke
endif
ifeq ($(FFTW),1)
NATIVE    += fftw
export CGO_ENABLED := 1
endif
TAGS      ?= $(strip $(NATIVE))
# The float32 training kernels (AdamW, gradient sums and norms) on AVX-512
# or AVX2 vectors: Go's simd experiment, amd64 only. SIMD=0 builds the
# portable loops (same bits, slower). `make build`, the native test run
# and `make bench` use it; the first test run checks the portable loops.
SIMD      ?= $(shell [ "$$($(GO) env GOARCH)" = amd64 ] && echo 1 || echo 0)
ifeq ($(SIMD),1)
SIMDENV   := GOEXPERIMENT=simd
endif

# ONNX Runtime backend (package onnxrt, -tags onnxruntime) when `make deps`
# has installed its library under DEPS_PREFIX; the binary is linked with
# that path as its default library (see onnxrt's doc for the discovery
# order). ONNXRUNTIME=0 forces the stub. Under CI, `make test` fails when
# either backend is missing instead of testing without it.
DEPS_PREFIX     ?= /usr/local/lib/strata
ONNXRUNTIME_LIB ?= $(DEPS_PREFIX)/lib/libonnxruntime.so.1
ONNXRUNTIME     ?= $(shell test -e $(ONNXRUNTIME_LIB) && echo 1 || echo 0)
ifeq ($(ONNXRUNTIME),1)
TAGS      += onnxruntime
ORTFLAGS  := -X $(PKG)/onnxrt.defaultLibrary=$(ONNXRUNTIME_LIB)
LDFLAGS   += $(ORTFLAGS)
export CGO_ENABLED := 1
endif
export STRATA_DEPS_PREFIX := $(DEPS_PREFIX)

.PHONY: all build test test-race bench fuzz vet clean demo evidence evidence-quick deps backends

all: build

# deps: the Debian packages and npm-shipped files of every optional backend
# and test reference (.ci/deps.sh says which); idempotent.
deps:
	.ci/deps.sh $(DEPS_PREFIX)

backends:
	@echo "backends: openblas=$(OPENBLAS) fftw=$(FFTW) onnxruntime=$(ONNXRUNTIME) simd=$(SIMD) (tags '$(TAGS)')"
	@if [ -n "$$CI" ] && [ "$(OPENBLAS)$(FFTW)$(ONNXRUNTIME)" != 111 ]; then \
	  echo "CI: a backend is missing: run 'make deps' first"; exit 1; fi

build:
	$(SIMDENV) $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) .

vet:
	$(GO) vet ./...
	$(if $(strip $(TAGS)),$(GO) vet -tags '$(TAGS)' ./...)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# test: vet + gofmt, every package, and the numerics, the plugin's and the
# sweep's concurrency again under the race detector.
test: vet backends
	$(GO) test -count=1 ./...
	$(GO) test -count=1 -race ./compute/...
	$(GO) test -count=1 -race -run 'Concurrent' ./plugin/...
	$(GO) test -count=1 -race -run '^TestSweep$$' ./stages/
ifneq ($(strip $(TAGS))$(SIMDENV),)
	@echo "== the whole suite again on the native backends (tags '$(TAGS)', $(SIMDENV))"
	$(SIMDENV) $(GO) test -count=1 -tags '$(TAGS)' -ldflags '$(ORTFLAGS)' ./...
	$(SIMDENV) $(GO) test -count=1 -race -tags '$(TAGS)' ./compute/...
endif

# demo: the whole pilot on the digits data embedded in the binary, in a
# fresh directory under TMPDIR (or DEMOFLAGS='--workdir DIR'); prints
# the decision, the headline table and the path of report.html. It runs
# the binary `make build` makes: the same backend, tags and version stamp
# as the image.
demo: build
	$(BIN) pilot --demo $(DEMOFLAGS)

# evidence: docs/EVIDENCE.md, what strata's own sweeps say about the
# claims behind S + R. The sweeps of examples/evidence/ with the binary
# `make build` makes, into EVIDENCE_DIR: digits, wine, iris (10 candidates,
# 6 learning rates, 5 seeds each); MNIST (a subset written by
# examples/evidence/mnist from the Go module proxy's copy of the IDX files)
# with an MLP of width 1024 (mnist.yaml); the PyTorch CNN and transformer
# on the same subset through the PyTorch loop, validated in ONNX Runtime
# (examples/evidence/torchsweep, the two at once: PyTorch runs on one
# thread); then the document rendered from their outputs. Each part prints
# its wall time. Needs python3-torch and python3-onnx (make deps) and ONNX
# Runtime.
#
# evidence-quick: the CI variant (.ci/run, after make test), under two
# minutes: the same pipeline on 1,000 + 300 MNIST rows, one seed, an MLP of
# width 64 with one weight-only, one data-aware and one budgeted candidate
# and two learning rates, the PyTorch classifiers for one epoch, into
# EVIDENCE_QUICK_DIR; it fails when a step fails or the document lacks a
# section.
EVIDENCE_DIR       ?= bin/evidence
EVIDENCE_QUICK_DIR ?= bin/evidence-quick
MNIST_PY           ?= /usr/bin/python3
comma := ,
timed = s=$$(date +%s); $(2) && echo "evidence: $(1) took $$(( $$(date +%s) - s )) s"
TORCHSWEEP = $(GO) run ./examples/evidence/torchsweep -strata $(BIN) -python $(MNIST_PY)
evidence: build
	@$(call timed,digits,$(BIN) sweep --config examples/evidence/digits.yaml --out $(EVIDENCE_DIR)/digits)
	@$(call timed,wine,$(BIN) sweep --config examples/evidence/wine.yaml --out $(EVIDENCE_DIR)/wine)
	@$(call timed,iris,$(BIN) sweep --config examples/evidence/iris.yaml --out $(EVIDENCE_DIR)/iris)
	@$(call timed,mnist data,$(GO) run ./examples/evidence/mnist -train-rows 10000 -test-rows 2000 -out $(EVIDENCE_DIR)/mnist-data)
	@$(call timed,mnist MLP,$(BIN) sweep --config examples/evidence/mnist.yaml --train $(EVIDENCE_DIR)/mnist-data/train.csv --test $(EVIDENCE_DIR)/mnist-data/test.csv --out $(EVIDENCE_DIR)/mnist)
	@$(call timed,mnist CNN and transformer,{ $(TORCHSWEEP) -class MnistCNN -train $(EVIDENCE_DIR)/mnist-data/train.csv -test $(EVIDENCE_DIR)/mnist-data/test.csv -out $(EVIDENCE_DIR)/mnist-cnn & \
	  $(TORCHSWEEP) -class MnistTransformer -train $(EVIDENCE_DIR)/mnist-data/train.csv -test $(EVIDENCE_DIR)/mnist-data/test.csv -out $(EVIDENCE_DIR)/mnist-transformer; b=$$?; wait $$! && [ $$b = 0 ]; })
	@$(call timed,render,$(GO) run ./examples/evidence -out docs/EVIDENCE.md -mnist $(EVIDENCE_DIR)/mnist-data $(EVIDENCE_DIR)/digits $(EVIDENCE_DIR)/wine $(EVIDENCE_DIR)/iris $(EVIDENCE_DIR)/mnist $(EVIDENCE_DIR)/mnist-cnn $(EVIDENCE_DIR)/mnist-transformer)

EVIDENCE_QUICK_SETS := mnist mnist-cnn mnist-transformer
EVIDENCE_QUICK_CANDIDATES := \
  --candidate name=monarch-b4-res4,structure=monarch,blocks=4,residual=lowrank,residual-rank=4 \
  --candidate name=monarch-b4-res4-calib,structure=monarch,blocks=4,residual=lowrank,residual-rank=4,calibration=true,calibration-fit=residual \
  --candidate name=budget50,structure=auto,param-budget=0.5
evidence-quick: build
	@rm -rf $(EVIDENCE_QUICK_DIR)
	@$(call timed,mnist data,$(GO) run ./examples/evidence/mnist -train-rows 1000 -test-rows 300 -out $(EVIDENCE_QUICK_DIR)/mnist-data)
	@$(call timed,mnist MLP,$(BIN) sweep --config examples/evidence/mnist.yaml --train $(EVIDENCE_QUICK_DIR)/mnist-data/train.csv --test $(EVIDENCE_QUICK_DIR)/mnist-data/test.csv \
	  --init mlp:784-64-64-10:relu --baseline-epochs 3 --seeds 0 --lrs 1e-3$(comma)1e-2 \
	  $(EVIDENCE_QUICK_CANDIDATES) --out $(EVIDENCE_QUICK_DIR)/mnist >/dev/null 2>$(EVIDENCE_QUICK_DIR)/mnist.log || { tail -40 $(EVIDENCE_QUICK_DIR)/mnist.log; exit 1; })
	@$(call timed,mnist CNN and transformer,{ $(TORCHSWEEP) -class MnistCNN -seeds 0 -baseline-epochs 1 -epochs 1 -train $(EVIDENCE_QUICK_DIR)/mnist-data/train.csv -test $(EVIDENCE_QUICK_DIR)/mnist-data/test.csv -out $(EVIDENCE_QUICK_DIR)/mnist-cnn & \
	  $(TORCHSWEEP) -class MnistTransformer -seeds 0 -baseline-epochs 1 -epochs 1 -train $(EVIDENCE_QUICK_DIR)/mnist-data/train.csv -test $(EVIDENCE_QUICK_DIR)/mnist-data/test.csv -out $(EVIDENCE_QUICK_DIR)/mnist-transformer; b=$$?; wait $$! && [ $$b = 0 ]; })
	@$(call timed,render,$(GO) run ./examples/evidence -out $(EVIDENCE_QUICK_DIR)/EVIDENCE.md -mnist $(EVIDENCE_QUICK_DIR)/mnist-data $(addprefix $(EVIDENCE_QUICK_DIR)/,$(EVIDENCE_QUICK_SETS)))
	@for h in '## Cost' '## A plain reading' '### Closing note' $(foreach s,$(EVIDENCE_QUICK_SETS),'## $(s)' '### $(s): cost'); do \
	  grep -qxF "$$h" $(EVIDENCE_QUICK_DIR)/EVIDENCE.md || { echo "evidence-quick: no '$$h' in $(EVIDENCE_QUICK_DIR)/EVIDENCE.md"; exit 1; }; done
	@echo "evidence-quick: $(EVIDENCE_QUICK_DIR)/EVIDENCE.md has every section"

# bench: the benchmark table of every family (apply, apply + gradients and
# projection vs dense, .ci/benchtable.go), then the performance table
# (.ci/benchperf.go): each figure beside its reference measured in the
# same run and whether its target is met.
#
#   - finetune samples/s (BenchmarkTrainStep) vs PyTorch
#     (examples/pytorch/bench_mlp.py, Debian's python3-torch), which runs
#     before and after strata's steps (the mean counts) and reports its
#     OpenBLAS core, threads and its rate against its own GEMM bound: the
#     table withholds the ratio when PyTorch ran below a quarter of it;
#   - monarch, circulant and toeplitz apply + gradients vs dense at n 4096
#     (BENCHCOUNT runs each, the fastest counts);
#   - strata convert of a 4096 x 4096 layer end to end (bin/strata, time
#     and peak RSS by /usr/bin/time -v, against the input file), and the
#     decomposition alone; polar; loading a 1 GiB model file;
#   - validate of three 784-1024-1024-10 models on 2,000 rows
#     (BenchmarkValidate; its models and data are made once, kept in
#     bin/bench-validate and not timed), the fastest of BENCHCOUNT runs;
#   - serving: the structured ONNX model of a 3-layer 4096-wide MLP
#     (monarch b4 + rank-16) against the dense one in ONNX Runtime, batch 1
#     and 64 (BenchmarkMLP4096, one thread each, run alternately).
#
# Every command runs with its backends' own kernel choice: OPENBLAS_CORETYPE
# and OPENBLAS_L2_SIZE are unset for these commands only (BENCHENV). PyTorch
# runs the way its users tune it here (TORCHENV): passive OpenMP waiting,
# and glibc keeping large tensors out of mmap and its heap untrimmed (without
# the trim threshold glibc returns the temporaries to the kernel every step
# and PyTorch spends its time in page faults). `uptime` is recorded at the
# start and the end: on a shared machine compare within one run.
BENCHENV   ?= env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
BENCHCOUNT ?= 3
TORCH_PY   ?= /usr/bin/python3
TORCHENV   ?= OMP_WAIT_POLICY=PASSIVE GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=4294967296
BIGMODEL   ?= bin/bench-big-4096.safetensors
bench: bin build
	echo "load: start $$(uptime)" > bin/bench-load-avg.txt
	$(BENCHENV) $(SIMDENV) $(GO) test -tags '$(TAGS)' -run '^$$' -bench 'Benchmark(Apply|ApplyGrad)$$' -benchtime $(BENCHTIME) ./compute/ | tee bin/bench-apply.txt
	$(BENCHENV) $(SIMDENV) $(GO) test -tags '$(TAGS)' -run '^$$' -bench 'BenchmarkApplyGrad/n=4096/(dense|monarch_b64_r1|circulant|toeplitz)$$' -count $(BENCHCOUNT) -benchtime $(BENCHTIME) ./compute/ | tee bin/bench-applygrad.txt
	$(BENCHENV) $(SIMDENV) $(GO) test -tags '$(TAGS)' -run '^$$' -bench 'BenchmarkProject$$' -benchtime 1x ./compute/ | tee bin/bench-project.txt
	$(GO) run .ci/benchtable.go bin/bench-apply.txt bin/bench-project.txt
	@if $(TORCH_PY) -c 'import torch' 2>/dev/null; then \
	  $(BENCHENV) $(TORCHENV) $(TORCH_PY) examples/pytorch/bench_mlp.py --threads 2 | tee bin/bench-torch.txt; \
	else echo "python3-torch not installed: no PyTorch reference" | tee bin/bench-torch.txt; fi
	$(BENCHENV) $(SIMDENV) $(GO) test -tags '$(TAGS)' -run '^$$' -bench 'Benchmark(Backend|TrainStep|TrainShards)$$' -benchtime 3s ./compute/ | tee bin/bench-train.txt
	@if $(TORCH_PY) -c 'import torch' 2>/dev/null; then \
	  $(BENCHENV) $(TORCHENV) $(TORCH_PY) examples/pytorch/bench_mlp.py --threads 2 | tee -a bin/bench-torch.txt; fi
	$(BENCHENV) $(SIMDENV) $(GO) test -tags '$(TAGS)' -run '^$$' -bench 'Benchmark(ConvertLayer|Polar)$$' -benchtime 1x ./compute/ | tee bin/bench-convert.txt
	test -e $(BIGMODEL) || $(GO) run .ci/bigmodel.go -n 4096 -out $(BIGMODEL)
	rm -rf bin/bench-big-out
	echo "convert input bytes: $$(stat -c %s $(BIGMODEL))" > bin/bench-convert-e2e.txt
	$(BENCHENV) /usr/bin/time -v $(BIN) convert --model $(BIGMODEL) --out bin/bench-big-out \
	  --structure monarch --blocks 4 --residual-rank 16 --activation identity 2>> bin/bench-convert-e2e.txt >/dev/null || true
	$(BENCHENV) $(SIMDENV) $(GO) test -tags '$(TAGS)' -ldflags '$(ORTFLAGS)' -run '^$$' -bench 'BenchmarkValidate$$' -benchtime 1x -count $(BENCHCOUNT) ./stages/ \
	  -args -validate-bench-dir $(CURDIR)/bin/bench-validate | tee bin/bench-validate.txt
	$(BENCHENV) $(GO) test -tags '$(TAGS)' -ldflags '$(ORTFLAGS)' -run '^$$' -bench 'BenchmarkMLP4096$$' -count $(BENCHCOUNT) ./lowering/ | tee bin/bench-serving.txt
	$(GO) test -run '^$$' -bench 'BenchmarkLoadModel$$' -benchtime 3x ./arrowio/ | tee bin/bench-load.txt
	echo "load: end $$(uptime)" >> bin/bench-load-avg.txt
	$(GO) run .ci/benchperf.go bin/bench-load-avg.txt bin/bench-train.txt bin/bench-torch.txt bin/bench-applygrad.txt bin/bench-convert.txt bin/bench-convert-e2e.txt bin/bench-load.txt bin/bench-validate.txt bin/bench-serving.txt

# fuzz: a short run of every fuzz target.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t"; \
	    $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

# image: the container image of manifests/Dockerfile (its build stage runs
# `make build`), tagged $(IMAGE_REPO):$(VERSION), the version `git describe`
# gives (a release tag vX.Y.Z, else the commit), never only latest. Needs a
# container engine (IMAGE_TOOL=podman for podman) that can pull the base
# images the Dockerfile pins by digest (GO_IMAGE, BASE_IMAGE to override)
# and reach the Go module proxy. `make image-push` pushes the tag.
#
# image-test: the CI check of the image where no registry is reachable:
# bases made from Debian's own packages (debootstrap, then docker import,
# cached in IMAGE_CI_CACHE), the image built on them by the legacy builder,
# then `pilot --demo` run inside it read-only, as user 65532, with every
# capability dropped and no network. Needs root, Debian's docker.io and
# debootstrap. Measured on the shared 2-core machine (load average 12):
# 13 min cold (6 min of debootstrap), 7 min with the bases cached and the
# sources changed (the build compiles everything), 3 s when nothing
# changed. Not part of `make test`; .ci/run runs it after `make test`.
IMAGE_TOOL     ?= docker
IMAGE_REPO     ?= ghcr.io/strata-ml/strata
IMAGE          ?= $(IMAGE_REPO):$(VERSION)
IMAGE_ARGS     := --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) \
  $(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE))
IMAGE_CI_CACHE ?= /var/tmp/strata-image
.PHONY: image image-push image-test
image:
	@command -v $(IMAGE_TOOL) >/dev/null || { echo "make image: $(IMAGE_TOOL) not found: it needs a container engine (Docker, or IMAGE_TOOL=podman), the base images of manifests/Dockerfile (pinned by digest; GO_IMAGE=..., BASE_IMAGE=... to override) and the Go module proxy"; exit 1; }
	$(IMAGE_TOOL) build -f manifests/Dockerfile $(IMAGE_ARGS) -t $(IMAGE) .
	@echo "built $(IMAGE)"
image-push: image
	$(IMAGE_TOOL) push $(IMAGE)
image-test:
	IMAGE_CI_CACHE=$(IMAGE_CI_CACHE) VERSION=$(VERSION) COMMIT=$(COMMIT) bash .ci/image-test.sh

clean:
	rm -rf bin

bin:
	mkdir -p bin

# proto: regenerate plugin/proto (committed) with protoc from Debian's
# protobuf-compiler and these pinned generators.
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
.PHONY: proto
proto:
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler"; exit 1; }
	GOBIN=$(CURDIR)/bin/protoc-gen $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/bin/protoc-gen $(GO) install $(PROTOC_GEN_GO_GRPC)
	protoc --plugin=protoc-gen-go=bin/protoc-gen/protoc-gen-go \
	  --plugin=protoc-gen-go-grpc=bin/protoc-gen/protoc-gen-go-grpc \
	  --go_out=. --go_opt=paths=source_relative \
	  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
	  plugin/proto/strata.proto

# onnx-proto: regenerate arrowio/onnx/onnxpb/onnx.pb.go (committed) from the
# onnx.proto of Debian's python3-onnx with Debian's protoc and the
# protoc-gen-go of go.mod's google.golang.org/protobuf. The test it runs
# (without -update, part of `make test`) fails when the committed file is
# not exactly what they generate.
.PHONY: onnx-proto
onnx-proto:
	$(GO) test -count=1 -run '^TestGenerated$$' ./arrowio/onnx/onnxpb -update
