#!/usr/bin/env bash
# One-time (idempotent) setup for the gateway benchmark.
#
#   bash bench/setup.sh
#
# - installs the `wrk` load generator from Debian's packages when it is missing
#   (needs root, or sudo);
# - creates bench/.venv-litellm with `litellm[proxy]` from PyPI when it is missing
#   (several hundred MB; this is the only place LiteLLM is installed);
# - installs uvloop and aiohttp into the project venv when they are missing (the harness
#   and the loopback upstream use them; both are optional but the figures in README.md were
#   measured with them).
#
# Nothing here is needed at benchmark run time: harness.py never downloads anything.
# Environment overrides: PYTHON (interpreter for the LiteLLM venv, default python3),
# PROJECT_VENV (default <repo>/.venv), LITELLM_SPEC (default 'litellm[proxy]'),
# SKIP_LITELLM=1, SKIP_PROJECT_DEPS=1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
PYTHON="${PYTHON:-python3}"
PROJECT_VENV="${PROJECT_VENV:-$repo/.venv}"
LITELLM_VENV="$here/.venv-litellm"
LITELLM_SPEC="${LITELLM_SPEC:-litellm[proxy]}"

log() { printf '[bench/setup] %s\n' "$*" >&2; }

# --- wrk -------------------------------------------------------------------------------
if command -v wrk >/dev/null 2>&1; then
    log "wrk present: $(command -v wrk)"
else
    log "installing wrk (apt-get)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    if ! $SUDO apt-get install -y --no-install-recommends wrk; then
        $SUDO apt-get update
        $SUDO apt-get install -y --no-install-recommends wrk
    fi
    command -v wrk >/dev/null 2>&1 || { log "wrk still missing"; exit 1; }
fi

# --- LiteLLM proxy in its own virtualenv ---------------------------------------------------
if [ "${SKIP_LITELLM:-0}" = "1" ]; then
    log "SKIP_LITELLM=1: not touching $LITELLM_VENV"
elif [ -x "$LITELLM_VENV/bin/litellm" ] && [ -f "$LITELLM_VENV/.installed" ]; then
    log "LiteLLM present: $("$LITELLM_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))')"
else
    log "creating $LITELLM_VENV with $LITELLM_SPEC (large download, a few minutes)"
    [ -x "$LITELLM_VENV/bin/python" ] || "$PYTHON" -m venv "$LITELLM_VENV"
    "$LITELLM_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$LITELLM_VENV/bin/python" -m pip install --quiet "$LITELLM_SPEC"
    "$LITELLM_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' \
        > "$LITELLM_VENV/.installed"
    log "LiteLLM $(cat "$LITELLM_VENV/.installed") installed"
fi

# --- optional speed-ups in the project venv -------------------------------------------------
if [ "${SKIP_PROJECT_DEPS:-0}" = "1" ]; then
    log "SKIP_PROJECT_DEPS=1: not touching $PROJECT_VENV"
elif [ -x "$PROJECT_VENV/bin/python" ]; then
    missing=()
    "$PROJECT_VENV/bin/python" -c 'import uvloop' 2>/dev/null || missing+=("uvloop")
    "$PROJECT_VENV/bin/python" -c 'import aiohttp' 2>/dev/null || missing+=("aiohttp")
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]} into $PROJECT_VENV"
        "$PROJECT_VENV/bin/python" -m pip install --quiet "${missing[@]}"
    else
        log "uvloop and aiohttp present in $PROJECT_VENV"
    fi
else
    log "no project venv at $PROJECT_VENV (run 'make install' first); skipping uvloop/aiohttp"
fi

log "done"
