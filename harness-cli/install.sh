#!/usr/bin/env bash
# Install the harness CLIs (codex, opencode, gemini) pinned in harness-cli/package.json
# into DIR (default var/harness-cli), then check that each one starts. Local
# sandboxes bind DIR read-only at /opt/harness-cli (docs/harnesses.md).
#
# Install scripts are off (--ignore-scripts: node-pty and keytar would compile
# native code the harnesses never use); the one the CLIs need, opencode's
# postinstall (it links the platform's prebuilt binary, nothing downloaded), is
# run by name.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-${AGENTLOOP_HARNESS_CLI_DIR:-var/harness-cli}}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
stamp="$dir/.installed"
if [ -f "$stamp" ] && cmp -s "$here/package.json" "$dir/package.json"; then
  exit 0
fi
command -v npm >/dev/null || { echo "harness-cli: npm is missing (apt-get install npm)" >&2; exit 1; }
node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' \
  || { echo "harness-cli: Node.js 20 or newer is needed, found $(node --version)" >&2; exit 1; }
rm -f "$stamp"
cp "$here/package.json" "$dir/package.json"
(cd "$dir" && npm install --ignore-scripts --no-package-lock --no-audit --no-fund --loglevel=error)
(cd "$dir/node_modules/opencode-ai" && node postinstall.mjs >/dev/null)
for cli in codex opencode gemini; do
  version="$(HOME="$(mktemp -d)" timeout 60 "$dir/node_modules/.bin/$cli" --version 2>/dev/null | tail -1)" \
    || { echo "harness-cli: $cli does not start" >&2; exit 1; }
  echo "harness-cli: $cli $version"
done
# The sandbox uid reads it through a read-only bind: every directory above it must
# let that uid through too (a clone in a 0700 directory would not).
chmod -R a+rX "$dir"
parent="$dir"
while [ "$parent" != "/" ]; do
  parent="$(dirname "$parent")"
  if ! [ -x "$parent" ] || [ "$(( 0$(stat -c %a "$parent") & 1 ))" -eq 0 ]; then
    echo "harness-cli: warning: $parent is not searchable by other users; sandboxes cannot" \
      "bind $dir (set AGENTLOOP_HARNESS_CLI_DIR to a path they can reach)" >&2
    break
  fi
done
touch "$stamp"
