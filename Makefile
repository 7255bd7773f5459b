# fhirgate: run `make help` for the targets.
GO ?= go
GOBIN ?= $(shell $(GO) env GOPATH)/bin
GOLANGCI_LINT_VERSION ?= v2.5.0
GOVULNCHECK_VERSION ?= v1.1.4

.DEFAULT_GOAL := help

##@ Build
.PHONY: build
build: ## Build bin/fhirgate
	$(GO) build -o bin/fhirgate ./cmd/fhirgate

.PHONY: run-demo
run-demo: ## Run the server with demo data (go run ./cmd/fhirgate serve --demo)
	$(GO) run ./cmd/fhirgate serve --demo

.PHONY: demo-app
demo-app: ## Rebuild the embedded demo SMART app (web/demoapp -> internal/demoapp/dist; needs Node and npm)
	cd web/demoapp && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

##@ Test
.PHONY: e2e
e2e: ## Browser tests (Debian chromium + playwright-core) and Node client checks; installs what they need
	./e2e/run

.PHONY: test
test: ## Run every test (the command CI runs; PostgreSQL and Redis tests skip unless their env is set)
	$(GO) test -race -count=1 ./...

.PHONY: test-short
test-short: ## Fast tests without the race detector
	$(GO) test -short ./...

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 10s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-10s} $$pkg || exit 1; \
	  done; \
	done

.PHONY: bench
bench: ## Run the benchmarks in bench/ and the packages (BENCH_RESOURCES sets the store size)
	BENCH_IMPORT_MEMORY=1 $(GO) test -run 'TestImportMemoryIsFlat' -v ./bench/
	$(GO) test -timeout 0 -run '^$$' -bench . -benchmem ./bench/... ./internal/...

##@ Quality
.PHONY: lint
lint: tools ## Run golangci-lint and go vet
	$(GO) vet ./...
	$(GOBIN)/golangci-lint run ./...

.PHONY: vuln
vuln: tools ## Check dependencies for known vulnerabilities
	$(GOBIN)/govulncheck ./...

.PHONY: fmt
fmt: ## Format the code
	gofmt -w $$(git ls-files '*.go')

.PHONY: tools
tools: ## Install the pinned lint and vulnerability tools
	@test -x $(GOBIN)/golangci-lint || $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	@test -x $(GOBIN)/govulncheck || $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

##@ Help
.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-12s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)
