#!/usr/bin/env bash
# install.sh VENV SPEC: pip install -e SPEC into VENV, shown as packages and llama.cpp's compile counter
# (scripts/pip-progress.awk); the whole pip log stays in VENV/install.log.
set -eo pipefail
venv=$1 spec=$2
echo "installing lcsynth ($spec) into $venv (full log: $venv/install.log)"
tty=$([ -t 1 ] && echo 1 || echo 0)
"$venv/bin/python" -m pip install -v -e "$spec" 2>&1 | tee "$venv/install.log" \
  | awk -v tty="$tty" -f "$(dirname "$0")/pip-progress.awk" \
  || { tail -n 40 "$venv/install.log"; echo "install failed: see $venv/install.log"; exit 1; }
