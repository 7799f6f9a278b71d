#!/usr/bin/env bash
# Installs the real clients the tests drive (swaks; python3 for smtplib), jq, which runs
# the log queries of docs/operating.md against a relay's log, and dkimpy with dnspython,
# the DKIM verifier that checks the relay's signatures independently of the Go library
# that makes them, from Debian when they are missing. Needs root (or sudo); otherwise it
# says what to install.
set -euo pipefail

missing=()
command -v swaks >/dev/null 2>&1 || missing+=(swaks)
# swaks speaks TLS through these, which Debian only recommends.
perl -MNet::SSLeay -MIO::Socket::SSL -e1 >/dev/null 2>&1 || missing+=(libnet-ssleay-perl libio-socket-ssl-perl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v jq >/dev/null 2>&1 || missing+=(jq)
# Debian's python3-dns is the older pydns; dnspython, which the verifier's DNS lookups
# use, is python3-dnspython. Ask Debian's own interpreter, which these packages serve,
# even when another python3 comes first on PATH.
python=/usr/bin/python3
[[ -x $python ]] || python=python3
"$python" -c 'import dkim, dns.message, dns.query' >/dev/null 2>&1 || missing+=(python3-dkim python3-dnspython)
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
