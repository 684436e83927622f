# The two commands a newcomer needs are `go run ./services/dispatcher dev`
# and `make test`. The rest are conveniences.
GO ?= go
PKGS := ./...

.PHONY: test check unit race fuzz build dev bench test-chaos

## test: formatting and vet, the whole suite, then the suite again under the race detector
test: check unit race

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

unit:
	$(GO) test -count=1 -timeout 15m $(PKGS)

race:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## fuzz: each fuzz target for FUZZTIME (default 10s); a crasher stays in testdata/
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeValidate$$' -fuzztime $(FUZZTIME) ./pkg/intent/
	$(GO) test -run '^$$' -fuzz '^FuzzRender$$' -fuzztime $(FUZZTIME) ./pkg/catalog/
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./pkg/optout/
	$(GO) test -run '^$$' -fuzz '^FuzzSignVerify$$' -fuzztime $(FUZZTIME) ./pkg/optout/
	$(GO) test -run '^$$' -fuzz '^FuzzParseKeyword$$' -fuzztime $(FUZZTIME) ./pkg/optout/
	$(GO) test -run '^$$' -fuzz '^FuzzTwilioSignature$$' -fuzztime $(FUZZTIME) ./services/dispatcher/internal/httpapi/

## test-chaos: worker processes killed, Redis stopped and flushed, a provider failing, the broker killed
test-chaos:
	$(GO) test -tags chaos -count=1 -timeout 20m -run '^TestChaos' -v ./services/dispatcher/

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/dispatcher ./services/dispatcher

dev:
	$(GO) run ./services/dispatcher dev

## bench: dispatcher bench against the Redis at DISPATCHER_REDIS_URL (else an in-process one, labelled so)
COUNT ?= 200000
bench:
	$(GO) run ./services/dispatcher bench --count $(COUNT)
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/intent/ ./pkg/catalog/ ./pkg/optout/ ./services/dispatcher/internal/worker/
