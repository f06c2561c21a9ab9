#!/usr/bin/env bash
# Run the whole ProbeOps test suite on a fresh Debian 12 machine, as root:
#   ./run_tests.sh            (extra arguments go to pytest, e.g. ./run_tests.sh -k quota)
#
# It installs what the suite needs and starts nothing by hand: the tests themselves start a
# throwaway PostgreSQL and Redis on loopback ports, build the network-namespace probe lab,
# and tear everything down at the end.
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages: database and cache servers, nginx (its config is checked with nginx -t), the probe lab (iproute2, nftables, bind9) and
# the reference tools the probe engines are compared with (ping, traceroute, dig, whois), and prometheus for
# promtool (tests/test_metrics.py runs `promtool check metrics`; its daemon is kept from starting like the others).
# chromium: headless, for tests/test_docs_page.py (the /api/docs page in a real browser); it starts no service.
DEBS="postgresql redis-server iproute2 nftables bind9 iputils-ping traceroute dnsutils whois nginx prometheus chromium"
missing=""
for pkg in $DEBS; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "[run_tests] installing:$missing"
  # Keep the packages' own services (postgresql, redis, named) from starting system-wide.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

# Python packages in ./.venv, reinstalled only when the requirements change.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.dev-requirements.sha256 2>/dev/null || true)" != "$want" ]; then
  echo "[run_tests] installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > .venv/.dev-requirements.sha256
fi

export PATH="$PWD/.venv/bin:$PATH"
# Lint first: a finding fails the run like a failing test (rules in pyproject.toml).
.venv/bin/python -m ruff check --quiet .
exec .venv/bin/python -m pytest "$@"
