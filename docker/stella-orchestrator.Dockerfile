# Generated from ci/src/catalog by ci/src/build/dockerfiles.ts — do not edit; regenerate with `node ci/src/build/dockerfiles.ts`.
#
# stella-orchestrator: Orchestrator. No RUN: nothing executes at build time, so every platform builds natively.
# Build from the repo root after the JavaScript build wrote dist/app/orchestrator/:
#   docker buildx build -f docker/stella-orchestrator.Dockerfile --build-arg BASE_IMAGE=<node 24 distroless base> \
#     --build-arg VERSION=<version> --build-arg GIT_COMMIT=<sha> --build-arg BUILD_DATE=<RFC 3339> .
ARG BASE_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot
FROM ${BASE_IMAGE}
ARG VERSION=0.0.0-dev
ARG GIT_COMMIT=unknown
ARG BUILD_DATE=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.title="stella-orchestrator" \
      org.opencontainers.image.description="StellaOps Orchestrator: Source and job scheduler: enqueues feed polls and task packs." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="https://github.com/stellaops/stellaops" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="StellaOps" \
      io.stellaops.service="orchestrator" \
      io.stellaops.ports="8082/tcp"
COPY --chown=0:0 dist/app/orchestrator/ /app/
WORKDIR /app
ENV NODE_ENV=production
EXPOSE 8082/tcp
USER 65532:65532
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["/nodejs/bin/node", "/app/healthcheck.js"]
ENTRYPOINT ["/nodejs/bin/node"]
CMD ["/app/main.js"]
