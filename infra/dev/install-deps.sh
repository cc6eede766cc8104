#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, and nothing that
# is already there: Debian packages (curl, skopeo, containerd, podman) and the CNCF
# distribution registry (go install, into .tools/bin). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"

need_apt=()
for pair in curl:curl skopeo:skopeo containerd:containerd ctr:containerd podman:podman; do
  bin=${pair%%:*} pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi

if [ ! -x "$TOOLS/registry" ]; then
  echo "installing the CNCF distribution registry into $TOOLS"
  GOBIN="$TOOLS" go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2
fi
