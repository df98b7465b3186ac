# compute-tools container image: compute-ctl as the entrypoint, PostgreSQL 15 server, running
# as the unprivileged postgres user (uid 999).
#
#   docker build -t compute-tools .
#   docker run --rm -p 3080:3080 -p 55432:55432 -v $PWD/spec.json:/var/db/postgres/specs/spec.json:ro compute-tools

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
ARG COMPUTE_TOOLS_GIT_HASH=unknown
ENV COMPUTE_TOOLS_GIT_HASH=${COMPUTE_TOOLS_GIT_HASH}
RUN cargo build --release --locked --bins \
    && mkdir /out \
    && for bin in compute-ctl compute_ctl compute-spec pg-sync-safekeepers pg-basebackup-fetch \
                  pg-reconcile pg-supervise vm-monitor; do cp "target/release/$bin" /out/; done

FROM debian:bookworm-slim
# A fixed uid/gid so Kubernetes' runAsNonRoot can verify it; created before the packages so
# they reuse it.
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid postgres --home-dir /var/lib/postgresql --shell /bin/bash postgres \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        postgresql-15 postgresql-contrib ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/db/postgres/specs /var/db/postgres/compute \
    && chown -R postgres:postgres /var/db/postgres
COPY --from=build /out/ /usr/local/bin/
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
