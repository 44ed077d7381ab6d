#!/usr/bin/env bash
# run-guest.sh — boot one system-emulated router CPU (qemu, -icount) with the project's static
# binaries, Debian's stunnel4/iperf3/nftables/iproute2 for that CPU and a Debian kernel, and run
# the service-mesh bench inside it (`xtask bench --mesh-only --prebuilt /bin`, the same code and
# loads as on x86_64). Usually run through `cargo xtask bench --cpu ARCH`, which builds first.
#
#   tests/router-cpu/run-guest.sh --arch mipsel|armhf|arm64 --bin DIR [--shift N] [--env K=V] [-- BENCH ARGS]
#
# DIR holds static trellis-controller (feature agent: also the agent) and xtask for that CPU.
# Guest pieces are Debian packages of the guest's architecture fetched with `apt-get download`
# (dpkg --add-architecture ARCH first; never installed on the host).
# Env: WORK=/var/tmp/trellis-router-cpu (scratch, cached .debs)  QEMU_TIMEOUT=1800
# Output: the guest's bench output (its `GOAL` lines), console in $WORK/ARCH/console.log.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ARCH=""; BIN=""; SHIFT=1; BENCH_ARGS=(); GUEST_ENV=()
while [ $# -gt 0 ]; do
  case $1 in
    --arch) ARCH=$2; shift 2;;
    --bin) BIN=$2; shift 2;;
    --shift) SHIFT=$2; shift 2;;
    --env) GUEST_ENV+=("$2"); shift 2;;
    --) shift; BENCH_ARGS=("$@"); break;;
    -h|--help) sed -n '2,13p' "$0"; exit 0;;
    *) echo "run-guest.sh: unknown argument $1" >&2; exit 64;;
  esac
done
die() { echo "run-guest.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (apt-get download for a foreign arch, depmod on a scratch tree)"
[ -n "$BIN" ] && [ -x "$BIN/trellis-controller" ] && [ -x "$BIN/xtask" ] || die "--bin DIR with trellis-controller and xtask is required"
WORK=${WORK:-/var/tmp/trellis-router-cpu}/$ARCH
QEMU_TIMEOUT=${QEMU_TIMEOUT:-1800}
# One board per CPU. -icount shift=N: every guest instruction advances guest time by 2^N ns, so
# time inside the guest counts instructions, not this machine's load (benches/README.md says
# what that models and what not).
case $ARCH in
  mipsel) # MT7621's 1004Kc is a MIPS32r2 core without FPU; qemu's 24Kc is the MIPS32r2 no-FPU
          # core OpenWrt builds mipsel_24kc for (qemu has no 1004K; its 34Kf adds an FPU).
    KMETA=linux-image-4kc-malta; LIBDIR=mipsel-linux-gnu; LDSO=ld.so.1
    QEMU=(qemu-system-mipsel -M malta -cpu 24Kc -m 256); CONSOLE_DEV=ttyS0; KIMG=vmlinuz;;
  armhf)  # IPQ40xx's Cortex-A7, no crypto extensions.
    KMETA=linux-image-armmp; LIBDIR=arm-linux-gnueabihf; LDSO=ld-linux-armhf.so.3
    QEMU=(qemu-system-arm -M virt,highmem=off -cpu cortex-a7 -m 256); CONSOLE_DEV=ttyAMA0; KIMG=vmlinuz;;
  arm64)  # MT7981/MT7986's Cortex-A53, with crypto extensions.
    KMETA=linux-image-arm64; LIBDIR=aarch64-linux-gnu; LDSO=ld-linux-aarch64.so.1
    QEMU=(qemu-system-aarch64 -M virt -cpu cortex-a53 -m 256); CONSOLE_DEV=ttyAMA0; KIMG=vmlinuz;;
  *) die "--arch mipsel|armhf|arm64";;
esac
command -v "${QEMU[0]}" >/dev/null || die "${QEMU[0]} missing: apt-get install qemu-system-mips / qemu-system-arm"
dpkg --print-foreign-architectures | grep -qx "$ARCH" || {
  dpkg --add-architecture "$ARCH"; apt-get update -qq -o DPkg::Lock::Timeout=600 || true; }
mkdir -p "$WORK/debs"
KPKG=$(apt-cache depends "$KMETA:$ARCH" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
KPKG=${KPKG%:"$ARCH"}
[ -n "$KPKG" ] || die "cannot resolve $KMETA:$ARCH (apt-get update after dpkg --add-architecture $ARCH)"
KVER=${KPKG#linux-image-}
GUEST_PKGS=(busybox-static iproute2 nftables stunnel4 iperf3 openssl)
LIBS=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
         --no-replaces --no-enhances "${GUEST_PKGS[@]/%/:$ARCH}" 2>/dev/null |
       sed "s/:$ARCH\$//" | grep -E '^(lib[a-z0-9.+-]+|zlib1g)$' | sort -u)
missing=()
for p in "$KPKG" "${GUEST_PKGS[@]}" $LIBS; do
  ls "$WORK/debs/${p}_"*.deb >/dev/null 2>&1 || missing+=("$p:$ARCH")
done
if [ ${#missing[@]} -gt 0 ] && ! (cd "$WORK/debs" && apt-get download -qq "${missing[@]}" >/dev/null 2>&1); then
  for p in "${missing[@]}"; do
    (cd "$WORK/debs" && apt-get download -qq "$p" >/dev/null 2>&1) || echo "no .deb for $p (virtual?) — skipped" >&2
  done
fi
KROOT="$WORK/kpkg"
if [ ! -d "$KROOT/lib/modules/$KVER" ]; then
  rm -rf "$KROOT"; mkdir -p "$KROOT"; dpkg -x "$WORK/debs/${KPKG}"_*.deb "$KROOT"
fi
KMOD="$KROOT/lib/modules/$KVER"
KERNEL=$(ls "$KROOT"/boot/$KIMG-"$KVER" 2>/dev/null | head -1)
[ -n "$KERNEL" ] || die "no $KIMG in $KPKG"
ROOT="$WORK/rootfs"
. "$HERE/../lib/initramfs.sh"
unpack_debs
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,lib/$LIBDIR,etc,proc,sys,dev,run,tmp,var,root}
ln -s bin "$ROOT/sbin"; mkdir -p "$ROOT/usr"; ln -s ../bin "$ROOT/usr/bin"; ln -s ../bin "$ROOT/usr/sbin"
ln -s ../lib "$ROOT/usr/lib"; ln -s ../run "$ROOT/var/run"
cp "$(find_in_debroot busybox)" "$ROOT/bin/busybox"
for a in sh mount mkdir cat echo sleep poweroff modprobe insmod ls ps grep sed tr head tail cut uname kill env true false nproc; do
  ln -sf busybox "$ROOT/bin/$a"
done
for b in ip nft stunnel4 iperf3 openssl; do
  src=$(find_in_debroot "$b") || die "$b not found in the fetched packages"
  copy_elf "$src" "$ROOT/bin/$b"
done
cp -L "$(find_in_debroot "$LDSO")" "$ROOT/lib/$LDSO"
# OpenSSL's default config (openssl req reads it).
mkdir -p "$ROOT/usr/lib/ssl"; [ -e "$DEBROOT/etc/ssl/openssl.cnf" ] && mkdir -p "$ROOT/etc/ssl" && cp "$DEBROOT/etc/ssl/openssl.cnf" "$ROOT/etc/ssl/"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOT/etc/passwd"; echo 'root:x:0:' > "$ROOT/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files\n' > "$ROOT/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n' > "$ROOT/etc/hosts"
# One vCPU: both routers share it, so pinning is a no-op (the bench calls taskset -c N CMD…).
printf '#!/bin/sh\nshift 2\nexec "$@"\n' > "$ROOT/bin/taskset"; chmod 755 "$ROOT/bin/taskset"
cp "$BIN/trellis-controller" "$ROOT/bin/trellis-controller"
ln -s trellis-controller "$ROOT/bin/trellis-agent"; ln -s trellis-controller "$ROOT/bin/trellis"
cp "$BIN/xtask" "$ROOT/bin/xtask"
# Kernel modules: veth and nftables' NAT redirect (the agent's interception), uncompressed so
# busybox modprobe loads them.
[ -f "$KMOD/modules.dep" ] || depmod -b "$KROOT" "$KVER"
for m in veth nf_tables nft_redir nft_chain_nat nft_ct nf_conntrack nf_nat; do
  line=$(grep -E "/${m}\.ko(\.[a-z]+)?:" "$KMOD/modules.dep") || continue  # built in
  for f in ${line/:/}; do
    mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$f")"
    case $f in
      *.xz) xz -dc "$KMOD/$f" > "$ROOT/lib/modules/$KVER/${f%.xz}";;
      *) cp -n "$KMOD/$f" "$ROOT/lib/modules/$KVER/$f";;
    esac
  done
done
cp "$KMOD"/modules.{builtin,builtin.modinfo,order} "$ROOT/lib/modules/$KVER/" 2>/dev/null || true
depmod -b "$ROOT" "$KVER"
cp "$HERE/guest-init.sh" "$ROOT/init"; chmod 755 "$ROOT/init"
printf '%s\n' "${BENCH_ARGS[@]}" > "$ROOT/bench-args"
: > "$ROOT/bench-env"; for kv in "${GUEST_ENV[@]}"; do printf 'export %q\n' "$kv" >> "$ROOT/bench-env"; done
(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$WORK/initrd.cpio"
echo "router-cpu: $ARCH guest: kernel $KVER, initrd $(du -h "$WORK/initrd.cpio" | cut -f1), -icount shift=$SHIFT" >&2
CONSOLE="$WORK/console.log"
set +e
timeout "$QEMU_TIMEOUT" "${QEMU[@]}" -smp 1 -icount "shift=$SHIFT,sleep=off" -nodefaults -no-user-config \
  -display none -serial stdio -no-reboot -kernel "$KERNEL" -initrd "$WORK/initrd.cpio" \
  -append "console=$CONSOLE_DEV quiet panic=-1 rdinit=/init" </dev/null 2>&1 | tr -d '\r' | tee "$CONSOLE" |
  sed -un '/^BENCH-BEGIN$/,/^BENCH-END/{/^BENCH-/!p}'
set -e
grep -q '^BENCH-END rc=0' "$CONSOLE" || die "the guest bench did not finish (console: $CONSOLE)"
