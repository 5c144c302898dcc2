# Slim, non-root image running `scaler serve` (gRPC 9090, HTTP 8080).
#
# The base image is pinned by digest (the tag is only for readers), so a rebuild gets the same
# bytes until someone moves the pin on purpose. The digest is the multi-platform index of
# python:3.11-slim (Python 3.11.15, Debian trixie) as docker-library/repo-info publishes it in
# repos/python/remote/3.11-slim.md. To update, take the new digest from that file (or
# `docker buildx imagetools inspect python:3.11-slim`) and replace it in both FROM lines.
FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scaler ./scaler
COPY adapters ./adapters
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff
COPY --from=build /install /usr/local
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin scaler
USER 10001:10001
EXPOSE 9090 8080
ENTRYPOINT ["scaler"]
CMD ["serve"]
