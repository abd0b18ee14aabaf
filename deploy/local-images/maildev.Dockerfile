# Local stand-in for Mailpit in the compose smoke (scripts/compose-smoke.sh): MailDev from the npm
# registry has the same role (an SMTP server, a web UI and an HTTP API to read what arrived).
# Real hosts run Mailpit, as docker-compose.yml says.
ARG BASE=agent-notify-local/node:18
FROM ${BASE}
ARG MAILDEV_VERSION=2.2.1
RUN npm install --global --omit=dev --no-audit --no-fund "maildev@${MAILDEV_VERSION}" \
    && npm cache clean --force
# Mailpit's ports; MAILDEV_SMTP_PORT, MAILDEV_WEB_PORT, MAILDEV_IP and MAILDEV_WEB_IP move them.
ENV MAILDEV_SMTP_PORT=1025 \
    MAILDEV_WEB_PORT=8025
EXPOSE 1025 8025
USER 65534:65534
ENTRYPOINT ["maildev"]
