#!/usr/bin/env bash
# Make a Docker engine answer on this machine, for the docker-marked tests.
#
# Idempotent: installs Debian's docker.io (and debootstrap, for `contestkit images bootstrap`)
# only when missing, starts dockerd in the background only when no engine answers, then waits
# until `docker info` works. Fails loudly (non-zero, with dockerd's log) otherwise. Safe without
# a terminal or stdin (CI runs it as root with CI=true).
#
# Environment: DOCKERD_LOG (default /tmp/contestkit-dockerd.log), DOCKER_WAIT_S (default 90).
set -euo pipefail

log() { echo "[install-docker] $*" >&2; }
die() { echo "[install-docker] ERROR: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || die "not root and no sudo: run this script as root"
  SUDO="sudo -n"
fi

missing=()
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
command -v docker >/dev/null 2>&1 || [[ " ${missing[*]-} " == *" docker.io "* ]] || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq </dev/null || die "apt-get update failed"
  $SUDO apt-get install -y -qq "${missing[@]}" </dev/null || die "apt-get install ${missing[*]} failed"
fi
export PATH="$PATH:/usr/sbin:/sbin"

if docker info >/dev/null 2>&1; then
  log "Docker engine already answering: $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')"
  exit 0
fi

DOCKERD_LOG="${DOCKERD_LOG:-/tmp/contestkit-dockerd.log}"
WAIT_S="${DOCKER_WAIT_S:-90}"
log "starting dockerd in the background (log: $DOCKERD_LOG)"
# A daemon killed with its session leaves a pid file and socket behind; neither is in use now.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid 2>/dev/null)" 2>/dev/null; then
  $SUDO rm -f /var/run/docker.pid
fi
$SUDO nohup dockerd >"$DOCKERD_LOG" 2>&1 </dev/null &
pid=$!

for ((i = 1; i <= WAIT_S; i++)); do
  if docker info >/dev/null 2>&1; then
    log "Docker engine up after ${i}s: $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?')"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 40 "$DOCKERD_LOG" >&2 || true
    die "dockerd exited before answering (log above)"
  fi
  sleep 1
done
tail -n 40 "$DOCKERD_LOG" >&2 || true
die "dockerd did not answer within ${WAIT_S}s (log above)"
