# orgforge Makefile: kubebuilder-style targets. `make help` lists them.

IMG ?= orgforge:dev
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
CONTROLLER_TOOLS_VERSION ?= v0.23.0

# Tools built from source and cached outside the repo (see hack/tools.sh).
TOOLS_ENV = KUBEBUILDER_ASSETS="$$(hack/tools.sh envtest)" \
	ORGFORGE_VERSITYGW="$$(hack/tools.sh versitygw)" \
	ORGFORGE_PG_BIN="$$(hack/tools.sh postgres)"

GO_TEST_FLAGS ?= -race -timeout 25m

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD and RBAC manifests from the Go markers.
	$(CONTROLLER_GEN) rbac:roleName=orgforge-manager-role crd paths="./api/...;./controllers/..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: verify-generated
verify-generated: ## Fail if `make manifests generate` changes committed files.
	hack/verify-generated.sh

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: tools
tools: controller-gen ## Build and cache kube-apiserver, etcd and versitygw; install PostgreSQL if missing.
	hack/tools.sh all

.PHONY: test
test: verify-generated vet tools ## Run every test against the real local stack.
	$(TOOLS_ENV) go test $(GO_TEST_FLAGS) ./...

##@ Build

.PHONY: build
build: ## Build the manager binary into bin/manager.
	CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(LOCALBIN)/manager .

.PHONY: run
run: manifests generate ## Run the manager from your host against the current kubeconfig.
	go run . $(ARGS)

.PHONY: dev
dev: manifests generate tools build ## Start the real local stack in .dev/, run the operator and apply the samples.
	$(TOOLS_ENV) go run ./hack/dev --manager $(LOCALBIN)/manager --dir .dev

.PHONY: bench
bench: manifests generate tools build ## Measure orgforge against the raw baseline on the real stack (not part of make test).
	$(TOOLS_ENV) go run ./test/bench --manager $(LOCALBIN)/manager --out bench/results/$$(date -u +%Y-%m-%d) $(BENCH_ARGS)

.PHONY: chaos
chaos: manifests generate tools build ## Run the long reliability suite (crashes, outages, failover); make test runs a short version.
	$(TOOLS_ENV) ORGFORGE_CHAOS_LONG=1 go test -count=1 -timeout 80m -v ./test/chaos/ $(CHAOS_ARGS)

.PHONY: install
install: manifests ## Install the CRD into the cluster of the current kubeconfig.
	kubectl apply --server-side -f config/crd/bases

.PHONY: uninstall
uninstall: manifests ## Remove the CRD from the cluster of the current kubeconfig.
	kubectl delete --ignore-not-found -f config/crd/bases

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) -t $(IMG) .

##@ Tool binaries

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Build controller-gen into bin/.
$(CONTROLLER_GEN):
	mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
