#!/bin/sh
# /init of the router-CPU guest (run-guest.sh): mount, load the bench's kernel modules, run the
# service-mesh bench with the binaries in /bin, print its output between BENCH-BEGIN and
# BENCH-END, power off.
export PATH=/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
mount -t tmpfs run /run; mount -t tmpfs tmp /tmp; mkdir -p /run/netns
modprobe -a veth nf_tables nft_redir nft_chain_nat nft_ct 2>/dev/null
ip link set lo up
echo "guest: $(uname -m) $(uname -r), $(nproc) CPU, $(grep -m1 -iE 'cpu model|model name|^cpu' /proc/cpuinfo)"
. /bench-env
set -- $(cat /bench-args)
echo BENCH-BEGIN
/bin/xtask bench --mesh-only --prebuilt /bin "$@" 2>&1
echo "BENCH-END rc=$?"
sync; poweroff -f; sleep 5; echo o > /proc/sysrq-trigger
