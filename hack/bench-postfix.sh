#!/usr/bin/env bash
# Runs a private Postfix instance on loopback for test/bench, which measures it under the
# same load as the relay. The instance lives in its own directory: config (with SASL's in
# etc/sasl), queue and data under DIR (etc, queue, data), listening on 127.0.0.1:PORT
# only, relaying everything to [127.0.0.1]:SINK. The system's Postfix, if any, is neither
# configured nor started.
#
#   hack/bench-postfix.sh start DIR PORT SINK CERT KEY USER SENDER   install if missing, configure, start
#   hack/bench-postfix.sh purge DIR                                  delete every queued message
#   hack/bench-postfix.sh stop DIR                                   stop the instance and remove DIR
#
# start reads USER's password on stdin and prints the master's pid.
#
# The instance is set up as a submission relay is run: a client relays only after AUTH
# (PLAIN or LOGIN, over STARTTLS only; Cyrus SASL with a sasldb holding USER), USER may
# send as SENDER only, and the queue manager delivers mail as it comes, at its defaults.
# Being on 127.0.0.0/8 earns a client nothing.
#
# Exit status 3 means Postfix cannot run here (not root, no package, no start); the reason
# is on stderr and the caller skips the comparison.
set -euo pipefail

skip() {
  echo "bench-postfix: $*" >&2
  exit 3
}

# have_sasl: saslpasswd2 and Cyrus SASL's PLAIN and sasldb plugins.
have_sasl() {
  command -v saslpasswd2 >/dev/null 2>&1 || return 1
  compgen -G '/usr/lib/*/sasl2/libplain.so*' >/dev/null || return 1
  compgen -G '/usr/lib/*/sasl2/libsasldb.so*' >/dev/null
}

install_postfix() {
  command -v postfix >/dev/null 2>&1 && command -v postconf >/dev/null 2>&1 && have_sasl && return 0
  [[ $(id -u) -eq 0 ]] || skip "postfix or Cyrus SASL is missing and installing them needs root"
  command -v apt-get >/dev/null 2>&1 || skip "postfix or Cyrus SASL is missing and there is no apt-get"
  echo "bench-postfix: installing postfix, libsasl2-modules and sasl2-bin from Debian" >&2
  # "No configuration": the package writes no main.cf and configures no system MTA.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  # Keep the packages' scripts from starting the system instance on port 25, or saslauthd.
  local policy=/usr/sbin/policy-rc.d ours=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
  fi
  local ok=1
  apt-get update -qq >/dev/null 2>&1 || ok=0
  if [[ $ok -eq 1 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      postfix libsasl2-modules sasl2-bin >/dev/null 2>&1 || ok=0
  fi
  [[ -n $ours ]] && rm -f "$policy"
  [[ $ok -eq 1 ]] || skip "apt-get install postfix libsasl2-modules sasl2-bin failed"
  command -v postfix >/dev/null 2>&1 || skip "postfix is still missing after apt-get install"
  have_sasl || skip "saslpasswd2 or Cyrus SASL's PLAIN or sasldb plugin is still missing after apt-get install"
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

# write_sasl: the Cyrus SASL configuration of smtpd (the application "smtpd", hence
# smtpd.conf) and a sasldb holding user@bench.example with the password on stdin, in
# etc/sasl: Debian's Postfix looks there whatever cyrus_sasl_config_path says. smtpd
# runs as user postfix and opens the sasldb itself (auxprop), so it must be able to read
# it; with LMDB it also takes a read lock in sasldb2-lock beside it.
write_sasl() {
  local dir=$1 user=$2
  cat >"$dir/etc/sasl/smtpd.conf" <<EOF
pwcheck_method: auxprop
auxprop_plugin: sasldb
mech_list: PLAIN LOGIN
sasldb_path: $dir/etc/sasl/sasldb2
EOF
  local password
  password=$(cat)
  [[ -n $password ]] || { echo "start: no password on stdin" >&2; exit 2; }
  printf '%s' "$password" | saslpasswd2 -f "$dir/etc/sasl/sasldb2" -u bench.example -c -p "$user"
  chown -R root:postfix "$dir/etc/sasl"
  chmod 750 "$dir/etc/sasl"
  chmod 640 "$dir/etc/sasl/smtpd.conf" "$dir/etc/sasl/sasldb2"
  if [[ -e $dir/etc/sasl/sasldb2-lock ]]; then
    chmod 660 "$dir/etc/sasl/sasldb2-lock"
  fi
}

write_main_cf() {
  local dir=$1 sink=$2 cert=$3 key=$4 user=$5 sender=$6
  # Defaults (concurrency limits, process limits, queue timers, in_flow_delay) are left
  # alone.
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
mynetworks = 127.0.0.1/32
smtpd_tls_security_level = may
smtpd_tls_cert_file = $cert
smtpd_tls_key_file = $key
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
smtpd_sasl_local_domain = bench.example
cyrus_sasl_config_path = $dir/etc/sasl
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_sender_login_maps = inline:{ { $sender = $user@bench.example } }
smtpd_sender_restrictions = reject_sender_login_mismatch
relayhost = [127.0.0.1]:$sink
smtp_dns_support_level = disabled
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
  [[ $# -eq 8 ]] || { echo "usage: $0 start DIR PORT SINK CERT KEY USER SENDER <password" >&2; exit 2; }
  dir=$2 port=$3 sink=$4 cert=$5 key=$6 user=$7 sender=$8
  [[ $(id -u) -eq 0 ]] || skip "a private Postfix instance needs root (its daemons run as user postfix)"
  install_postfix
  id postfix >/dev/null 2>&1 || skip "user postfix is missing"
  mkdir -p "$dir/etc/sasl" "$dir/queue" "$dir/data"
  # Postfix's daemons, as user postfix, must traverse to their queue.
  chmod 755 "$dir"
  chown postfix "$dir/data"
  write_sasl "$dir" "$user"
  write_master_cf "$dir" "$port"
  write_main_cf "$dir" "$sink" "$cert" "$key" "$user" "$sender"
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
  echo "usage: $0 start|purge|stop DIR ..." >&2
  exit 2
  ;;
esac
