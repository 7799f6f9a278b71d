# The postwarden image, for those who build with Docker:
#
#	docker buildx build --platform linux/amd64,linux/arm64 \
#	  --build-arg VERSION=v0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#	  -t ghcr.io/postwarden/postwarden:v0.1.0 .
#
# `make image` builds the same image without Docker (hack/image), reproducibly, FROM scratch.

# Build the postwarden binary.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev

WORKDIR /workspace
# Download the modules first, so the layer is cached until go.mod or go.sum change.
COPY go.mod go.mod
COPY go.sum go.sum
RUN go mod download

# Only what the shipped binary is built from: no test/ (test kit, envtest) and no hack/.
COPY main.go main.go
COPY api/ api/
COPY controllers/ controllers/
COPY relay/ relay/

# GOARCH has no default, so the binary is built for the platform the image is built for
# (buildx sets TARGETARCH); CGO_ENABLED=0 for a static binary the distroless base can run.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
	go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o postwarden .

# distroless/static has CA certificates, /etc/passwd and no shell; nonroot is 65532.
FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="postwarden" \
	org.opencontainers.image.description="Postwarden: a Kubernetes operator and SMTP relay in one binary" \
	org.opencontainers.image.source="https://github.com/postwarden/postwarden" \
	org.opencontainers.image.licenses="Apache-2.0" \
	org.opencontainers.image.version="${VERSION}" \
	org.opencontainers.image.revision="${REVISION}"
WORKDIR /
COPY --from=builder /workspace/postwarden .
# The binary is found by name, as `kubectl exec <pod> -- postwarden queue list` runs it
# (the image `make image` builds has the same PATH).
ENV PATH=/
USER 65532:65532

ENTRYPOINT ["/postwarden"]
