# tributary container image: a static binary on distroless, running as non-root.
#
#   docker build -t tributary \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse --short HEAD)" .
#
# The Go version equals go.mod's `go` line (dockerfile_test.go checks it).

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Modules first, in a layer of their own, so that a source change reuses it.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/tributary . \
 && /out/tributary version

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="tributary" \
      org.opencontainers.image.description="Replicates an insurance platform's event stream into ClickHouse" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/tributary /tributary
USER nonroot:nonroot
# /metrics, /healthz and /readyz (--web.listen-address, default :9464).
EXPOSE 9464
ENTRYPOINT ["/tributary"]
CMD ["run"]
