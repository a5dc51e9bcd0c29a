# switchboard in a container: a stripped release build of the `switchboard` binary on a slim
# Debian base, running as a non-root user. SQLite lives on the /data volume; the config is
# /etc/switchboard/switchboard.toml (config/docker.toml, secrets read from the environment).
# Plain Dockerfile syntax (no BuildKit-only features): builds with the classic builder and with
# BuildKit alike.
#
#   docker build -t switchboard .
#   docker run -p 8080:8080 -v switchboard-data:/data -e SUPPORT_WEBHOOK_SECRET ... switchboard
#
# or `docker compose up` with compose.yaml. tests/it/docker.rs checks that the paths, user, port,
# volume, health check and command below agree with config/docker.toml, compose.yaml and the
# binary.

ARG RUST_VERSION=1
ARG DEBIAN_RELEASE=bookworm

# ---- build --------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# No database at build time: sqlx macros, if any, use committed offline data. The image's binary
# is stripped and has no debug info; the repository's own release profile (line tables, for
# profiling benchmarks) is left as it is.
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
# Dependencies first, in a layer of their own that is reused while Cargo.toml and Cargo.lock stay
# the same: stub sources for every target Cargo.toml declares, so only the dependencies build.
# (The test target's stub stays: the tests are not part of the image.)
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin tests/it \
    && echo 'fn main() {}' > src/main.rs \
    && cp src/main.rs src/bin/loadgen.rs \
    && cp src/main.rs src/bin/e2ebench.rs \
    && cp src/main.rs src/bin/claimbench.rs \
    && cp src/main.rs src/bin/prefill.rs \
    && touch src/lib.rs tests/it/main.rs \
    && cargo build --release --locked --bin switchboard \
    && rm -rf src
# Then the real sources (migrations/ is embedded by sqlx::migrate!, config/*.toml by
# include_str!). Touched so Cargo rebuilds the crate rather than trusting the stub's timestamps.
COPY src ./src
COPY migrations ./migrations
COPY config ./config
RUN find src -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin switchboard \
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
