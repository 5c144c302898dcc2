# Slim, non-root image running `scaler serve` (gRPC 9090, HTTP 8080).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scaler ./scaler
COPY adapters ./adapters
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin scaler
USER 10001:10001
EXPOSE 9090 8080
ENTRYPOINT ["scaler"]
CMD ["serve"]
