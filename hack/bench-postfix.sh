#!/usr/bin/env bash
# Runs a private Postfix instance on loopback for test/bench, which measures it under the
# same load as the relay. The instance lives in its own directory: config, queue and data
# under DIR (etc, queue, data), listening on 127.0.0.1:PORT only, relaying everything to [127.0.0.1]:SINK.
# The system's Postfix, if any, is neither configured nor started.
#
#   hack/bench-postfix.sh start DIR PORT SINK CERT KEY   install if missing, configure, start
#   hack/bench-postfix.sh mode DIR submit|deliver        submit: queue only (qmgr off); deliver: relay on
#   hack/bench-postfix.sh purge DIR                      delete every queued message
#   hack/bench-postfix.sh stop DIR                       stop the instance and remove DIR
#
# Exit status 3 means Postfix cannot run here (not root, no package, no start); the reason
# is on stderr and the caller skips the comparison.
#
# Postfix accepts from 127.0.0.0/8 via mynetworks without SASL, so it does less work per
# message than the relay, which authenticates every session: the comparison is conservative.
set -euo pipefail

skip() {
  echo "bench-postfix: $*" >&2
  exit 3
}

install_postfix() {
  command -v postfix >/dev/null 2>&1 && command -v postconf >/dev/null 2>&1 && return 0
  [[ $(id -u) -eq 0 ]] || skip "postfix is not installed and installing it needs root"
  command -v apt-get >/dev/null 2>&1 || skip "postfix is not installed and there is no apt-get"
  echo "bench-postfix: installing postfix from Debian" >&2
  # "No configuration": the package writes no main.cf and configures no system MTA.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  # Keep the package's scripts from starting the system instance on port 25.
  local policy=/usr/sbin/policy-rc.d ours=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
  fi
  local ok=1
  apt-get update -qq >/dev/null 2>&1 || ok=0
  if [[ $ok -eq 1 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null 2>&1 || ok=0
  fi
  [[ -n $ours ]] && rm -f "$policy"
  [[ $ok -eq 1 ]] || skip "apt-get install postfix failed"
  command -v postfix >/dev/null 2>&1 || skip "postfix is still missing after apt-get install"
}

# master.cf: only the services a relay needs, none chrooted (the private queue has no
# chroot files), smtpd on loopback.
write_master_cf() {
  local dir=$1 port=$2
  cat >"$dir/etc/master.cf" <<EOF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
proxywrite unix - - n -  1 proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
}

write_main_cf() {
  local dir=$1 sink=$2 cert=$3 key=$4
  # Defaults (concurrency limits, process limits, queue timers) are left alone.
  cat >"$dir/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/queue
data_directory = $dir/data
maillog_file_prefixes = $dir
maillog_file = $dir/maillog
myhostname = postfix.bench.example
mydomain = bench.example
myorigin = \$myhostname
mydestination =
local_transport = error:5.1.1 no local delivery
alias_maps =
alias_database =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [127.0.0.1]:$sink
smtp_dns_support_level = disabled
smtpd_tls_security_level = may
smtpd_tls_cert_file = $cert
smtpd_tls_key_file = $key
biff = no
EOF
}

master_pid() {
  local f=$1/queue/pid/master.pid
  [[ -r $f ]] && tr -d ' \n' <"$f"
}

cmd=${1:-}
case $cmd in
start)
  [[ $# -eq 6 ]] || { echo "usage: $0 start DIR PORT SINK CERT KEY" >&2; exit 2; }
  dir=$2 port=$3 sink=$4 cert=$5 key=$6
  [[ $(id -u) -eq 0 ]] || skip "a private Postfix instance needs root (its daemons run as user postfix)"
  install_postfix
  id postfix >/dev/null 2>&1 || skip "user postfix is missing"
  mkdir -p "$dir/etc" "$dir/queue" "$dir/data"
  # Postfix's daemons, as user postfix, must traverse to their queue.
  chmod 755 "$dir"
  chown postfix "$dir/data"
  write_master_cf "$dir" "$port"
  write_main_cf "$dir" "$sink" "$cert" "$key"
  postfix -c "$dir/etc" check >"$dir/start.log" 2>&1 || skip "postfix check failed: $(tail -3 "$dir/start.log")"
  postfix -c "$dir/etc" start >>"$dir/start.log" 2>&1 || skip "postfix start failed: $(tail -3 "$dir/start.log")"
  for _ in $(seq 100); do
    if pid=$(master_pid "$dir") && [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
      echo "$pid"
      exit 0
    fi
    sleep 0.1
  done
  skip "postfix master did not start: $(tail -3 "$dir/maillog" 2>/dev/null)"
  ;;
mode)
  [[ $# -eq 3 ]] || { echo "usage: $0 mode DIR submit|deliver" >&2; exit 2; }
  dir=$2
  case $3 in
  # Without qmgr nobody returns cleanup's flow-control tokens, and in_flow_delay would
  # hold every message for 1 s: turn that wait off while the queue manager is.
  submit) postconf -c "$dir/etc" -e "master_service_disable = qmgr/unix" "in_flow_delay = 0s" ;;
  deliver) postconf -c "$dir/etc" -e "master_service_disable =" && postconf -c "$dir/etc" -X in_flow_delay ;;
  *) echo "mode is submit or deliver" >&2; exit 2 ;;
  esac
  postfix -c "$dir/etc" reload >/dev/null 2>&1
  ;;
purge)
  [[ $# -eq 2 ]] || { echo "usage: $0 purge DIR" >&2; exit 2; }
  postsuper -c "$2/etc" -d ALL >/dev/null 2>&1 || true
  ;;
stop)
  [[ $# -eq 2 ]] || { echo "usage: $0 stop DIR" >&2; exit 2; }
  dir=$2
  if [[ -f $dir/etc/main.cf ]]; then
    pid=$(master_pid "$dir" || true)
    postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
    # postfix stop returns before master has exited; wait for it, then for its children.
    if [[ -n ${pid:-} ]]; then
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  # Only remove what this script created: a directory holding our main.cf.
  if [[ -f $dir/etc/main.cf ]] && grep -qxF "queue_directory = $dir/queue" "$dir/etc/main.cf"; then
    rm -rf "$dir"
  fi
  ;;
*)
  echo "usage: $0 start|mode|purge|stop DIR ..." >&2
  exit 2
  ;;
esac
