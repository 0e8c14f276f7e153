# layerbridge's container image: the static binary, CA certificates and a
# non-root user, FROM scratch. No shell, no package manager.
#
# Build it with `make image` (offline: nothing is pulled). The build context
# is not the repository root but the directory deploy/image/context.sh
# prepares: this file, the static binary of `make build`, the host's CA
# certificates, deploy/image/passwd and group, and an empty cache/.
#
# Run it as the sidecar next to Clair, with the Docker socket and the
# socket's group (the image's user, 65532, is in no group that owns it):
#
#   docker run -d --name layerbridge --network clair-network \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v "$PWD/token:/run/secrets/layerbridge_token:ro" -p 127.0.0.1:8080:8080 \
#     layerbridge serve --clair http://clair:6060 --token-file /run/secrets/layerbridge_token
#
# deploy/compose.yaml does the same with Docker Compose.
FROM scratch

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="layerbridge" \
      org.opencontainers.image.description="Lets Clair scan images that exist only in a local Docker daemon: a scan API, a layer server for Clair and a read-only registry view of the scanned images" \
      org.opencontainers.image.source="https://github.com/layerbridge/layerbridge" \
      org.opencontainers.image.documentation="https://github.com/layerbridge/layerbridge#readme" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

COPY passwd group /etc/
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --chown=65532:65532 cache /var/cache/layerbridge
COPY layerbridge /layerbridge

# The image cache (exported images, the store of the registry view). Mount a
# volume here to keep it across restarts; it must stay writable by 65532.
ENV LAYERBRIDGE_CACHE_DIR=/var/cache/layerbridge
VOLUME ["/var/cache/layerbridge"]

USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/layerbridge"]
CMD ["serve"]
