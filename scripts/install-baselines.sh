#!/usr/bin/env bash
# Installs the baselines of `owl-bench` from Debian's packages (the benchmark itself installs
# nothing and skips a baseline that is missing):
#
#   scripts/install-baselines.sh syslog-ng   # syslog-ng-core + syslog-ng-mod-http, and ripgrep
#   scripts/install-baselines.sh rsyslog     # rsyslog + rsyslog-elasticsearch, and ripgrep
#   scripts/install-baselines.sh ripgrep     # ripgrep only
#
# syslog-ng and rsyslog conflict (both provide system-log-daemon), so installing one removes the
# other: measure one, swap, measure the other. Package scripts are kept from starting either
# daemon: the benchmark starts its own instance with its own config. Needs root (or sudo).
set -euo pipefail

usage() {
  echo "usage: $0 syslog-ng|rsyslog|ripgrep" >&2
  exit 2
}

[ $# -eq 1 ] || usage
case "$1" in
  syslog-ng) packages=(syslog-ng-core syslog-ng-mod-http ripgrep); remove=(rsyslog rsyslog-elasticsearch) ;;
  rsyslog) packages=(rsyslog rsyslog-elasticsearch ripgrep); remove=(syslog-ng-core syslog-ng-mod-http) ;;
  ripgrep) packages=(ripgrep); remove=() ;;
  *) usage ;;
esac

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi

# Keep maintainer scripts from starting the daemon (the standard policy-rc.d mechanism), unless
# the machine already has a policy of its own.
policy=/usr/sbin/policy-rc.d
installed_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  installed_policy=1
fi
cleanup() {
  if [ -n "$installed_policy" ]; then $sudo rm -f "$policy"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
if [ ${#remove[@]} -gt 0 ]; then
  # Only what is installed; apt-get refuses to remove unknown packages.
  present=()
  for p in "${remove[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then present+=("$p"); fi
  done
  if [ ${#present[@]} -gt 0 ]; then $sudo apt-get remove -y -qq "${present[@]}"; fi
fi
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"

for program in syslog-ng rsyslogd rg; do
  path=$(command -v "$program" 2>/dev/null || ls "/usr/sbin/$program" 2>/dev/null || true)
  [ -n "$path" ] && echo "installed: $path"
done
exit 0
