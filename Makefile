# layerbridge: a newcomer needs `make demo`, `make clair` (Clair for their own images) and `make test`.
GO       ?= go
BIN      := bin/layerbridge
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test unit integration lint demo clair bench bench-go fuzz fuzz-smoke image clean

all: build

## build: the layerbridge binary in bin/ (static, no cgo)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/layerbridge

## test: lint, unit tests (race detector), each fuzz target briefly, and the integration tests against real
## Docker and real Clair
test: lint unit fuzz-smoke integration

## unit: every package's tests under the race detector, then the few that inflate a gigabyte (which the race
## detector makes too slow, so they skip themselves under it) without it, then the Kubernetes manifests' (their own
## module: decoded strictly with k8s.io/api, their flags checked against serve's)
unit:
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run '^TestDecompressionBombBeyondTheLimit$$' ./dockersave
	cd deploy/kubernetes && $(GO) test -count=1 ./...

## fuzz: run each fuzz target for FUZZTIME (default 30s; or a number of inputs, such as 50000x); a failing input
## is written to the package's testdata/fuzz/ and then runs with every `go test`. FUZZMINIMIZETIME bounds the
## minimization of each new input (10 runs; go's default, 60 s per input, would take most of a short run).
## Go 1.26's fuzzer can fail a duration-bounded run with a bare "context deadline exceeded" and no failing
## input when the time is up (golang/go#75804, fixed in Go 1.27): rerun, or give a count.
FUZZTIME         ?= 30s
FUZZMINIMIZETIME ?= 10x
FUZZ_TARGETS := \
	dockersave:FuzzReadArchive \
	dockersave:FuzzInterpretMetadata \
	store:FuzzStoreIndex \
	store:FuzzOpenBlob \
	bridge:FuzzLayerPaths \
	bridge:FuzzRegistryPaths
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz ./$$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) ./$$pkg; \
	done

## fuzz-smoke: each fuzz target for 10,000 inputs, 1 to 10 s each here (part of `make test`); a count, not a
## duration, so that golang/go#75804 cannot fail CI
fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=10000x

## integration: the integration module's tests, against real Clair 4.9 and PostgreSQL, the system's Docker
## daemon, Podman's Docker API service, and a Docker Engine 29 (containerd image store, BuildKit) and a
## containerd that the tests build from integration/engines/ and start as root on private sockets (the first
## build takes 7 to 15 minutes on 2 cores with a cold Go build cache; binaries are kept in
## ~/.cache/layerbridge-integration)
integration: build
	cd integration && LAYERBRIDGE_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout 60m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd integration && $(GO) vet ./...
	cd deploy/kubernetes && $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd integration && $(GO) run $(STATICCHECK) ./...
	cd deploy/kubernetes && $(GO) run $(STATICCHECK) ./...

## demo: start PostgreSQL, a SecDB feed and Clair 4.9 on loopback, build a small vulnerable image and scan it
demo: build
	cd integration && $(GO) run ./cmd/demo --layerbridge $(abspath $(BIN))

## clair: start PostgreSQL, the demo's SecDB feed and Clair 4.9 on loopback and keep them running until Ctrl-C
## (or SIGTERM), for scanning your own images: it prints the `export CLAIR_ADDR=...` line to use. Built, then
## exec'd, rather than `go run`, so that SIGTERM reaches it (make passes SIGTERM to its children; go run would
## die without passing it on).
## CLAIRFLAGS="--feed DIR" feeds Clair another Alpine SecDB directory (relative to integration/).
CLAIRFLAGS ?=
clair: build
	cd integration && $(GO) build -o $(abspath bin/clair-stack) ./cmd/clair
	cd integration && exec $(abspath bin/clair-stack) $(CLAIRFLAGS)

## bench: build the benchmark images in the local Docker daemon (once), then measure docker save, the naive
## save-and-untar, layerbridge inspect cold and warm, serving and end-to-end scans against Clair; prints one
## table with the targets of issue 8 (about 10 minutes on 2 cores; BENCHFLAGS="--page-cache keep" halves it)
BENCHFLAGS ?=
bench: build
	cd integration && $(GO) run ./cmd/bench --layerbridge $(abspath $(BIN)) $(BENCHFLAGS)

## bench-go: the Go benchmarks that need neither Docker nor Clair (archive reader, store, blob server)
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./dockersave/ ./store/ ./bridge/

## image: the container image $(IMAGE):$(VERSION) and :latest (FROM scratch, offline: no registry needed;
## the context is prepared by deploy/image/context.sh from bin/layerbridge and the host's CA certificates)
IMAGE     ?= layerbridge
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
image: build
	rm -rf bin/image-context
	sh deploy/image/context.sh bin/image-context $(BIN) $(CA_BUNDLE)
	docker build --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
		--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
		-t $(IMAGE):$(VERSION) -t $(IMAGE):latest bin/image-context

clean:
	rm -rf bin
