#!/usr/bin/env bash
# Installs the tools `make bench` compares tarport with, and nothing that is
# already there: crane and regctl (go install, pinned, into .tools/bin), and
# skopeo, GNU time and curl (Debian). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"

if [ ! -x "$TOOLS/crane" ]; then
  echo "installing crane into $TOOLS"
  GOBIN="$TOOLS" go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
fi
if [ ! -x "$TOOLS/regctl" ]; then
  echo "installing regctl into $TOOLS"
  GOBIN="$TOOLS" go install github.com/regclient/regclient/cmd/regctl@v0.11.7
fi
need_apt=()
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# GNU time, not the shell keyword: the benchmark reads its peak RSS.
[ -x /usr/bin/time ] || need_apt+=(time)
if ((${#need_apt[@]})); then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
