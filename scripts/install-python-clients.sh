#!/usr/bin/env bash
# Creates the virtual environment of the client tests: the real clients from PyPI, at the versions
# pinned in tests/python/requirements.txt, in target/python-clients (or $OWL_PYTHON_VENV). A second
# run with unchanged pins does nothing. Installs python3 and its venv module from Debian's packages
# when they are missing (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${OWL_PYTHON_VENV:-target/python-clients}"
requirements=tests/python/requirements.txt

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || { echo "python3 with venv is needed for the client tests" >&2; exit 1; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
fi

if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$venv/requirements.installed"; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$venv/requirements.installed"
echo "python clients installed in $venv"
