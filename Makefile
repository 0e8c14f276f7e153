# layerbridge: the two commands a newcomer needs are `make demo` and `make test`.
GO       ?= go
BIN      := bin/layerbridge
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build test unit integration lint demo bench fuzz image clean

all: build

## build: the layerbridge binary in bin/ (static, no cgo)
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/layerbridge

## test: lint, unit tests (race detector) and the integration tests against real Docker and real Clair
test: lint unit integration

unit:
	$(GO) test -race -count=1 ./...

integration: build
	cd integration && LAYERBRIDGE_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout 40m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd integration && $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd integration && $(GO) run $(STATICCHECK) ./...

## demo: start PostgreSQL, a SecDB feed and Clair 4.9 on loopback, build a small vulnerable image and scan it
demo: build
	cd integration && $(GO) run ./cmd/demo --layerbridge $(abspath $(BIN))

clean:
	rm -rf bin
