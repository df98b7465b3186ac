# compute-tools container image: compute-ctl as the entrypoint, PostgreSQL 15 server, running
# as the unprivileged postgres user (uid 999).
#
#   docker build -t compute-tools .
#   docker run --rm -p 3080:3080 -p 55432:55432 -v $PWD/config.json:/var/db/postgres/specs/config.json:ro compute-tools
#
# Build arguments (the defaults are the public images, so the two lines above work anywhere):
#   BASE_IMAGE  the runtime base (default debian:bookworm-slim; scripts/container-test.sh passes
#               a Debian bookworm made locally with debootstrap, for machines without a registry)
#   RUST_IMAGE  the image that compiles the binaries (default rust:1-bookworm)
#   BINARIES    "build" (default) compiles them in RUST_IMAGE; "prebuilt" takes release binaries
#               built on a bookworm host and copied to target/container/bin/ — no Rust image
#               needed. Either way the runtime stage below is the same.
ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm
ARG BINARIES=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
ARG COMPUTE_TOOLS_GIT_HASH=unknown
ENV COMPUTE_TOOLS_GIT_HASH=${COMPUTE_TOOLS_GIT_HASH}
RUN cargo build --release --locked --bins \
    && mkdir /out \
    && for bin in compute-ctl compute_ctl compute-spec pg-sync-safekeepers pg-basebackup-fetch pg-extensions-fetch \
                  pg-reconcile pg-supervise pg-prewarm pg-catalog pg-lsn-lease pg-promote vm-monitor; do cp "target/release/$bin" /out/; done

FROM scratch AS prebuilt
COPY target/container/bin/ /out/

FROM ${BINARIES} AS binaries

FROM ${BASE_IMAGE}
# A fixed uid/gid so Kubernetes' runAsNonRoot can verify it; created before the packages so
# they reuse it.
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql-15 postgresql-contrib ca-certificates gdb \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/db/postgres/specs /var/db/postgres/compute \
    && chown -R postgres:postgres /var/db/postgres
COPY --from=binaries /out/ /usr/local/bin/
ENV POSTGRES_PATH=/usr/lib/postgresql/15/bin/postgres
USER 999:999
WORKDIR /var/db/postgres
EXPOSE 55432 3080 3081
# SIGTERM is a fast shutdown (a shutdown checkpoint, tens of milliseconds), well inside
# docker stop's default 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/compute-ctl"]
# config.json is the {spec, compute_ctl_config} envelope: with a key set in
# compute_ctl_config.jwks the API listens on all addresses (without one, loopback only).
CMD ["-D", "/var/db/postgres/compute/pgdata", \
     "-C", "postgresql://cloud_admin@localhost/postgres", \
     "-c", "/var/db/postgres/specs/config.json"]
