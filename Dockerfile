# Quiver's container image: the release binary, ONNX Runtime's library (from the onnxruntime
# wheel on PyPI, as scripts/fetch-onnxruntime.sh fetches it) and the example repository, on a
# slim Debian, run as a non-root user.
#
#   docker build -t quiver .
#   docker run -p 8501:8501 -p 8500:8500 quiver            # serves /models (the example)
#   docker run -v /srv/models:/models:ro quiver             # or your repository
#   docker run -e AWS_REGION=… quiver serve --model-repository s3://bucket/models

# --- build -------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-pip \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin quiver \
    && scripts/fetch-onnxruntime.sh /onnxruntime \
    && cp /onnxruntime/onnxruntime/capi/libonnxruntime.so.* /libonnxruntime.so

# --- run ---------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: object stores over HTTPS; curl: the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/quiver --create-home quiver
COPY --from=build /src/target/release/quiver /usr/local/bin/quiver
COPY --from=build /libonnxruntime.so /usr/local/lib/quiver/libonnxruntime.so
COPY --from=build /src/examples/models /models
ENV QUIVER_ONNXRUNTIME_LIB=/usr/local/lib/quiver/libonnxruntime.so \
    QUIVER_DATA_DIR=/var/lib/quiver \
    QUIVER_SHUTDOWN_DELAY_SECS=2
USER 10001:10001
EXPOSE 8501 8500
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8501/v2/health/ready || exit 1
ENTRYPOINT ["/usr/local/bin/quiver"]
CMD ["serve", "--model-repository", "/models"]
