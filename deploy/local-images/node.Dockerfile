# Local stand-in for an official node image (Debian bookworm's Node.js 18 and npm), only to build
# the MailDev stand-in for Mailpit in the compose smoke (scripts/compose-smoke.sh).
ARG BASE=agent-notify-local/debian:bookworm
FROM ${BASE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
CMD ["node"]
