# syntax=docker/dockerfile:1
#
# switchboard in a container: a release build of the `switchboard` binary on a slim Debian base,
# running as a non-root user. SQLite lives on the /data volume; the config is
# /etc/switchboard/switchboard.toml (config/docker.toml, secrets read from the environment).
#
#   docker build -t switchboard .
#   docker run -p 8080:8080 -v switchboard-data:/data -e SUPPORT_WEBHOOK_SECRET ... switchboard
#
# tests/it/docker.rs checks that the paths, user, port, volume, health check and command below
# agree with config/docker.toml and with the binary.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

# ---- build --------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# No database at build time: sqlx macros, if any, use committed offline data.
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
# Cache mounts keep the registry and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchboard \
    && install -m 0755 target/release/switchboard /usr/local/bin/switchboard

# ---- runtime ------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid switchboard --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin switchboard \
    && mkdir -p /data /etc/switchboard \
    && chown switchboard:switchboard /data
COPY --from=build /usr/local/bin/switchboard /usr/local/bin/switchboard
COPY config/docker.toml /etc/switchboard/switchboard.toml
ENV SWITCHBOARD_CONFIG=/etc/switchboard/switchboard.toml
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# The binary checks itself: no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["switchboard", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["switchboard"]
CMD ["serve", "--config", "/etc/switchboard/switchboard.toml"]
