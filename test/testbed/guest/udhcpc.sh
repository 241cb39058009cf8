#!/bin/sh
# shellcheck disable=SC2154 # interface, ip, mask, router come from udhcpc
# busybox udhcpc event script: apply the lease and remember the address for /init
# and the HTTP identity page.
case "$1" in
  deconfig) ip addr flush dev "$interface"; rm -f /run/nc-ip ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "$ip" > /run/nc-ip ;;
esac
exit 0
