# wirehub: one image for hub nodes (`wirehub serve`) and job workers (`wirehub worker`).
#   docker build -t wirehub .
#   docker run -p 8000:8000 wirehub                       # one embedded node
#   docker compose up                                     # two nodes, a worker, Redis, nginx
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels ".[redis,celery]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 wirehub
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/* && rm -rf /wheels
# Application code (job modules, handlers) goes here; the examples are a start.
COPY examples /app/examples
# The upload spool (uploads.dir), shared by hubs and workers through a named volume: a new
# volume takes this directory's owner, so the unprivileged user can write to it.
RUN mkdir -p /spool && chown wirehub:wirehub /spool
WORKDIR /app
ENV PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    WIREHUB_SERVER__HOST=0.0.0.0 \
    WIREHUB_SERVER__PORT=8000
USER wirehub
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["wirehub", "serve"]
