#!/usr/bin/env bash
# NovaCron multi-host libvirt testbed: three real libvirt/QEMU hosts on one machine.
#
# Each host (nc-h1, nc-h2, nc-h3) lives in its own network namespace (own address on a
# bridge, so hosts talk to each other over a real link) and its own mount + UTS
# namespaces (own hostname, own /etc/libvirt, /var/lib/libvirt, /run/libvirt, ...), and
# runs its own virtlogd, libvirtd and sshd. To libvirt, and to the provider reaching it
# over SSH, each one is an independent host.
#
#   testbed.sh up                         build/start (idempotent; repairs a dead host)
#   testbed.sh down                       stop what `up` started, remove everything
#   testbed.sh status [--json]            health of each host; non-zero if any is down
#   testbed.sh exec HOST -- CMD [ARG...]  run a command inside HOST's namespaces
#   testbed.sh shape HOST --delay MS --rate MBIT | --clear
#                                         shape the link between HOST and the bridge
#
# Folder: $NOVACRON_TESTBED_DIR (default /var/lib/novacron-testbed); state.json there
# describes everything tests need (see test/testbed/index.ts for its type).
set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
SRC_DIR=$(dirname "$SELF")
TB_DIR=${NOVACRON_TESTBED_DIR:-/var/lib/novacron-testbed}
HOSTS=(nc-h1 nc-h2 nc-h3)
BRIDGE=ncbr0
BRIDGE_ADDR=10.77.0.1
NET_PREFIX=10.77.0
GUEST_NET=novacron
GUEST_BRIDGE=ncvbr0
GUEST_SUBNET=192.168.122
# A second guest network, isolated (no address, no DHCP, no forwarding): what NIC hot-plug
# tests attach a guest's second NIC to.
GUEST_NET2=novacron-b
GUEST_BRIDGE2=ncvbr1
MARKER=NOVACRON-GUEST-READY
# Appended by the tests' domain XML generators to whatever nc.* parameters they need.
CMDLINE_BASE="console=ttyS0 quiet panic=-1"
# Order matters: each module after its dependencies (modinfo -F depends).
GUEST_MODULES=(failover net_failover virtio_ring virtio virtio_pci_modern_dev
  virtio_pci_legacy_dev virtio_pci virtio_blk virtio_net virtio_balloon evdev button)
PACKAGES=(qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients
  openssh-server openssh-client busybox-static linux-image-amd64 iproute2 dnsmasq-base
  jq curl gcc libc6-dev cpio gzip zstd util-linux kmod)

log() { printf '[testbed %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { printf 'testbed: %s\n' "$*" >&2; exit 1; }

host_index() {
  case "$1" in
    nc-h1) echo 1 ;; nc-h2) echo 2 ;; nc-h3) echo 3 ;;
    *) die "unknown host '$1' (expected one of: ${HOSTS[*]})" ;;
  esac
}
host_ip() { echo "$NET_PREFIX.1$(host_index "$1")"; }
host_dir() { echo "$TB_DIR/hosts/$1"; }
# Root-namespace end of the host's veth pair (<= 15 chars).
veth_br() { echo "ncv-$1"; }
# Ranges never overlap, even though separate netns would tolerate it: a provider bug
# that picks the wrong host's port then fails loudly instead of working by accident.
mig_min() { echo $((49100 + 100 * $(host_index "$1"))); }
mig_max() { echo $((49199 + 100 * $(host_index "$1"))); }
# Disjoint DHCP ranges in one shared subnet (.10-.69, .70-.129, .130-.189): a guest keeps a
# unique, still-routable address after it migrates to another host. .200-.254 are left
# for tests that give guests static addresses. Leases last 3 minutes: a test run creates
# far more guests than a range holds, and dnsmasq never hears that a domain is gone.
dhcp_start() { echo "$GUEST_SUBNET.$((60 * $(host_index "$1") - 50))"; }
dhcp_end() { echo "$GUEST_SUBNET.$((60 * $(host_index "$1") + 9))"; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo $0 $*)"; }

# ---------------------------------------------------------------- process helpers

pid_alive() { [ -n "${1:-}" ] && [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
read_pid() { if [ -f "$1" ]; then tr -dc '0-9' <"$1"; fi; }
netns_inode() { stat -L -c %i "/run/netns/$1" 2>/dev/null || true; }
pid_netns_inode() { stat -L -c %i "/proc/$1/ns/net" 2>/dev/null || true; }

# A recorded pid is ours only while it still lives in our host's network namespace:
# this guards against pid reuse after the original process died.
pid_in_host() {
  local pid=$1 name=$2 ino
  ino=$(netns_inode "$name")
  pid_alive "$pid" && [ -n "$ino" ] && [ "$(pid_netns_inode "$pid")" = "$ino" ]
}

holder_pid() {
  local name=$1 pid
  pid=$(read_pid "$(host_dir "$name")/pids/holder.pid")
  if [ -n "$pid" ] && pid_in_host "$pid" "$name"; then echo "$pid"; fi
}

# Run a command inside a host: network, mount and UTS namespaces of its holder.
host_exec() {
  local name=$1 pid
  shift
  pid=$(holder_pid "$name")
  [ -n "$pid" ] || die "host $name is not running (run: $0 up)"
  nsenter -t "$pid" -n -m -u -- "$@"
}

kill_pids() {
  # kill_pids HOST PID...: TERM, wait up to 5 s, then KILL; only pids still in HOST.
  local name=$1 pid i left
  shift
  local -a mine=()
  for pid in "$@"; do
    if pid_in_host "$pid" "$name"; then mine+=("$pid"); kill -TERM "$pid" 2>/dev/null || true; fi
  done
  [ ${#mine[@]} -gt 0 ] || return 0
  for i in $(seq 50); do
    left=0
    for pid in "${mine[@]}"; do pid_alive "$pid" && left=1; done
    [ "$left" -eq 0 ] && return 0
    sleep 0.1
  done
  for pid in "${mine[@]}"; do
    if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
}

# ---------------------------------------------------------------- packages

ensure_packages() {
  local -a missing=()
  local p
  for p in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- keys

ensure_keys() {
  local k=$TB_DIR/keys name
  mkdir -p "$k"
  chmod 700 "$k"
  [ -f "$k/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C novacron-testbed -f "$k/id_ed25519"
  for name in "${HOSTS[@]}"; do
    [ -f "$k/host-$name" ] || ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$k/host-$name"
  done
  # known_hosts by IP, as the provider (and libvirt) will see the hosts; the hashed
  # copy exercises clients that must match HashKnownHosts-style entries.
  : >"$k/known_hosts.tmp"
  for name in "${HOSTS[@]}"; do
    echo "$(host_ip "$name") $(cut -d' ' -f1,2 "$k/host-$name.pub")" >>"$k/known_hosts.tmp"
  done
  mv "$k/known_hosts.tmp" "$k/known_hosts"
  cp "$k/known_hosts" "$k/known_hosts.hashed"
  ssh-keygen -q -H -f "$k/known_hosts.hashed" >/dev/null 2>&1
  rm -f "$k/known_hosts.hashed.old"
  # libvirt's default ssh transport runs the `ssh` binary and has no known_hosts
  # parameter, so a wrapper pins the testbed's files and refuses unknown host keys.
  mkdir -p "$TB_DIR/bin"
  cat >"$TB_DIR/bin/ssh" <<EOF
#!/bin/sh
exec /usr/bin/ssh -o UserKnownHostsFile=$k/known_hosts -o GlobalKnownHostsFile=/dev/null \\
  -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -i $k/id_ed25519 -o BatchMode=yes "\$@"
EOF
  chmod 755 "$TB_DIR/bin/ssh"
}

# ---------------------------------------------------------------- guest artifacts

guest_kernel_version() {
  local v
  v=$(find /boot -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
  [ -n "$v" ] || die "no /boot/vmlinuz-* (package linux-image-amd64)"
  echo "$v"
}

# The uncompressed ELF kernel inside a bzImage. QEMU boots it through the PVH entry
# point, skipping the real-mode setup and the in-guest decompression that take about
# 3.5 s of a 6 s boot under TCG (measured: marker after 2.9 s instead of 6.4 s).
extract_vmlinux() {
  local z off notes
  for z in 'xz:\xfd7zXZ\x00' 'zstd:\x28\xb5\x2f\xfd' 'gzip:\x1f\x8b\x08'; do
    command -v "${z%%:*}" >/dev/null || continue
    off=$(LC_ALL=C grep -obUaP "${z#*:}" "$1" | head -n 1 | cut -d: -f1) || true
    [ -n "$off" ] || continue
    # The payload is followed by other data: the decompressor complains, the output is fine.
    tail -c +"$((off + 1))" "$1" | "${z%%:*}" -dc >"$2" 2>/dev/null || true
    notes=$(readelf -n "$2" 2>/dev/null) || true
    # Xen note 0x12 = XEN_ELFNOTE_PHYS32_ENTRY, the PVH entry point QEMU needs.
    [[ $notes == *"(0x00000012)"* ]] && return 0
  done
  rm -f "$2"
  return 1
}

build_guest() {
  local g=$TB_DIR/guest kver stamp b m f
  kver=$(guest_kernel_version)
  stamp=$( (echo "${GUEST_MODULES[*]}"; declare -f build_guest extract_vmlinux; cat "$SRC_DIR"/guest/init "$SRC_DIR"/guest/udhcpc.sh "$SRC_DIR"/guest/*.c \
    "$SRC_DIR"/guest/cgi-bin/* /bin/busybox) | sha256sum | cut -c1-16)-$kver
  if [ "$(cat "$g/.stamp" 2>/dev/null)" = "$stamp" ] && [ -f "$g/initrd.img" ] \
    && [ -f "$g/vmlinuz" ] && [ -f "$g/nc-tiny-base.qcow2" ]; then
    return 0
  fi
  log "building tiny guest (kernel $kver)"
  mkdir -p "$g"
  b=$(mktemp -d "$TB_DIR/guest-build.XXXXXX")
  mkdir -p "$b"/root/{bin,sbin,etc,proc,sys,dev,run,tmp,www/cgi-bin,lib/modules}
  cp /bin/busybox "$b/root/bin/busybox"
  ln -s busybox "$b/root/bin/sh" # for the CGI scripts before /init installs the rest
  gcc -static -O2 -Wall -o "$b/root/bin/nc-dirty" "$SRC_DIR/guest/dirty.c"
  gcc -static -O2 -Wall -o "$b/root/bin/nc-powerbtn" "$SRC_DIR/guest/powerbtn.c"
  strip "$b/root/bin/nc-dirty" "$b/root/bin/nc-powerbtn"
  : >"$b/root/lib/modules/order"
  for m in "${GUEST_MODULES[@]}"; do
    f=$(modinfo -k "$kver" -F filename "$m" 2>/dev/null || true)
    case "$f" in
      '' | '(builtin)') continue ;; # built into the kernel: nothing to load
      *.ko) cp "$f" "$b/root/lib/modules/$m.ko" ;;
      *.ko.xz) xz -dc "$f" >"$b/root/lib/modules/$m.ko" ;;
      *.ko.zst) zstd -qdc "$f" >"$b/root/lib/modules/$m.ko" ;;
      *) die "unexpected module file $f" ;;
    esac
    echo "$m" >>"$b/root/lib/modules/order"
  done
  install -m 755 "$SRC_DIR/guest/init" "$b/root/init"
  install -m 755 "$SRC_DIR/guest/udhcpc.sh" "$b/root/etc/udhcpc.sh"
  install -m 644 "$SRC_DIR/guest/cgi-bin/common.sh" "$b/root/www/cgi-bin/common.sh"
  for f in id dirty diskwrite diskhash sync; do
    install -m 755 "$SRC_DIR/guest/cgi-bin/$f" "$b/root/www/cgi-bin/$f"
  done
  # The kernel opens /dev/console for init before init can mount devtmpfs.
  mknod -m 600 "$b/root/dev/console" c 5 1
  (cd "$b/root" && find . | cpio -o -H newc --quiet | gzip -6) >"$b/initrd.img"
  install -m 644 "$b/initrd.img" "$g/initrd.img"
  install -m 644 "/boot/vmlinuz-$kver" "$g/vmlinuz"
  if extract_vmlinux "$g/vmlinuz" "$b/vmlinux"; then
    install -m 644 "$b/vmlinux" "$g/vmlinux"
  else
    log "no PVH-bootable kernel inside the bzImage; guests boot the bzImage (slower)"
    rm -f "$g/vmlinux"
  fi

  # "The image installed on each host": 64 MiB qcow2 whose MiB 1 is all 0x4e ('N'),
  # so restore tests can compare a known range (guest: /cgi-bin/diskhash?offset=1&mib=1).
  qemu-img create -q -f qcow2 "$b/base.qcow2" 64M
  qemu-io -f qcow2 -c 'write -q -P 0x4e 1M 1M' "$b/base.qcow2" >/dev/null
  install -m 644 "$b/base.qcow2" "$g/nc-tiny-base.qcow2"
  rm -rf "$b"
  echo "$stamp" >"$g/.stamp"
  # The KVM verdict depends on the guest kernel, not on init or the tools.
  if [ "$(cat "$g/.kver" 2>/dev/null)" != "$kver" ]; then rm -f "$TB_DIR/accel"; fi
  echo "$kver" >"$g/.kver"
}

# A KVM guest was seen hanging in firmware on this kind of machine (missing CPUID
# features under nested virtualisation), so trust a real boot, not the /dev/kvm node.
guest_kernel() {
  if [ -f "$TB_DIR/guest/vmlinux" ]; then echo "$TB_DIR/guest/vmlinux"; else echo "$TB_DIR/guest/vmlinuz"; fi
}

probe_accel() {
  local g=$TB_DIR/guest out
  if [ -f "$TB_DIR/accel" ]; then return 0; fi
  if [ ! -c /dev/kvm ]; then
    echo "tcg no-/dev/kvm" >"$TB_DIR/accel"
    return 0
  fi
  out=$TB_DIR/kvm-probe.log
  rm -f "$out"
  log "probing KVM with a 15 s boot of the tiny guest"
  timeout 15 qemu-system-x86_64 -accel kvm -m 256 -smp 1 -display none -no-reboot \
    -nodefaults -serial "file:$out" -kernel "$(guest_kernel)" -initrd "$g/initrd.img" \
    -append "$CMDLINE_BASE nc.net=none nc.name=kvm-probe" >"$TB_DIR/kvm-probe.qemu.log" 2>&1 &
  local qpid=$!
  local i
  for i in $(seq 150); do
    if grep -q "$MARKER" "$out" 2>/dev/null; then break; fi
    pid_alive "$qpid" || break
    sleep 0.1
  done
  if grep -q "$MARKER" "$out" 2>/dev/null; then
    echo "kvm marker-after-$((i / 10)).$((i % 10))s" >"$TB_DIR/accel"
  else
    echo "tcg kvm-probe-no-marker-in-15s" >"$TB_DIR/accel"
  fi
  kill "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
  log "accelerator: $(cat "$TB_DIR/accel")"
  return 0
}

# ---------------------------------------------------------------- network

ensure_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    # Only a bridge this script created may be deleted by `down`.
    touch "$TB_DIR/bridge.created"
  fi
  ip link set "$BRIDGE" type bridge stp_state 0 forward_delay 0 2>/dev/null || true
  ip addr replace "$BRIDGE_ADDR/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

ensure_host_netns() {
  local name=$1 vb
  vb=$(veth_br "$name")
  [ -e "/run/netns/$name" ] || ip netns add "$name"
  if ! ip -n "$name" link show eth0 >/dev/null 2>&1; then
    ip link del "$vb" 2>/dev/null || true
    ip link add "$vb" type veth peer name "$vb-p"
    ip link set "$vb-p" netns "$name"
    ip -n "$name" link set "$vb-p" name eth0
  fi
  ip link set "$vb" master "$BRIDGE"
  ip link set "$vb" up
  ip -n "$name" addr replace "$(host_ip "$name")/24" dev eth0
  ip -n "$name" link set eth0 up
  ip -n "$name" link set lo up
}

# ---------------------------------------------------------------- per-host files

prepare_host_dirs() {
  local name=$1 h i uuid
  h=$(host_dir "$name")
  i=$(host_index "$name")
  mkdir -p "$h"/{pids,log,run,cache,ssh,sshd}
  chmod 700 "$h/ssh" "$h/sshd"
  if [ ! -d "$h/etc-libvirt" ]; then
    cp -a /etc/libvirt "$h/etc-libvirt.tmp"
    # The distribution's NAT network would need the root namespace's firewall; the
    # testbed defines its own guest network instead.
    rm -f "$h/etc-libvirt.tmp"/qemu/networks/autostart/*.xml
    uuid=$(cat /proc/sys/kernel/random/uuid)
    cat >>"$h/etc-libvirt.tmp/libvirtd.conf" <<EOF

# --- novacron testbed ($name) ---
# Distinct per host: libvirt refuses to migrate to a host with its own UUID.
host_uuid = "$uuid"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
EOF
    cat >>"$h/etc-libvirt.tmp/qemu.conf" <<EOF

# --- novacron testbed ($name) ---
migration_port_min = $(mig_min "$name")
migration_port_max = $(mig_max "$name")
# No cgroups: 'ip netns exec' gives the host a fresh /sys without the cgroup mounts,
# and the three libvirtds would otherwise share one cgroup tree where equal
# "qemu-ID-NAME" groups (same domain on source and destination) collide.
cgroup_controllers = [ ]
EOF
    mv "$h/etc-libvirt.tmp" "$h/etc-libvirt"
  fi
  if [ ! -d "$h/lib" ]; then
    # Same directory skeleton the package ships (images, qemu/, dnsmasq/, ...).
    mkdir -p "$h/lib.tmp"
    (cd /var/lib/libvirt && find . -type d -print0) | (cd "$h/lib.tmp" && xargs -0 mkdir -p)
    mkdir -p "$h/lib.tmp/images" "$h/lib.tmp/dnsmasq"
    mv "$h/lib.tmp" "$h/lib"
  fi
  mkdir -p "$h/log/qemu"
  # Per-host /etc/hosts so hosts reach each other by name (libvirt's default migration
  # URI uses the destination's hostname).
  {
    cat /etc/hosts
    echo "# novacron testbed"
    local n
    for n in "${HOSTS[@]}"; do echo "$(host_ip "$n") $n"; done
  } >"$h/hosts"
  # Per-host /root/.ssh: the hosts' own client identity for host-to-host ssh (virsh
  # migrate to qemu+ssh://nc-h2 from inside nc-h1) and the authorized key.
  cp "$TB_DIR/keys/id_ed25519" "$TB_DIR/keys/id_ed25519.pub" "$h/ssh/"
  cp "$TB_DIR/keys/id_ed25519.pub" "$h/ssh/authorized_keys"
  : >"$h/ssh/known_hosts"
  for n in "${HOSTS[@]}"; do
    echo "$(host_ip "$n"),$n $(cut -d' ' -f1,2 "$TB_DIR/keys/host-$n.pub")" >>"$h/ssh/known_hosts"
  done
  chmod 600 "$h/ssh/id_ed25519" "$h/ssh/authorized_keys"
  cp "$TB_DIR/keys/host-$name" "$h/sshd/ssh_host_ed25519_key"
  cp "$TB_DIR/keys/host-$name.pub" "$h/sshd/ssh_host_ed25519_key.pub"
  chmod 600 "$h/sshd/ssh_host_ed25519_key"
  cat >"$h/sshd/sshd_config" <<EOF
# sshd of testbed host $name (runs inside its namespaces)
ListenAddress $(host_ip "$name"):22
HostKey $h/sshd/ssh_host_ed25519_key
PidFile $h/pids/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
UsePAM no
PrintMotd no
# Providers open many parallel connections and channels (inventory, migration, logs).
MaxStartups 200
MaxSessions 100
Subsystem sftp internal-sftp
EOF
}

# ---------------------------------------------------------------- host lifecycle

# Runs as the first process of a new host (inside 'ip netns exec' + 'unshare -m -u'):
# mounts the host's own directories over the system ones, starts its daemons and then
# stays alive as the holder of the namespaces.
host_init() {
  local name=$1 h
  h=$(host_dir "$name")
  echo $$ >"$h/pids/holder.pid"
  hostname "$name"
  # Mount points that a fresh machine may lack (root may never have run ssh).
  mkdir -p /etc/libvirt /var/lib/libvirt /run/libvirt /var/log/libvirt /var/cache/libvirt
  [ -d /root/.ssh ] || install -d -m 700 /root/.ssh
  mount --bind "$h/etc-libvirt" /etc/libvirt
  mount --bind "$h/lib" /var/lib/libvirt
  mount --bind "$h/run" /run/libvirt
  mount --bind "$h/log" /var/log/libvirt
  mount --bind "$h/cache" /var/cache/libvirt
  mount --bind "$h/ssh" /root/.ssh
  mount --bind "$h/hosts" /etc/hosts
  start_daemons "$name"
  touch "$h/pids/ready"
  exec -a "novacron-testbed-holder-$name" sleep infinity
}

# Starts whichever of virtlogd, libvirtd, sshd is not running. Called inside the host.
start_daemons() {
  local name=$1 h pid i
  h=$(host_dir "$name")
  pid=$(read_pid /run/libvirt/virtlogd.pid)
  if ! pid_alive "$pid"; then
    rm -f /run/libvirt/virtlogd.pid
    virtlogd -d -p /run/libvirt/virtlogd.pid
  fi
  pid=$(read_pid /run/libvirt/libvirtd.pid)
  if ! pid_alive "$pid"; then
    rm -f /run/libvirt/libvirtd.pid
    libvirtd -d -p /run/libvirt/libvirtd.pid
  fi
  pid=$(read_pid "$h/pids/sshd.pid")
  if ! pid_alive "$pid"; then
    mkdir -p /run/sshd # privilege separation directory, normally made by the init script
    /usr/sbin/sshd -f "$h/sshd/sshd_config" -E "$h/log/sshd.log"
  fi
  for i in $(seq 100); do
    [ -S /run/libvirt/libvirt-sock ] && [ -s "$h/pids/sshd.pid" ] && [ -s /run/libvirt/virtlogd.pid ] \
      && [ -s /run/libvirt/libvirtd.pid ] && break
    sleep 0.1
  done
  cp /run/libvirt/virtlogd.pid "$h/pids/virtlogd.pid"
  cp /run/libvirt/libvirtd.pid "$h/pids/libvirtd.pid"
}

virsh_in() {
  local name=$1
  shift
  host_exec "$name" virsh -q -c qemu:///system "$@"
}

configure_libvirt() {
  local name=$1 h i
  h=$(host_dir "$name")
  for i in $(seq 100); do
    virsh_in "$name" version >/dev/null 2>&1 && break
    sleep 0.1
  done
  if ! virsh_in "$name" pool-info default >/dev/null 2>&1; then
    virsh_in "$name" pool-define-as default dir --target /var/lib/libvirt/images >/dev/null
  fi
  virsh_in "$name" pool-autostart default >/dev/null
  if [[ ! $(virsh_in "$name" pool-info default) =~ State:\ +running ]]; then
    virsh_in "$name" pool-start default >/dev/null
  fi
  # forward mode 'open': a routed bridge with DHCP for which libvirt adds no
  # firewall rules at all, so it depends on nothing outside the host's netns.
  # no-ping: dnsmasq otherwise pings each new address before offering it, which
  # cost ~3 s of every guest boot.
  cat >"$h/net-$GUEST_NET.xml" <<EOF
<network xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>$GUEST_NET</name>
  <forward mode='open'/>
  <bridge name='$GUEST_BRIDGE' stp='off' delay='0'/>
  <mac address='52:54:00:77:00:0$(host_index "$name")'/>
  <ip address='$GUEST_SUBNET.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='$(dhcp_start "$name")' end='$(dhcp_end "$name")'>
        <lease expiry='3' unit='minutes'/>
      </range>
    </dhcp>
  </ip>
  <dnsmasq:options>
    <dnsmasq:option value='no-ping'/>
  </dnsmasq:options>
</network>
EOF
  ensure_net "$name" "$GUEST_NET" "$h/net-$GUEST_NET.xml"
  if [ ! -f "$h/lib/images/nc-tiny-base.qcow2" ] \
    || ! cmp -s "$TB_DIR/guest/nc-tiny-base.qcow2" "$h/lib/images/nc-tiny-base.qcow2"; then
    install -m 644 "$TB_DIR/guest/nc-tiny-base.qcow2" "$h/lib/images/nc-tiny-base.qcow2"
  fi
  virsh_in "$name" pool-refresh default >/dev/null
  read_pid "$h/run/network/$GUEST_NET.pid" >"$h/pids/dnsmasq.pid"
  # Facts libvirt reports for this host, for the state file.
  virsh_in "$name" nodeinfo >"$h/nodeinfo.txt"
  # nodeinfo sums NUMA node memory, which can be less than the total (hot-plugged
  # memory outside node 0 on this kind of VM); nodememstats has the real total.
  virsh_in "$name" nodememstats >"$h/nodememstats.txt"
}

# Idempotent, and cheap enough to run on every `up` for every host, healthy or not: a
# testbed brought up before the network existed gains it without a restart.
ensure_second_net() {
  local name=$1 h
  h=$(host_dir "$name")
  cat >"$h/net-$GUEST_NET2.xml" <<EOF
<network>
  <name>$GUEST_NET2</name>
  <bridge name='$GUEST_BRIDGE2' stp='off' delay='0'/>
</network>
EOF
  ensure_net "$name" "$GUEST_NET2" "$h/net-$GUEST_NET2.xml"
}

# A libvirt network on a host: defined from XML when missing, autostarted, started.
ensure_net() {
  local name=$1 net=$2 xml=$3
  if ! virsh_in "$name" net-info "$net" >/dev/null 2>&1; then
    host_exec "$name" virsh -q -c qemu:///system net-define "$xml" >/dev/null
  fi
  virsh_in "$name" net-autostart "$net" >/dev/null
  if [[ ! $(virsh_in "$name" net-info "$net") =~ Active:\ +yes ]]; then
    virsh_in "$name" net-start "$net" >/dev/null
  fi
}

host_healthy() {
  local name=$1 h pid p
  h=$(host_dir "$name")
  pid=$(holder_pid "$name")
  [ -n "$pid" ] || return 1
  for p in virtlogd libvirtd sshd; do
    pid_in_host "$(read_pid "$h/pids/$p.pid")" "$name" || return 1
  done
  # (Output captured, not piped into `grep -q`: with pipefail, grep's early exit
  # would fail the pipeline through SIGPIPE.)
  [[ $(timeout 10 nsenter -t "$pid" -n -m -u -- virsh -q -c qemu:///system net-info "$GUEST_NET" 2>/dev/null) =~ Active:\ +yes ]]
}

start_host() {
  local name=$1 h pid i
  h=$(host_dir "$name")
  pid=$(holder_pid "$name")
  ensure_host_netns "$name"
  prepare_host_dirs "$name"
  if [ -n "$pid" ]; then
    # Namespaces intact: restart just the daemons that died (QEMU processes of running
    # guests survive a libvirtd restart and are reattached).
    log "$name: restarting dead daemons"
    # 9>&-: daemons must not inherit the lock on $TB_DIR/.lock, or the next `up` waits forever.
    nsenter -t "$pid" -n -m -u -- "$SELF" __start-daemons "$name" 9>&-
  else
    log "$name: starting"
    # A host whose holder died may still have daemons (and guests) running in its
    # netns, on its old mounts: stop them, or two libvirtds would share one state dir.
    if [ -e "/run/netns/$name" ]; then
      stop_host "$name"
      ensure_host_netns "$name"
    fi
    rm -f "$h/pids/ready" "$h/pids/holder.pid"
    if [ ! -d /run/libvirt ]; then
      # Mount point for the per-host /run/libvirt; `down` removes it again if empty.
      mkdir -p /run/libvirt
      echo /run/libvirt >>"$TB_DIR/created-dirs"
    fi
    setsid ip netns exec "$name" unshare -m -u --propagation private \
      "$SELF" __host-init "$name" </dev/null >>"$h/log/holder.log" 2>&1 9>&- &
    for i in $(seq 300); do
      [ -f "$h/pids/ready" ] && break
      sleep 0.1
    done
    [ -f "$h/pids/ready" ] || die "$name did not come up; see $h/log/holder.log"
  fi
  configure_libvirt "$name"
}

# Stops everything running in one host, by recorded pid, and removes its namespace.
# The host's directories (domain definitions, disks) are kept.
stop_host() {
  local name=$1 h pid d ino p
  h=$(host_dir "$name")
  pid=$(holder_pid "$name")
  if [ -n "$pid" ] && pid_in_host "$(read_pid "$h/pids/libvirtd.pid")" "$name"; then
    for d in $(timeout 20 nsenter -t "$pid" -n -m -u -- virsh -q -c qemu:///system list --name 2>/dev/null); do
      timeout 20 nsenter -t "$pid" -n -m -u -- virsh -q -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
    done
    timeout 20 nsenter -t "$pid" -n -m -u -- virsh -q -c qemu:///system net-destroy "$GUEST_NET" >/dev/null 2>&1 || true
  fi
  local -a pids=()
  for p in "$h"/run/qemu/*.pid "$h/run/network/$GUEST_NET.pid" "$h"/pids/{dnsmasq,sshd,libvirtd,virtlogd}.pid; do
    [ -f "$p" ] && pids+=("$(read_pid "$p")")
  done
  kill_pids "$name" "${pids[@]}"
  # Whatever else still runs in this host was started inside it (sshd sessions,
  # commands from `exec`): it is ours too and would otherwise keep the netns alive.
  ino=$(netns_inode "$name")
  if [ -n "$ino" ]; then
    pids=()
    for p in /proc/[0-9]*; do
      p=${p#/proc/}
      [ "$p" = "$pid" ] && continue
      [ "$(pid_netns_inode "$p")" = "$ino" ] && pids+=("$p")
    done
    [ ${#pids[@]} -eq 0 ] || kill_pids "$name" "${pids[@]}"
    [ -n "$pid" ] && kill_pids "$name" "$pid"
  fi
  rm -f "$h"/pids/*.pid "$h/pids/ready"
  ip link del "$(veth_br "$name")" 2>/dev/null || true
  [ -e "/run/netns/$name" ] && ip netns del "$name"
  return 0
}

# ---------------------------------------------------------------- state.json

write_state() {
  local accel domtype name h hosts_json='[]' cpus mem memtotal model kvm_note shaping
  accel=$(cut -d' ' -f1 "$TB_DIR/accel")
  kvm_note=$(cut -d' ' -f2- "$TB_DIR/accel")
  if [ "$accel" = kvm ]; then domtype=kvm; else domtype=qemu; fi
  shaping=$(shaping_caps)
  local key=$TB_DIR/keys/id_ed25519 kh=$TB_DIR/keys/known_hosts
  for name in "${HOSTS[@]}"; do
    h=$(host_dir "$name")
    local f
    for f in nodeinfo nodememstats; do
      [ -s "$h/$f.txt" ] || virsh_in "$name" "$f" >"$h/$f.txt" || true
    done
    cpus=$(sed -n 's/^CPU(s): *//p' "$h/nodeinfo.txt")
    mem=$(sed -n 's/^Memory size: *\([0-9]*\) KiB/\1/p' "$h/nodeinfo.txt")
    model=$(sed -n 's/^CPU model: *//p' "$h/nodeinfo.txt")
    memtotal=$(sed -n 's/^total *: *\([0-9]*\) KiB/\1/p' "$h/nodememstats.txt")
    local ip
    ip=$(host_ip "$name")
    hosts_json=$(jq -c \
      --arg name "$name" --arg ip "$ip" --argjson idx "$(host_index "$name")" \
      --arg uri "qemu+libssh2://root@$ip/system?keyfile=$key&known_hosts=$kh&known_hosts_verify=normal&sshauth=privkey" \
      --arg urissh "qemu+ssh://root@$ip/system?keyfile=$key&command=$TB_DIR/bin/ssh" \
      --arg urilocal "qemu+unix:///system?socket=$h/run/libvirt-sock" \
      --argjson mmin "$(mig_min "$name")" --argjson mmax "$(mig_max "$name")" \
      --argjson holder "$(read_pid "$h/pids/holder.pid")" \
      --argjson virtlogd "$(read_pid "$h/pids/virtlogd.pid")" \
      --argjson libvirtd "$(read_pid "$h/pids/libvirtd.pid")" \
      --argjson sshd "$(read_pid "$h/pids/sshd.pid")" \
      --arg dnsmasq "$(read_pid "$h/pids/dnsmasq.pid")" \
      --arg uuid "$(sed -n 's/^host_uuid = "\(.*\)"/\1/p' "$h/etc-libvirt/libvirtd.conf")" \
      --argjson cpus "${cpus:-0}" --argjson mem "${mem:-0}" --argjson memtotal "${memtotal:-0}" \
      --arg model "$model" \
      --arg h "$h" --arg vb "$(veth_br "$name")" \
      --arg dstart "$(dhcp_start "$name")" --arg dend "$(dhcp_end "$name")" \
      '. + [{
        name: $name, index: $idx, address: $ip, sshPort: 22, user: "root",
        hostname: $name, hostUuid: $uuid,
        libvirtUri: $uri, libvirtUriSsh: $urissh, libvirtUriLocal: $urilocal,
        migrationPorts: [$mmin, $mmax],
        holderPid: $holder,
        pids: { holder: $holder, virtlogd: $virtlogd, libvirtd: $libvirtd, sshd: $sshd,
                dnsmasq: (if $dnsmasq == "" then null else ($dnsmasq | tonumber) end) },
        netns: $name, veth: { host: "eth0", bridgeSide: $vb },
        guestNetwork: { name: "novacron", bridge: "ncvbr0", gateway: "192.168.122.1",
                        cidr: "192.168.122.0/24", dhcpRange: [$dstart, $dend] },
        resources: { cpus: $cpus, memoryKiB: $mem, memoryTotalKiB: $memtotal, cpuModel: $model },
        dirs: { root: $h,
                "/etc/libvirt": ($h + "/etc-libvirt"), "/var/lib/libvirt": ($h + "/lib"),
                "/run/libvirt": ($h + "/run"), "/var/log/libvirt": ($h + "/log"),
                "/var/cache/libvirt": ($h + "/cache"), "/root/.ssh": ($h + "/ssh") }
      }]' <<<"$hosts_json")
  done
  local g=$TB_DIR/guest
  jq -n \
    --arg dir "$TB_DIR" --arg accel "$accel" --arg domtype "$domtype" --arg note "$kvm_note" \
    --arg key "$key" --arg kh "$kh" --arg khh "$TB_DIR/keys/known_hosts.hashed" \
    --arg bin "$TB_DIR/bin/ssh" --arg script "$SELF" \
    --arg kernel "$(guest_kernel)" --arg bz "$g/vmlinuz" --arg initrd "$g/initrd.img" --arg cmdline "$CMDLINE_BASE" \
    --arg marker "$MARKER" --arg basesha "$(head -c 1048576 /dev/zero | tr '\0' 'N' | sha256sum | cut -d' ' -f1)" \
    --arg kver "$(guest_kernel_version)" \
    --argjson hosts "$hosts_json" --argjson shaping "$shaping" \
    '{
      version: 1, dir: $dir, script: $script,
      accel: $accel, domainType: $domtype, accelNote: $note,
      keyFile: $key, knownHosts: $kh, knownHostsHashed: $khh, sshWrapper: $bin,
      bridge: { name: "ncbr0", address: "10.77.0.1", cidr: "10.77.0.0/24" },
      shaping: $shaping,
      guest: {
        kernel: $kernel, kernelBzImage: $bz, initrd: $initrd, kernelVersion: $kver,
        kernelBoot: (if $kernel == $bz then "bzimage" else "pvh" end), cmdlineBase: $cmdline,
        marker: $marker, ipMarker: "NOVACRON-GUEST-IP=",
        serialLogPattern: "/var/log/libvirt/qemu/{domain}-serial.log",
        baseVolume: "nc-tiny-base.qcow2", baseVolumeBytes: 67108864,
        baseContent: { offsetMiB: 1, lengthMiB: 1, byte: 78, sha256: $basesha },
        pool: "default", poolPath: "/var/lib/libvirt/images",
        network: "novacron", network2: "novacron-b", httpPort: 80, memoryMiB: 192
      },
      hosts: $hosts
    }' >"$TB_DIR/state.json.tmp"
  mv "$TB_DIR/state.json.tmp" "$TB_DIR/state.json"
}

# ---------------------------------------------------------------- shaping

netem_available() {
  # Probe on a throwaway dummy-free target: the bridge exists whenever this is called.
  if tc qdisc add dev lo root handle 1: netem delay 0ms 2>/dev/null; then
    tc qdisc del dev lo root 2>/dev/null || true
    return 0
  fi
  return 1
}

shaping_caps() {
  if netem_available; then
    echo '{"rate":true,"delay":true,"qdisc":"netem"}'
  else
    echo '{"rate":true,"delay":false,"qdisc":"tbf","note":"kernel lacks sch_netem: --delay unsupported"}'
  fi
}

cmd_shape() {
  need_root "shape"
  local name=${1:-} delay=0 rate=0 clear=0 pid vb
  [ -n "$name" ] || die "usage: shape HOST --delay MS --rate MBIT | --clear"
  host_index "$name" >/dev/null
  shift
  while [ $# -gt 0 ]; do
    case "$1" in
      --delay) delay=$2; shift 2 ;;
      --rate) rate=$2; shift 2 ;;
      --clear) clear=1; shift ;;
      *) die "shape: unknown option $1" ;;
    esac
  done
  pid=$(holder_pid "$name")
  [ -n "$pid" ] || die "host $name is not running"
  vb=$(veth_br "$name")
  local -a q=()
  if [ "$clear" -eq 0 ]; then
    [[ "$delay" =~ ^[0-9]+(\.[0-9]+)?$ && "$rate" =~ ^[0-9]+(\.[0-9]+)?$ ]] \
      || die "shape: --delay and --rate must be numbers"
    if netem_available; then
      q=(netem limit 100000)
      [ "$delay" != 0 ] && q+=(delay "${delay}ms")
      [ "$rate" != 0 ] && q+=(rate "${rate}mbit")
    elif [ "$delay" != 0 ]; then
      # Checked before touching the link: a refused request leaves the old shaping.
      echo "testbed: --delay needs sch_netem, which this kernel does not have (rate works)" >&2
      exit 3
    elif [ "$rate" != 0 ]; then
      # Token bucket: burst of ~10 ms worth of traffic (at least 32 KiB) keeps TCP smooth; a
      # 20 ms queue, as a well-run shaped link has (a deep one adds its delay to every downtime).
      local burst
      burst=$(awk -v r="$rate" 'BEGIN { b = r * 1000000 / 8 / 100; if (b < 32768) b = 32768; printf "%d", b }')
      q=(tbf rate "${rate}mbit" burst "$burst" latency 20ms)
    fi
  fi
  # Both directions of the host's link: egress from the host (eth0 inside its netns)
  # and egress towards it (the bridge-side veth). A delay applies once per direction.
  tc qdisc del dev "$vb" root 2>/dev/null || true
  nsenter -t "$pid" -n tc qdisc del dev eth0 root 2>/dev/null || true
  [ ${#q[@]} -gt 0 ] || return 0
  tc qdisc replace dev "$vb" root "${q[@]}"
  nsenter -t "$pid" -n tc qdisc replace dev eth0 root "${q[@]}"
}

# ---------------------------------------------------------------- commands

cmd_up() {
  need_root "up"
  case "$TB_DIR" in /var/lib/libvirt* | /etc/libvirt* | /run/libvirt*)
    die "NOVACRON_TESTBED_DIR must not be under a directory the hosts replace" ;;
  esac
  local t0 name
  t0=$(date +%s.%N)
  ensure_packages
  mkdir -p "$TB_DIR"
  chmod 755 "$TB_DIR"
  touch "$TB_DIR/.novacron-testbed"
  exec 9>"$TB_DIR/.lock"
  flock 9
  ensure_keys
  build_guest
  # The KVM probe (up to 15 s) only feeds state.json: run it alongside the hosts.
  probe_accel &
  local probe=$!
  ensure_bridge
  local -a todo=()
  for name in "${HOSTS[@]}"; do
    if host_healthy "$name"; then continue; fi
    todo+=("$name")
  done
  if [ ${#todo[@]} -gt 0 ]; then
    # Hosts are independent: start them in parallel (QEMU capability probing at
    # libvirtd's first start dominates and uses one core each).
    local -a jobs=()
    for name in "${todo[@]}"; do
      start_host "$name" &
      jobs+=($!)
    done
    local j failed=0
    for j in "${jobs[@]}"; do wait "$j" || failed=1; done
    [ "$failed" -eq 0 ] || die "some hosts failed to start"
  fi
  for name in "${HOSTS[@]}"; do ensure_second_net "$name"; done
  wait "$probe" || die "KVM probe failed"
  write_state
  log "up ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s): ${todo[*]:-all hosts were healthy}"
}

cmd_down() {
  need_root "down"
  local name
  if [ -d "$TB_DIR" ] && [ ! -f "$TB_DIR/.novacron-testbed" ]; then
    die "$TB_DIR is not a testbed folder; refusing to touch it"
  fi
  for name in "${HOSTS[@]}"; do
    if [ -d "$(host_dir "$name")" ] || [ -e "/run/netns/$name" ]; then
      log "$name: stopping"
      mkdir -p "$(host_dir "$name")/pids"
      stop_host "$name"
    fi
  done
  if [ -f "$TB_DIR/bridge.created" ]; then ip link del "$BRIDGE" 2>/dev/null || true; fi
  if [ -f "$TB_DIR/created-dirs" ]; then
    local d
    while read -r d; do rmdir "$d" 2>/dev/null || true; done <"$TB_DIR/created-dirs"
  fi
  rm -rf "$TB_DIR"
  log "down"
}

cmd_status() {
  local json=0 name pid ssh_ok virt_ok all_ok=0 out='[]' h
  [ "${1:-}" = "--json" ] && json=1
  for name in "${HOSTS[@]}"; do
    h=$(host_dir "$name")
    ssh_ok=false
    virt_ok=false
    pid=$(holder_pid "$name")
    if [ -n "$pid" ]; then
      if timeout 10 nsenter -t "$pid" -n -m -u -- virsh -q -c qemu:///system version >/dev/null 2>&1; then
        virt_ok=true
      fi
    fi
    if [ -f "$TB_DIR/keys/id_ed25519" ] && timeout 10 ssh -n -i "$TB_DIR/keys/id_ed25519" \
      -o UserKnownHostsFile="$TB_DIR/keys/known_hosts" -o GlobalKnownHostsFile=/dev/null \
      -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5 -o IdentitiesOnly=yes \
      "root@$(host_ip "$name")" true >/dev/null 2>&1; then
      ssh_ok=true
    fi
    [ "$ssh_ok" = true ] && [ "$virt_ok" = true ] || all_ok=1
    out=$(jq -c --arg n "$name" --arg a "$(host_ip "$name")" --argjson s "$ssh_ok" \
      --argjson v "$virt_ok" --arg p "${pid:-}" \
      '. + [{name: $n, address: $a, ssh: $s, libvirtd: $v, healthy: ($s and $v),
             holderPid: (if $p == "" then null else ($p | tonumber) end)}]' <<<"$out")
  done
  if [ "$json" -eq 1 ]; then
    jq --argjson ok "$([ "$all_ok" -eq 0 ] && echo true || echo false)" \
      '{healthy: $ok, hosts: .}' <<<"$out"
  else
    jq -r '.[] | "\(.name)  \(.address)  ssh=\(if .ssh then "up" else "DOWN" end)  libvirtd=\(if .libvirtd then "up" else "DOWN" end)"' <<<"$out"
  fi
  return "$all_ok"
}

cmd_exec() {
  need_root "exec"
  local name=${1:-}
  [ -n "$name" ] || die "usage: exec HOST -- CMD [ARG...]"
  host_index "$name" >/dev/null
  shift
  [ "${1:-}" = "--" ] && shift
  [ $# -gt 0 ] || die "usage: exec HOST -- CMD [ARG...]"
  local pid
  pid=$(holder_pid "$name")
  [ -n "$pid" ] || die "host $name is not running (run: $0 up)"
  exec nsenter -t "$pid" -n -m -u -- "$@"
}

main() {
  local cmd=${1:-}
  [ $# -gt 0 ] && shift
  case "$cmd" in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    exec) cmd_exec "$@" ;;
    shape) cmd_shape "$@" ;;
    __host-init) host_init "$@" ;;
    __start-daemons) start_daemons "$@" ;;
    *)
      sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'
      [ -z "$cmd" ] || [ "$cmd" = help ] || [ "$cmd" = -h ] || [ "$cmd" = --help ] || exit 2
      ;;
  esac
}

main "$@"
