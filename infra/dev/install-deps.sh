#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine, and nothing that
# is already there: Debian packages (curl, skopeo, containerd, podman, node, make, chromium), Go
# tools (the CNCF registry, versitygw, the Lambda emulator; go install, into .tools/bin)
# and the npm tools pinned in infra/dev/node (dynalite, playwright-core; into .tools/node).
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOOLS="$PWD/.tools/bin"
mkdir -p "$TOOLS"

need_apt=()
for pair in curl:curl skopeo:skopeo containerd:containerd ctr:containerd podman:podman node:nodejs npm:npm make:make chromium:chromium; do
  bin=${pair%%:*} pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# A CJK font, so the Chinese UI renders in the browser tests' screenshots.
dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || need_apt+=(fonts-wqy-microhei)
if ((${#need_apt[@]})); then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi

# Go tools, pinned: the CNCF registry, versitygw (a real S3 API; about 3
# minutes to build the first time) and the AWS Lambda Runtime Interface Emulator.
go_tool() { # name module@version
  if [ ! -x "$TOOLS/$1" ]; then
    echo "installing $1 into $TOOLS"
    GOBIN="$TOOLS" go install "$2"
  fi
}
go_tool registry github.com/distribution/distribution/v3/cmd/registry@v3.1.2
go_tool versitygw github.com/versity/versitygw/cmd/versitygw@v1.8.0
go_tool aws-lambda-rie github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d

# npm tools: reinstalled only when the pinned lock file changes. Install scripts
# stay off (npm's default now): dynalite's leveldb binding ships prebuilt.
NODE_DIR="$PWD/.tools/node"
if ! cmp -s infra/dev/node/package-lock.json "$NODE_DIR/package-lock.json" || [ ! -d "$NODE_DIR/node_modules" ]; then
  echo "installing npm test tools into $NODE_DIR"
  rm -rf "$NODE_DIR" && mkdir -p "$NODE_DIR"
  cp infra/dev/node/package.json infra/dev/node/package-lock.json "$NODE_DIR/"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Python tools for the offline deploy rehearsal (template lint, SAM translation, moto's
# AWS APIs), pinned; into a virtualenv under .tools/py only where the machine lacks them
# (Debian has none of them, and its pip refuses system-wide installs).
PY_PKGS=("moto[server]==5.2.1" "cfn-lint==1.51.0" "aws-sam-translator==1.110.0")
if ! { command -v moto_server && command -v cfn-lint && python3 -c 'import samtranslator, moto'; } >/dev/null 2>&1; then
  if [ ! -x "$PWD/.tools/py/bin/moto_server" ] || [ ! -x "$PWD/.tools/py/bin/cfn-lint" ]; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
      echo "installing Debian packages: python3-venv python3-pip"
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
      $SUDO apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
    fi
    echo "installing ${PY_PKGS[*]} into .tools/py"
    python3 -m venv "$PWD/.tools/py"
    "$PWD/.tools/py/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}"
  fi
fi
