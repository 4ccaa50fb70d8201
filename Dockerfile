# paybridge: the gateway and its admin command line in one small image.
#   docker build -t paybridge .
#   docker run -p 8080:8080 -v $PWD/deploy/paybridge.toml:/etc/paybridge/paybridge.toml:ro \
#     -e PAYBRIDGE_DATABASE__URL=postgres://… -e PAYBRIDGE_MASTER_KEY=… paybridge
# compose.yaml runs PostgreSQL and two instances. tests/tests/deploy.rs checks this file.

FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
# The same build as the README's: every provider is linked through the server library.
RUN cargo build --release --locked -p paybridge-server --bin paybridge --bin paybridge-admin

FROM debian:bookworm-slim AS run
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/paybridge --create-home paybridge
COPY --from=build /src/target/release/paybridge /usr/local/bin/paybridge
COPY --from=build /src/target/release/paybridge-admin /usr/local/bin/paybridge-admin
COPY deploy/paybridge.toml /etc/paybridge/paybridge.toml
USER 10001:10001
WORKDIR /var/lib/paybridge
ENV PAYBRIDGE_SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
# /livez: the process serves. A load balancer should use /readyz (database and tenants).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/livez"]
ENTRYPOINT ["/usr/local/bin/paybridge"]
CMD ["--config", "/etc/paybridge/paybridge.toml"]
