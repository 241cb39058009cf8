#!/usr/bin/env bash
# End-to-end check of the testbed, with nothing but virsh, ssh and curl:
#   1. boot the tiny guest on every host (qcow2 overlay on nc-tiny-base.qcow2 in the
#      `default` pool, NIC on the `novacron` network, serial console logged to a file),
#   2. wait for the ready marker and fetch the guest's HTTP page from inside the host,
#   3. live-migrate the nc-h1 guest to nc-h2 with --copy-storage-all while it dirties
#      memory, driven from inside nc-h1 over ssh (client-driven mode, not --p2p),
#   4. check the guest answers on nc-h2 with the same boot id (it was not rebooted),
#   5. remove its domains and volumes (also on failure).
# Prints timings. Needs `testbed.sh up` first; exits non-zero on any failure.
set -euo pipefail

SRC_DIR=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
TB=$SRC_DIR/testbed.sh
TB_DIR=${NOVACRON_TESTBED_DIR:-/var/lib/novacron-testbed}
STATE=$TB_DIR/state.json
PREFIX=nc-selftest

die() { printf 'selftest: FAIL: %s\n' "$*" >&2; exit 1; }
log() { printf '[selftest %s] %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ -f "$STATE" ] || die "testbed not up: run \`sudo test/testbed/testbed.sh up\`"
"$TB" status >/dev/null || die "testbed unhealthy: $("$TB" status 2>&1 | tr '\n' ';')"

st() { jq -r "$1" "$STATE"; }
host_field() { jq -r --arg n "$1" ".hosts[] | select(.name == \$n) | $2" "$STATE"; }
virsh_on() {
  local host=$1
  shift
  "$TB" exec "$host" -- virsh -q -c qemu:///system "$@"
}
serial_log() { echo "$(host_field "$1" '.dirs["/var/log/libvirt"]')/qemu/$2-serial.log"; }

mapfile -t HOSTS < <(st '.hosts[].name')
KEY=$(st .keyFile)
KNOWN=$(st .knownHosts)

domain_xml() {
  local name=$1 extra=$2
  cat <<EOF
<domain type='$(st .domainType)'>
  <name>$name</name>
  <memory unit='MiB'>$(st .guest.memoryMiB)</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$(st .guest.kernel)</kernel>
    <initrd>$(st .guest.initrd)</initrd>
    <cmdline>$(st .guest.cmdlineBase) nc.name=$name $extra</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='$(st .guest.pool)' volume='$name.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='network'>
      <source network='$(st .guest.network)'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'>
      <log file='/var/log/libvirt/qemu/$name-serial.log' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
EOF
}

overlay() { # overlay HOST VOLUME: a 64 MiB qcow2 backed by the host's base image
  virsh_on "$1" vol-create-as "$(st .guest.pool)" "$2" "$(st .guest.baseVolumeBytes)" \
    --format qcow2 --backing-vol "$(st .guest.baseVolume)" --backing-vol-format qcow2 >/dev/null
}

cleanup() {
  local h d v
  for h in "${HOSTS[@]}"; do
    for d in $(virsh_on "$h" list --all --name 2>/dev/null | grep "^$PREFIX-" || true); do
      virsh_on "$h" destroy "$d" >/dev/null 2>&1 || true
      virsh_on "$h" undefine "$d" >/dev/null 2>&1 || true
    done
    for v in $(virsh_on "$h" vol-list default 2>/dev/null | awk -v p="$PREFIX-" 'index($1, p) == 1 { print $1 }'); do
      virsh_on "$h" vol-delete "$v" default >/dev/null 2>&1 || true
    done
  done
  rm -f "$TB_DIR/$PREFIX"-*
}
trap cleanup EXIT
cleanup

guest_get() { # guest_get HOST IP PATH: HTTP GET from inside HOST's network namespace
  "$TB" exec "$1" -- curl -sS -m 30 "http://$2$3"
}

# --- 1. boot one guest per host -------------------------------------------------
declare -A T_START T_BOOT IP
for h in "${HOSTS[@]}"; do
  d=$PREFIX-$h
  overlay "$h" "$d.qcow2"
  domain_xml "$d" "nc.diskwrite=2" >"$TB_DIR/$d.xml"
  virsh_on "$h" define "$TB_DIR/$d.xml" >/dev/null
  T_START[$h]=$(now)
  virsh_on "$h" start "$d" >/dev/null
  log "$h: started $d"
done

# --- 2. marker, address, HTTP ---------------------------------------------------
MARKER=$(st .guest.marker)
deadline=$(($(date +%s) + 90))
for h in "${HOSTS[@]}"; do
  d=$PREFIX-$h
  f=$(serial_log "$h" "$d")
  until grep -q "$MARKER" "$f" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$h: no $MARKER in $f within 90 s: $(tail -c 600 "$f" 2>/dev/null)"
    sleep 0.1
  done
  T_BOOT[$h]=$(elapsed "${T_START[$h]}")
  IP[$h]=$(sed -n 's/^NOVACRON-GUEST-IP=\([0-9.]*\).*/\1/p' "$f" | tail -n 1)
  [ -n "${IP[$h]}" ] || die "$h: guest reported no address: $(cat "$f")"
  page=$(guest_get "$h" "${IP[$h]}" /) || die "$h: HTTP to ${IP[$h]} failed"
  grep -q "name=$d" <<<"$page" || die "$h: unexpected page: $page"
  virsh_on "$h" net-dhcp-leases "$(st .guest.network)" | grep -q "${IP[$h]}/" \
    || die "$h: no DHCP lease for ${IP[$h]}"
  log "$h: marker after ${T_BOOT[$h]} s (includes time-sharing 2 cores with the other boots), guest at ${IP[$h]} answers HTTP"
done

# --- 3. live migration nc-h1 -> nc-h2 with storage ------------------------------
SRC=${HOSTS[0]}
DST=${HOSTS[1]}
d=$PREFIX-$SRC
ip=${IP[$SRC]}
DST_ADDR=$(host_field "$DST" .address)
before=$(guest_get "$SRC" "$ip" /cgi-bin/id)
boot_id=$(sed -n 's/^boot_id=//p' <<<"$before")
guest_get "$SRC" "$ip" "/cgi-bin/dirty?mib=32&rate=2000&content=random" >/dev/null
guest_get "$SRC" "$ip" "/cgi-bin/diskwrite?mib=4&offset=16" >"$TB_DIR/$d.diskwrite"
written_sha=$(sed -n 's/^sha256=//p' "$TB_DIR/$d.diskwrite")
# No shared storage: the destination disk must exist, same size, before the copy.
overlay "$DST" "$d.qcow2"
log "migrating $d $SRC -> $DST (32 MiB working set, 2000 pages/s random)"
t=$(now)
ssh -n -i "$KEY" -o UserKnownHostsFile="$KNOWN" -o GlobalKnownHostsFile=/dev/null \
  -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes \
  "root@$(host_field "$SRC" .address)" \
  virsh -c qemu:///system migrate --live --persistent --undefinesource --copy-storage-all \
  --migrateuri "tcp://$DST_ADDR" --disks-uri "tcp://$DST_ADDR" \
  "$d" "qemu+ssh://root@$DST_ADDR/system" || die "migration failed"
T_MIG=$(elapsed "$t")

# --- 4. it answers on the destination, same boot ---------------------------------
[ "$(virsh_on "$DST" domstate "$d")" = running ] || die "$d not running on $DST"
if virsh_on "$SRC" dominfo "$d" >/dev/null 2>&1; then die "$d still defined on $SRC"; fi
after=$(guest_get "$DST" "$ip" /cgi-bin/id) || die "guest does not answer from $DST"
[ "$(sed -n 's/^boot_id=//p' <<<"$after")" = "$boot_id" ] || die "boot id changed: guest was rebooted"
status=$(guest_get "$DST" "$ip" /cgi-bin/dirty)
grep -q '^rate=2000' <<<"$status" || die "dirty workload lost: $status"
got=$(guest_get "$DST" "$ip" "/cgi-bin/diskhash?offset=16&mib=4" | sed -n 's/^sha256=//p')
[ "$got" = "$written_sha" ] || die "disk data not carried over ($got != $written_sha)"
base=$(guest_get "$DST" "$ip" "/cgi-bin/diskhash?offset=1&mib=1" | sed -n 's/^sha256=//p')
[ "$base" = "$(st .guest.baseContent.sha256)" ] || die "base image content differs on $DST"
log "$d answers on $DST at $ip after ${T_MIG} s migration; same boot id, disk data intact"

printf '\nselftest OK\n'
printf '  %-28s %s s\n' "boot to marker $SRC" "${T_BOOT[$SRC]}"
for h in "${HOSTS[@]:1}"; do printf '  %-28s %s s\n' "boot to marker $h" "${T_BOOT[$h]}"; done
printf '  %-28s %s s\n' "live migration $SRC->$DST" "$T_MIG"
printf '  %-28s %s\n' "accelerator" "$(st .accel) ($(st .accelNote))"
