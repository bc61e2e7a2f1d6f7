# anygate in a container: a small image on python:3.12-slim, a non-root user, the data dir as a volume.
#
#   docker build -t anygate .
#   docker run -p 8080:8080 -v anygate-data:/data -e ANYGATE_ADMIN_KEY=sk-ag-... anygate
#
# The build installs the wheel built from this checkout with exactly the versions in uv.lock.
# tests/test_packaging.py runs the same steps without a container engine (build the wheel, install it
# with the locked requirements into a clean venv, serve with this image's environment, and run the
# HEALTHCHECK command below against it).

FROM python:3.12-slim AS build
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./
COPY src ./src
RUN uv export --frozen --no-dev --no-emit-project --no-hashes -o /tmp/requirements.txt \
    && uv build --wheel -o /dist \
    && uv venv /opt/anygate \
    && uv pip install --compile-bytecode --python /opt/anygate/bin/python -r /tmp/requirements.txt /dist/*.whl

FROM python:3.12-slim
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin anygate \
    && mkdir -p /data && chown anygate:anygate /data
COPY --from=build /opt/anygate /opt/anygate
ENV PATH=/opt/anygate/bin:$PATH \
    ANYGATE_DATA_DIR=/data \
    ANYGATE_HOST=0.0.0.0 \
    ANYGATE_PORT=8080 \
    PYTHONUNBUFFERED=1
USER anygate
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('ANYGATE_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["anygate"]
CMD ["serve"]
