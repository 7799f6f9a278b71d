#!/usr/bin/env bash
# Installs the real clients the tests drive (swaks; python3 for smtplib) and jq, which
# runs the log queries of docs/operating.md against a relay's log, from Debian when they
# are missing. Needs root (or sudo); otherwise it says what to install.
set -euo pipefail

missing=()
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
# swaks speaks TLS through these, which Debian only recommends.
perl -MNet::SSLeay -MIO::Socket::SSL -e1 >/dev/null 2>&1 || missing+=(libnet-ssleay-perl libio-socket-ssl-perl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v jq >/dev/null 2>&1 || missing+=(jq)
[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo"
  else
    echo "test-deps: please install ${missing[*]} (Debian: apt-get install ${missing[*]}); the tests that drive them fail in CI without them" >&2
    exit 0
  fi
fi
echo "test-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
