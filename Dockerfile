# The orgforge manager image: a static binary on distroless, run as nonroot.
#
#   make docker-build docker-push IMG=<registry>/orgforge:<tag>
#
# test/ship builds the binary with this file's own `go build` line and checks
# the result, since no Docker engine runs the tests.

# Build stage: static (no cgo), reproducible (-trimpath), stripped, with the
# version injected.
FROM golang:1.26 AS builder
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
WORKDIR /workspace
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY main.go main.go
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o manager .

# Distroless static, nonroot: the binary, CA certificates and tzdata, no
# shell. The RDS CA bundle is not in it; it is mounted (docs/install-aws.md).
FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="orgforge" \
      org.opencontainers.image.description="Kubernetes operator that provisions tenants on Aurora PostgreSQL and S3" \
      org.opencontainers.image.source="https://github.com/orgforge/orgforge" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /
COPY --from=builder /workspace/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]
