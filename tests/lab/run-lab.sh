#!/usr/bin/env bash
# run-lab.sh — the Trellis 802.11s VM lab: real mac80211 + mac80211_hwsim in a qemu VM, the mesh
# formed by trellis-agent, the satellites paired with trellis-controller on the primary router.
# Usually run through `cargo xtask lab`, which builds both first.
#
#   tests/lab/run-lab.sh --agent PATH/TO/static/trellis-agent --controller PATH/TO/static/trellis-controller
#
# Host needs: qemu-system-x86, cpio, kmod (depmod), xz-utils, file, binutils (readelf) — installed
# with apt-get when missing (--no-apt: never). Guest pieces are Debian packages fetched with
# `apt-get download` (never installed on the host): the kernel (linux-image-amd64's), busybox-static,
# iw, wpasupplicant, hostapd, tcpdump, iproute2 and the libraries they need. Nothing else is downloaded.
#
# Env: WORK=/var/tmp/trellis-lab (scratch, cached .debs)  QEMU_TIMEOUT=300  GUEST_ARGS=lab.debug
#      KPKG=linux-image-6.1.0-NN-amd64 (default: what linux-image-amd64 depends on)
# Output: `LAB ...` lines (scenario results and measures), then "N passed, M failed" and
# "TRELLIS LAB: PASS|FAIL"; exit status 0 only if every scenario passed.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/var/tmp/trellis-lab}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-300}
AGENT=""; CONTROLLER=""; APT=1
while [ $# -gt 0 ]; do
  case $1 in
    --agent) AGENT=$2; shift 2;;
    --controller) CONTROLLER=$2; shift 2;;
    --no-apt) APT=0; shift;;
    -h|--help) sed -n '2,17p' "$0"; exit 0;;
    *) echo "run-lab.sh: unknown argument $1" >&2; exit 64;;
  esac
done
T0=${EPOCHREALTIME/./}
log() { local d=$(( ${EPOCHREALTIME/./} - T0 )); printf '[lab %4d.%01ds] %s\n' $((d / 1000000)) $((d % 1000000 / 100000)) "$*"; }
die() { echo "run-lab.sh: $*" >&2; echo "0 passed, 1 failed"; echo "TRELLIS LAB: FAIL"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (apt-get, qemu, depmod on a scratch tree)"
{ [ -n "$AGENT" ] && [ -x "$AGENT" ]; } || die "--agent PATH to a static x86_64 trellis-agent is required"
{ [ -n "$CONTROLLER" ] && [ -x "$CONTROLLER" ]; } || die "--controller PATH to a static x86_64 trellis-controller is required"
for b in "$AGENT" "$CONTROLLER"; do
  file -L "$b" 2>/dev/null | grep -q 'statically linked\|static-pie' || die "$b is not statically linked"
done
mkdir -p "$WORK/debs"

# ------------------------------------------------------------------ host tools
need_host=()
for t in qemu-system-x86_64:qemu-system-x86 cpio:cpio depmod:kmod xz:xz-utils file:file readelf:binutils; do
  command -v "${t%%:*}" >/dev/null || need_host+=("${t#*:}")
done
if [ ${#need_host[@]} -gt 0 ]; then
  [ $APT = 1 ] || die "missing host tools: ${need_host[*]}"
  log "apt-get install ${need_host[*]}"
  apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null 2>&1 || log "apt-get update reported errors; going on"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 \
    "${need_host[@]}" > "$WORK/apt-host.log" 2>&1 || { tail -5 "$WORK/apt-host.log"; die "apt-get install failed"; }
fi

# ------------------------------------------------- guest packages (.deb, not installed)
GUEST_PKGS=(busybox-static iw wpasupplicant hostapd tcpdump iproute2 xxd)
KPKG=${KPKG:-$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')}
if [ -z "$KPKG" ] && [ $APT = 1 ]; then
  apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null 2>&1 || true
  KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
[ -n "$KPKG" ] || die "cannot resolve the kernel package (run apt-get update)"
KVER=${KPKG#linux-image-}
# The shared-library closure of the tools, from the package dependencies (lib* only: the
# executables' other dependencies such as adduser or debconf are not needed in a VM).
LIBS=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
         --no-replaces --no-enhances "${GUEST_PKGS[@]}" 2>/dev/null | grep -E '^(lib[a-z0-9.+-]+|zlib1g)$' | sort -u)
missing=()
for p in "$KPKG" "${GUEST_PKGS[@]}" $LIBS; do
  ls "$WORK/debs/${p}_"*.deb >/dev/null 2>&1 || missing+=("$p")
done
fetched=${#missing[@]}
# One apt-get call for all (about a second); one per package only if that fails, so a virtual
# or vanished name is skipped instead of failing the lot.
if [ "$fetched" -gt 0 ] && ! (cd "$WORK/debs" && apt-get download -qq "${missing[@]}" >/dev/null 2>&1); then
  for p in "${missing[@]}"; do
    ls "$WORK/debs/${p}_"*.deb >/dev/null 2>&1 && continue
    (cd "$WORK/debs" && apt-get download -qq "$p" >/dev/null 2>&1) || log "no .deb for $p (virtual?) — skipped"
  done
fi
log "guest packages: $(find "$WORK/debs" -name '*.deb' | wc -l) .debs cached ($fetched fetched now), kernel $KVER"

KROOT="$WORK/kpkg-$KVER"
if [ ! -d "$KROOT/lib/modules/$KVER" ]; then
  rm -rf "$KROOT"; mkdir -p "$KROOT"
  dpkg -x "$WORK/debs/${KPKG}"_*.deb "$KROOT"
  depmod -b "$KROOT" "$KVER"
fi
KMOD="$KROOT/lib/modules/$KVER"
# Boot the uncompressed ELF vmlinux through its PVH entry: under TCG the bzImage's own xz
# decompression costs ~3 s per boot.
KERNEL="$WORK/vmlinux-$KVER"
if [ ! -s "$KERNEL" ]; then
  VMLINUZ="$KROOT/boot/vmlinuz-$KVER"
  off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$VMLINUZ" | head -1 | cut -d: -f1 || true)
  if [ -n "$off" ] && (set +o pipefail; tail -c +$((off + 1)) "$VMLINUZ" | xz -dcq --single-stream) \
       > "$KERNEL.tmp" 2>/dev/null && file "$KERNEL.tmp" | grep -q 'ELF 64-bit'; then
    mv "$KERNEL.tmp" "$KERNEL"
  else rm -f "$KERNEL.tmp"; cp "$VMLINUZ" "$KERNEL"; log "vmlinux extraction failed: booting the bzImage"; fi
fi

# Userland: every .deb except the kernel unpacked into one tree.
LIBDIR=x86_64-linux-gnu
ROOT="$WORK/rootfs"
. "$HERE/../lib/initramfs.sh"
unpack_debs

# ------------------------------------------------------------------- initramfs
rm -rf "$ROOT"
mkdir -p "$ROOT"/{bin,lib/x86_64-linux-gnu,lib64,etc,proc,sys,dev,run,tmp,var,root}
ln -s bin "$ROOT/sbin"; mkdir -p "$ROOT/usr"; ln -s ../bin "$ROOT/usr/bin"; ln -s ../bin "$ROOT/usr/sbin"
ln -s ../run "$ROOT/var/run"
BB=$(find_in_debroot busybox) || die "busybox not in busybox-static"
cp "$BB" "$ROOT/bin/busybox"
for a in $("$ROOT/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$ROOT/bin/$a"; done
for b in ip iw wpa_supplicant wpa_cli hostapd hostapd_cli tcpdump xxd; do
  src=$(find_in_debroot "$b") || die "$b not found in the fetched packages"
  copy_elf "$src" "$ROOT/bin/$b"
done
LD=$(find_in_debroot ld-linux-x86-64.so.2) || die "no dynamic loader in libc6"
cp -L "$LD" "$ROOT/lib64/ld-linux-x86-64.so.2"; cp -L "$LD" "$ROOT/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
echo 'root:x:0:0:root:/root:/bin/sh' > "$ROOT/etc/passwd"; echo 'root:x:0:' > "$ROOT/etc/group"
printf 'passwd: files\ngroup: files\n' > "$ROOT/etc/nsswitch.conf"
cp "$AGENT" "$ROOT/bin/trellis-agent"
# The primary router's controller; `trellis` is the same binary called by that name.
cp "$CONTROLLER" "$ROOT/bin/trellis-controller"; ln -s trellis-controller "$ROOT/bin/trellis"
# Kernel modules: the mac80211_hwsim, bridge and veth closures and the crypto mac80211 asks for.
copy_mod() { mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$1")"; cp -n "$KMOD/$1" "$ROOT/lib/modules/$KVER/$1"; }
# bridge: each router's LAN bridge br-lan, its mesh a port of it; veth: the setup cable a
# satellite pairs over, plugged into the primary's br-lan
for m in mac80211_hwsim bridge veth; do
  line=$(grep -E "/${m}\.ko(\.[a-z]+)?:" "$KMOD/modules.dep") || die "$m not in $KPKG"
  for f in ${line/:/}; do copy_mod "$f"; done
done
(cd "$KMOD" && find kernel/crypto kernel/arch/x86/crypto kernel/lib/crypto -name '*.ko*') |
  while read -r f; do copy_mod "$f"; done
cp "$KMOD"/modules.{builtin,builtin.modinfo,order} "$ROOT/lib/modules/$KVER/"
depmod -b "$ROOT" "$KVER"
cp "$HERE/guest-init.sh" "$ROOT/init"; chmod 755 "$ROOT/init"
(cd "$ROOT" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) > "$WORK/initrd.cpio"
log "initrd: $(du -h "$WORK/initrd.cpio" | cut -f1), agent $(du -h "$AGENT" | cut -f1), controller $(du -h "$CONTROLLER" | cut -f1)"

# ------------------------------------------------------------------------ boot
# TCG: this lab must run where KVM is absent (CI VMs); KVM is used when it really works.
ACCEL_ARGS=(-accel tcg -cpu max)
if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then ACCEL_ARGS=(-enable-kvm -cpu host); fi
# shellcheck disable=SC2054  # the commas are qemu's (iobase=0xf4,iosize=0x04), not a list
QEMU=(qemu-system-x86_64 "${ACCEL_ARGS[@]}" -m 768 -smp 2 -nodefaults -no-user-config -display none
  -serial stdio -no-reboot -kernel "$KERNEL" -initrd "$WORK/initrd.cpio"
  -append "console=ttyS0 quiet panic=-1 ${GUEST_ARGS:-}"
  -device isa-debug-exit,iobase=0xf4,iosize=0x04)
log "boot: ${QEMU[*]}"
CONSOLE="$WORK/console.log"
set +e
timeout "$QEMU_TIMEOUT" "${QEMU[@]}" </dev/null 2>&1 | tr -d '\r' | tee "$CONSOLE" | grep --line-buffered -E '^LAB '
QRC=${PIPESTATUS[0]}
set -e
# The guest ends through isa-debug-exit: status 1 is its normal end, not a failure.
log "qemu ended with status $QRC (1 = the guest finished; console: $CONSOLE)"
pass=$(grep -cE '^LAB scenario=[^ ]+ result=pass' "$CONSOLE" || true)
fail=$(grep -cE '^LAB scenario=[^ ]+ result=fail' "$CONSOLE" || true)
summary=$(grep -E '^LAB summary ' "$CONSOLE" || true)
[ -n "$summary" ] || { echo "LAB scenario=vm result=fail why=no-summary (crash or timeout after ${QEMU_TIMEOUT}s)"; fail=$((fail + 1)); }
# Every scenario must report: one that silently printed nothing is a failure too.
EXPECTED=16
if [ $((pass + fail)) -lt "$EXPECTED" ]; then
  echo "LAB scenario=vm result=fail why=only-$((pass + fail))-of-$EXPECTED-scenarios-reported"
  fail=$((fail + 1))
fi
log "total"
echo "$pass passed, $fail failed"
if [ "$fail" = 0 ] && [ "$pass" -gt 0 ] && [ $((QRC)) = 1 ]; then echo "TRELLIS LAB: PASS"; exit 0; fi
echo "TRELLIS LAB: FAIL"; exit 1
