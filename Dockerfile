# syntax=docker/dockerfile:1
#
# wxauth in a container: the release binary that dist/build makes, the very file in the
# release archive, on Debian bookworm-slim, run as an unprivileged user with its data in
# the /data volume.
#
#   dist/build
#   docker build -t wxauth .
#   docker run --rm -p 8080:8080 wxauth serve --dev
#
# The binary needs glibc 2.17 or newer, so any glibc-based image can carry it: BASE picks
# another (`--build-arg BASE=...`). dist/test-image builds and runs this image with
# podman, on a Debian bullseye base made locally. docs/operations.md (Docker) shows a
# production run with a volume and a secret file.

ARG BASE=debian:bookworm-slim
FROM ${BASE}
# bookworm-slim has no CA certificates (WeChat's API is HTTPS); a base that has them
# already skips the download.
RUN if [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --system --gid 10001 wxauth \
 && useradd --system --uid 10001 --gid wxauth --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin wxauth \
 && mkdir -p /data \
 && chown wxauth:wxauth /data \
 && chmod 0700 /data
COPY dist/out/wxauth /usr/local/bin/wxauth
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
