# syntax=docker/dockerfile:1.7
#
# The sepsis-ews image: the `sepsis` binary running `sepsis serve` on port 8080.
#
#   docker build -t sepsis-ews:local --build-arg SEPSIS_GIT_COMMIT="$(git rev-parse HEAD)" .
#   docker run --rm -p 8080:8080 sepsis-ews:local
#
# The build stage compiles LightGBM from source, which takes about 12 minutes on
# two cores the first time. BuildKit cache mounts keep the cargo registry and
# the target folder between builds.
#
# Build arguments:
#   BUILD_IMAGE        Rust image of the build stage
#   RUNTIME_IMAGE      Debian image of the runtime stage; keep its Debian release equal to
#                      BUILD_IMAGE's, because the binary needs a glibc at least as new as the
#                      one it was linked against
#   BINARY_FROM        "build" compiles the binary; "prebuilt" copies prebuilt/sepsis from the
#                      build context instead (the podman smoke test in deploy/README.md)
#   SEPSIS_GIT_COMMIT  commit recorded in registry versions and tracked runs; the build
#                      context has no .git folder, so without it no commit is recorded

ARG BUILD_IMAGE=rust:1.95-trixie
ARG RUNTIME_IMAGE=debian:trixie-slim
ARG BINARY_FROM=build

FROM ${BUILD_IMAGE} AS build
# lightgbm3-sys builds LightGBM with CMake (it needs 3.28 or newer; Debian 13
# has 3.31) and generates its bindings with libclang. g++ is in the base image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# config/ is embedded in the binary with include_str!.
COPY Cargo.toml Cargo.lock ./
COPY config/ config/
COPY crates/ crates/
ARG SEPSIS_GIT_COMMIT=""
# The target folder is a cache mount, which is gone after this step, so the
# binary is copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    if [ -z "$SEPSIS_GIT_COMMIT" ]; then unset SEPSIS_GIT_COMMIT; fi \
    && cargo build --release --locked --bin sepsis \
    && install -D -m 0755 target/release/sepsis /out/usr/local/bin/sepsis

FROM scratch AS prebuilt
COPY prebuilt/sepsis /out/usr/local/bin/sepsis

# BINARY_FROM names one of the two stages above; BuildKit and Buildah build
# only the stages that the final image needs.
FROM ${BINARY_FROM} AS binary

FROM ${RUNTIME_IMAGE} AS runtime
# libgomp1: LightGBM's OpenMP runtime. ca-certificates: HTTPS to S3 and MLflow.
# The service runs as an unprivileged user with a fixed UID, so Kubernetes can
# check runAsNonRoot and volume ownership can be set ahead of time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 sepsis \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin sepsis \
    && mkdir -p /data/store \
    && chown -R 10001:10001 /data
COPY --from=binary /out/usr/local/bin/sepsis /usr/local/bin/sepsis
# The bundled PhysioNet sample (580 KB, CC BY 4.0; see its README.md). It is
# data.default_input relative to the working directory, so `POST /train`
# without a body trains on it, which gives a fresh stack a first model.
COPY data/sample/ /opt/sepsis/data/sample/
WORKDIR /opt/sepsis

# SEPSIS__LOGGING__DIR="" turns the log file off: logs go to stderr only, and
# the service writes nothing outside /data (the default local store) and /tmp,
# so the root filesystem can be read-only. Set SEPSIS__STORAGE__URI to
# s3://bucket/prefix to use S3 instead of the volume. OMP_WAIT_POLICY=passive
# stops idle OpenMP threads from spinning, which otherwise burns a container's
# CPU quota; README.md ("Configuration") has the measurements.
ENV SEPSIS__STORAGE__URI=/data/store \
    SEPSIS__SERVE__ADDR=0.0.0.0:8080 \
    SEPSIS__LOGGING__DIR="" \
    SEPSIS__LOGGING__FORMAT=json \
    OMP_WAIT_POLICY=passive
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080

# The image has no curl: bash sends GET /health to the port of
# SEPSIS__SERVE__ADDR and expects status 200 on the first response line.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${SEPSIS__SERVE__ADDR##*:} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]

# Extra arguments go to `sepsis serve`, for example --store s3://bucket/prefix.
ENTRYPOINT ["sepsis", "serve"]
