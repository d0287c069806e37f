# syntax=docker/dockerfile:1
#
# wxauth in a container: build the release binary on Debian bookworm, run it on
# bookworm-slim as an unprivileged user with its data in the /data volume.
#
#   docker build -t wxauth .
#   docker run --rm -p 8080:8080 wxauth serve --dev
#
# docs/operations.md (Docker) shows a production run with a volume and a secret file.

FROM rust:1-slim-bookworm AS builder
WORKDIR /build
COPY . .
# The cache mounts keep downloaded crates and compiled dependencies between builds;
# the binary is copied out because the target directory is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked \
 && cp target/release/wxauth /usr/local/bin/wxauth

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 wxauth \
 && useradd --system --uid 10001 --gid wxauth --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin wxauth \
 && mkdir -p /data \
 && chown wxauth:wxauth /data \
 && chmod 0700 /data
COPY --from=builder /usr/local/bin/wxauth /usr/local/bin/wxauth
ENV WXAUTH_DATA_DIR=/data \
    WXAUTH_LISTEN=0.0.0.0:8080
VOLUME /data
EXPOSE 8080
USER 10001:10001
# The binary probes its own /readyz on WXAUTH_LISTEN, so the image needs no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/wxauth", "healthcheck"]
# wxauth is PID 1 (exec-form ENTRYPOINT) and drains in-flight requests on SIGTERM within
# its shutdown_timeout (10s): give `docker stop` more than that (--stop-timeout 30).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/wxauth"]
CMD ["serve"]
