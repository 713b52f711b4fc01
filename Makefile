# orgforge Makefile: kubebuilder-style targets. `make help` lists them.

IMG ?= orgforge:dev
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
CONTROLLER_TOOLS_VERSION ?= v0.23.0

# Tools built from source through the Go module proxy into bin/, pinned; the
# version is in the file name so that changing a pin rebuilds the tool.
HELM_VERSION ?= v3.22.0
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
KUSTOMIZE_VERSION ?= v5.8.2
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)
CRD_REF_DOCS_VERSION ?= v0.3.0
CRD_REF_DOCS ?= $(LOCALBIN)/crd-ref-docs-$(CRD_REF_DOCS_VERSION)

# kustomize: kubectl's built-in one when kubectl is installed, else the pinned
# kustomize built into bin/.
ifeq ($(origin KUSTOMIZE_BUILD),undefined)
ifneq ($(shell kubectl kustomize --help >/dev/null 2>&1 && echo yes),)
KUSTOMIZE_BUILD := kubectl kustomize
KUSTOMIZE_DEP :=
else
KUSTOMIZE_BUILD := $(KUSTOMIZE) build
KUSTOMIZE_DEP := $(KUSTOMIZE)
endif
endif

# Tools built from source and cached outside the repo (see hack/tools.sh).
TOOLS_ENV = KUBEBUILDER_ASSETS="$$(hack/tools.sh envtest)" \
	ORGFORGE_VERSITYGW="$$(hack/tools.sh versitygw)" \
	ORGFORGE_PG_BIN="$$(hack/tools.sh postgres)" \
	ORGFORGE_PG_BINS="$$(hack/tools.sh postgres-all)" \
	ORGFORGE_HELM="$(HELM)" \
	ORGFORGE_KUSTOMIZE="$(KUSTOMIZE_BUILD)" \
	ORGFORGE_CRD_REF_DOCS="$(CRD_REF_DOCS)"

GO_TEST_FLAGS ?= -race -timeout 25m
# The runs on the other majors test the servers' behaviour, not the
# operator's goroutines, which the default major's run does under -race:
# without it they take about half the time.
PG_TEST_FLAGS ?= -timeout 25m

# PostgreSQL majors (hack/tools.sh pins one release of each). Every test runs
# on the default, 17; the packages that talk to PostgreSQL run again on each
# of PG_OTHER_MAJORS, and the reconciler's on the oldest, PG_OLDEST_MAJOR.
PG_OTHER_MAJORS ?= 13 14 15 16
PG_PACKAGES ?= ./internal/aurora/ ./internal/devstack/
PG_OLDEST_MAJOR ?= 13
PG_OLDEST_PACKAGES ?= ./test/e2e/
# The run on the oldest major keeps the tests whose outcome rests on what the
# server does: provisioning, spec changes, securing, deletion, rotation of the
# login, adoption, the settled catalog read and usage. It skips the ones that
# exercise Kubernetes, S3 and IAM alone, which no major changes, and the fleet
# tests, whose DatabaseClusters run on servers of several majors already.
# Each entry is a regular expression for a whole top-level test name.
PG_OLDEST_SKIP_TESTS ?= TestFleet.* TestKstatus.* \
	TestDeletingTheOrganizationThatCreatedASharedNamespaceKeepsItForTheOther \
	TestTwoOrganizationsSharingANamespaceDeletedTogetherLeaveNoNamespace \
	TestOrganizationAppliedAgainWhileItsNamespaceTerminatesBecomesReady \
	TestDeleteLeavesNothingBehindInKubernetes \
	TestAnotherControllersFinalizerSurvivesTheOperatorsFinalizerPatches \
	TestRetainDeletionKeepsTheDatabaseSecretThroughGarbageCollection \
	TestDeletedStorageSecretIsReissuedWithTheUsersOnlyKeyAndTheOldKeyStopsWorking \
	TestARotatedKeyIsKeptWhileIAMPropagatesIt \
	TestRotationOfTheAccessKey.* \
	TestDeletionPurgesTheRecordedPrefixAndNeverAnUnmarkedOne \
	TestAConflictOnASecretIsReportedAsAKubernetesErrorNotADatabaseOutage \
	TestAnInvalidSpecIsReportedInOneWarningEvent \
	TestSystemNamespaceIsRefusedAndNothingIsCreated \
	TestProvisioningAndDeletionAreEachReportedInOneEvent \
	TestEditedKeysTheCacheKeepsAsADigestAreWrittenBack \
	TestASecretMissingFromTheCacheKeepsItsPassword \
	TestDeletingAnOrganizationWhoseSpecNoLongerValidatesStillRevokesItsAccess \
	TestTwentyOrganizationsStayWithinTheConnectionCap \
	TestResyncOfReadyOrganizationsWritesNothing \
	TestARestartOverReadyOrganizationsWritesNothing \
	TestUsageIsReadOncePerPeriodWithNoWriteBetween \
	TestAFailedUsageReadKeepsTheOrganizationReadyAndItsFiguresAndIsTriedAgain \
	TestUsageOffRemovesTheFiguresAndReadsNone
empty :=
space := $(empty) $(empty)
PG_OLDEST_SKIP ?= $(if $(strip $(PG_OLDEST_SKIP_TESTS)),^($(subst $(space),|,$(strip $(PG_OLDEST_SKIP_TESTS))))$$)

# test-other-majors runs PG_PACKAGES once per major in PG_OTHER_MAJORS and,
# on PG_OLDEST_MAJOR, PG_OLDEST_PACKAGES too, with -count=1: go test's cache
# ignores what a TestMain reads before m.Run, as the stack's ORGFORGE_PG_BIN,
# so a cached run on another major would stand in for it. The oldest major's
# run of PG_OLDEST_PACKAGES, which mostly waits for grace periods and resyncs,
# goes in the background, in a process group of its own, while the other
# majors run; its lines are prefixed with its major, a failure of either
# fails the target, and a failure in the foreground stops the background
# run's whole group.
define test-other-majors
@set -e; bg=""; trap '[ -z "$$bg" ] || kill -- -$$bg 2>/dev/null || true' EXIT; \
for major in $(PG_OTHER_MAJORS); do \
	bin="$$(hack/tools.sh postgres $$major)"; \
	if [ "$$major" = "$(PG_OLDEST_MAJOR)" ] && [ -n "$(strip $(PG_OLDEST_PACKAGES))" ]; then \
		echo "PostgreSQL $$major, in the background: go test $(if $(PG_OLDEST_SKIP),-skip '$(PG_OLDEST_SKIP)') $(PG_OLDEST_PACKAGES)"; \
		set -m; ( $(TOOLS_ENV) ORGFORGE_PG_BIN="$$bin" go test -count=1 $(PG_TEST_FLAGS) $(if $(PG_OLDEST_SKIP),-skip '$(PG_OLDEST_SKIP)') $(PG_OLDEST_PACKAGES) 2>&1 | sed -u "s/^/[PostgreSQL $$major] /" ) & bg=$$!; set +m; \
	fi; \
	if [ -n "$(strip $(PG_PACKAGES))" ]; then \
		echo "PostgreSQL $$major: go test $(PG_PACKAGES)"; \
		$(TOOLS_ENV) ORGFORGE_PG_BIN="$$bin" go test -count=1 $(PG_TEST_FLAGS) $(PG_PACKAGES); \
	fi; \
done; \
if [ -n "$$bg" ]; then pid=$$bg; bg=""; wait $$pid; echo "PostgreSQL $(PG_OLDEST_MAJOR): $(PG_OLDEST_PACKAGES) passed"; fi
endef

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
manifests: controller-gen ## Generate the CRD and RBAC manifests from the Go markers, and the chart's copies.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/...;./controllers/..." output:crd:artifacts:config=config/crd/bases
	cp config/crd/bases/*.yaml dist/chart/crds/
	cp config/rbac/role.yaml dist/chart/files/manager-role.yaml

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
tools: controller-gen ## Build and cache kube-apiserver, etcd and versitygw; install PostgreSQL 13 to 17.
	hack/tools.sh all

.PHONY: docs
docs: api-docs ## Regenerate docs/api.md and docs/configuration.md.
	go test -count=1 -run '^TestConfigurationDoc$$' . -update

.PHONY: api-docs
api-docs: crd-ref-docs ## Generate docs/api.md from the Go types in api/.
	$(CRD_REF_DOCS) --source-path ./api --config hack/api-docs/config.yaml --renderer markdown --output-path docs/api.md >/dev/null

.PHONY: test
test: verify-generated vet tools build-installer helm crd-ref-docs ## Run every test against the real local stack, on every PostgreSQL major.
	$(TOOLS_ENV) go test $(GO_TEST_FLAGS) ./...
	$(test-other-majors)

.PHONY: test-postgres
test-postgres: tools ## Run only the PostgreSQL packages on PostgreSQL 13 to 16 (make test does this too).
	$(test-other-majors)

##@ Build

.PHONY: build
build: ## Build the manager binary into bin/manager.
	CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=$(VERSION)" -o $(LOCALBIN)/manager .

.PHONY: run
run: manifests generate ## Run the manager from your host against the current kubeconfig.
	go run . $(ARGS)

.PHONY: dev
dev: manifests generate tools build ## Start the real local stack in .dev/ with two database clusters, run the operator and apply the samples.
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

.PHONY: docker-push
docker-push: ## Push the container image (needs a Docker engine).
	docker push $(IMG)

.PHONY: build-installer
build-installer: manifests generate $(KUSTOMIZE_DEP) ## Write dist/install.yaml: the CRD, RBAC and manager, with image $(IMG).
	hack/build-installer.sh "$(IMG)" "$(KUSTOMIZE_BUILD)" dist/install.yaml

.PHONY: helm-lint
helm-lint: helm ## Lint the Helm chart in dist/chart.
	$(HELM) lint --strict dist/chart

##@ Tool binaries

.PHONY: helm
helm: $(HELM) ## Build helm into bin/.
$(HELM):
	$(call go-install-tool,$(HELM),helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Build kustomize into bin/ (only used when kubectl is missing).
$(KUSTOMIZE):
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: crd-ref-docs
crd-ref-docs: $(CRD_REF_DOCS) ## Build crd-ref-docs into bin/.
$(CRD_REF_DOCS):
	$(call go-install-tool,$(CRD_REF_DOCS),github.com/elastic/crd-ref-docs,$(CRD_REF_DOCS_VERSION))

# go-install-tool builds package $(2) at version $(3) into file $(1): go
# install into a scratch folder, then a rename, so that an interrupted build
# never leaves a half-written tool behind.
define go-install-tool
@set -e; dir="$$(mktemp -d)"; trap 'rm -rf "$$dir"' EXIT; \
echo "Building $(2)@$(3) into $(1)"; \
GOBIN="$$dir" CGO_ENABLED=0 go install $(2)@$(3); \
mkdir -p $(LOCALBIN); mv "$$dir"/* $(1)
endef

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Build controller-gen into bin/.
$(CONTROLLER_GEN):
	mkdir -p $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
