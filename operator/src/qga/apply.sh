#!/bin/bash
# vrouter: applies staged configuration commands through VyOS's configuration session, the way
# vyos.configsession.ConfigSession does (reference vyos.md section 3). The operator's guest-agent
# fallback runs it when the router has no vrouter agent.
#
#   apply.sh ROOT COMMANDS SAVE SESSION_ID
#
# COMMANDS holds NUL-terminated fields: for each command its operation (set, delete, comment),
# the number of words, then the words. Nothing read from it is ever evaluated: each command runs
# as my_<op> with the words as separate arguments.
# Exit status: 0 applied, 1 an edit was refused (nothing committed), 2 the commit failed,
# 3 the save failed, 65 a malformed command file, 69 VyOS has not finished booting, 70 no session,
# 75 another apply holds the lock.
set -u
root=${1%/}
commands=$2
save=$3
sid=$4
umask 002

lock="$root/run/vrouter-qga-apply.lock"
mkdir -p "$root/run"
exec 9>"$lock" || { echo "vrouter: cannot open $lock"; exit 70; }
flock -w 600 9 || { echo "vrouter: another apply held $lock for 10 minutes"; exit 75; }

# As the agent: nothing is applied before VyOS has loaded its boot configuration.
if [ ! -e "$root/tmp/vyos-config-status" ]; then
    echo "vrouter: VyOS has not finished booting (no /tmp/vyos-config-status)"
    exit 69
fi

api="$root/bin/cli-shell-api"
sbin="$root/opt/vyatta/sbin"
if ! session_env=$("$api" getSessionEnv "$sid"); then
    echo "vrouter: getSessionEnv failed: $session_env"
    exit 70
fi
# VyOS's own output (export statements), evaluated as vbash's `configure` does.
eval "$session_env"
export VYATTA_CFG_GROUP_NAME=vyattacfg VYATTA_USER_LEVEL_DIR=/opt/vyatta/etc/shell/level/admin \
    VYATTA_PROCESS_CLIENT=gui2_rest VYOS_HEADLESS_CLIENT=vyos_http_api vyatta_bindir=/opt/vyatta/bin \
    vyatta_cfg_templates=/opt/vyatta/share/vyatta-cfg/templates vyatta_configdir=/opt/vyatta/config \
    vyatta_datadir=/opt/vyatta/share vyatta_datarootdir=/opt/vyatta/share vyatta_libdir=/opt/vyatta/lib \
    vyatta_libexecdir=/opt/vyatta/libexec vyatta_op_templates=/opt/vyatta/share/vyatta-op/templates \
    vyatta_prefix=/opt/vyatta vyatta_sbindir=/opt/vyatta/sbin vyatta_sysconfdir=/opt/vyatta/etc \
    vyos_bin_dir=/usr/bin vyos_cfg_templates=/opt/vyatta/share/vyatta-cfg/templates \
    vyos_completion_dir=/usr/libexec/vyos/completion vyos_configdir=/opt/vyatta/config \
    vyos_conf_scripts_dir=/usr/libexec/vyos/conf_mode vyos_datadir=/opt/vyatta/share \
    COMMIT_VIA=vrouter-qga COMMIT_COMMENT="vrouter guest-agent delivery"
if ! out=$("$api" setupSession 2>&1); then
    echo "vrouter: setupSession failed: $out"
    exit 70
fi
committed=0
cleanup() {
    [ "$committed" = 1 ] || "$sbin/my_discard" >/dev/null 2>&1
    "$api" teardownSession >/dev/null 2>&1
}
trap cleanup EXIT

while IFS= read -r -d '' op; do
    IFS= read -r -d '' count || { echo "vrouter: truncated command file"; exit 65; }
    case $count in '' | *[!0-9]*) echo "vrouter: bad word count '$count'"; exit 65 ;; esac
    case $op in set | delete | comment) ;; *) echo "vrouter: bad operation '$op'"; exit 65 ;; esac
    words=()
    for ((i = 0; i < count; i++)); do
        IFS= read -r -d '' word || { echo "vrouter: truncated command file"; exit 65; }
        words+=("$word")
    done
    if ! out=$("$sbin/my_$op" "${words[@]}" 2>&1); then
        printf '%s\n' "$out"
        printf 'vrouter: %s %s: refused\n' "$op" "${words[*]}"
        exit 1
    fi
    [ -z "$out" ] || printf '%s\n' "$out"
done <"$commands"

out=$("$sbin/my_commit" 2>&1)
rc=$?
[ -z "$out" ] || printf '%s\n' "$out"
if [ "$rc" != 0 ] || grep -qi 'commit failed' <<<"$out"; then
    echo "vrouter: commit failed"
    exit 2
fi
committed=1
if [ "$save" = 1 ] && ! out=$("$root/usr/libexec/vyos/vyos-save-config.py" 2>&1); then
    printf '%s\n' "$out"
    echo "vrouter: save failed"
    exit 3
fi
exit 0
