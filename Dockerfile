# The mictlanx-sync servers (storage peer, router, local VSS) in one image.
#
#   docker build -t mictlanx-sync .
#   docker run --rm -p 127.0.0.1:60666:60666 mictlanx-sync          # a whole local VSS in one container
#   docker compose up -d --build                                    # one container per server (docker-compose.yml)
#
# The entry point is the `mictlanx-sync` command, so any subcommand works:
#   docker run --rm -p 127.0.0.1:24000:24000 mictlanx-sync peer --host 0.0.0.0 --port 24000 --data-dir /data
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package build needs, so edits to tests or docs keep this layer cached.
WORKDIR /src
COPY pyproject.toml setup.cfg setup.py README.md ./
COPY mictlanx_sync ./mictlanx_sync
RUN pip install ".[server]" && rm -rf /src

# Run as an unprivileged user; data lives in the /data volume.
RUN useradd --system --uid 10001 --create-home --home-dir /data mictlanx
USER mictlanx
WORKDIR /data
VOLUME ["/data"]

# Seed ports: peers 24000 and 24001, router 60666.
EXPOSE 24000 24001 60666

ENTRYPOINT ["mictlanx-sync"]
CMD ["vss", "--host", "0.0.0.0", "--data-dir", "/data"]
