# The sportlens service image: the same install steps as the README (python venv, pip install -e).
# No Docker engine runs on the development machines; keep this file in step with the README and Makefile.
FROM python:3.11-slim

WORKDIR /app
RUN apt-get update \
    && apt-get install -y --no-install-recommends make redis-server \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md Makefile ./
COPY command command
COPY tools tools
COPY agent agent
COPY training training
COPY service service
COPY benchmarks benchmarks
RUN make setup

# Listening beyond loopback needs API keys: run with -e SPORTLENS_API_KEYS=$(sportlens serve --hash-key "$KEY")
# (without keys, `serve --host 0.0.0.0` refuses to start rather than expose an open service).
ENV SPORTLENS_HOME=/data
VOLUME /data
ENTRYPOINT ["/app/.venv/bin/sportlens"]
EXPOSE 8080
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
