# The archiver as an image: jobs/ runs it by tag (ghcr.io/ultravox-archiver/ultravox-archiver:<version>).
#   docker build -t ghcr.io/ultravox-archiver/ultravox-archiver:0.1.0 .
# The base is pinned by tag; a release pins it by digest too, from
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm
# written as python:3.11.14-slim-bookworm@sha256:<digest> in PYTHON_IMAGE.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# The wheel is built from this checkout, never fetched from an index under the package's name, by a
# build backend pinned with hashes in requirements-build.lock.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE requirements-build.lock ./
COPY etl ./etl
COPY schemas ./schemas
COPY scripts/build-image-wheel /usr/local/bin/
RUN python -m venv /build && sh /usr/local/bin/build-image-wheel /build/bin/python /src /dist

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/archiver \
    PATH=/opt/archiver/bin:$PATH
COPY requirements.lock scripts/install-image-packages /tmp/install/
COPY --from=builder /dist/ /tmp/install/dist/
RUN python -m venv /opt/archiver \
    && sh /tmp/install/install-image-packages /opt/archiver/bin/python /tmp/install/requirements.lock \
        /tmp/install/dist/*.whl \
    && rm -rf /tmp/install
# A numeric user, so that Kubernetes' runAsNonRoot can check it. Nothing in the image is writable by
# it: spool files go to $TMPDIR (/tmp), which the job files mount as an emptyDir.
RUN groupadd --system --gid 10001 archiver \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp archiver
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["ultravox-archiver"]
CMD ["--help"]
