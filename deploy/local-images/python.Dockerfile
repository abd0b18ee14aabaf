# Local stand-in for the official python:3.11-slim image, for the compose smoke on a machine that
# cannot reach an image registry (scripts/compose-smoke.sh). Debian bookworm's own Python 3.11,
# with `python` and `python -m venv` working as in the official image. Never pushed anywhere.
ARG BASE=agent-notify-local/debian:bookworm
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 \
    && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
