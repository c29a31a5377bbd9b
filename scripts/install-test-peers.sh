#!/usr/bin/env bash
# Installs the real peers the tests drive that a fresh machine lacks: syslog-ng, from Debian's
# packages, which the agent's syslog test runs as a forwarder (util-linux `logger` is part of
# Debian's base system). Does nothing when it is there already. Needs root (or sudo) otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v syslog-ng >/dev/null 2>&1 || [ -x /usr/sbin/syslog-ng ]; then
  exit 0
fi
exec bash scripts/install-baselines.sh syslog-ng
