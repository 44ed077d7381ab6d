#!/usr/bin/env bash
# Build OpenWrt factory/sysupgrade images with Trellis pre-installed, from an official
# OpenWrt Image Builder (IB) archive and a device PROFILE. See firmware/imagebuilder/README.md.
#
#   build-image.sh --ib openwrt-imagebuilder-24.10.4-mediatek-filogic.Linux-x86_64.tar.zst \
#                  --profile glinet_gl-mt6000 [--role primary|satellite] [--out DIR]
#
# What it does: unpacks the IB (once), checks the PROFILE exists, copies the Trellis packages
# of the IB's arch (from `cargo xtask package`) into the IB's packages/ folder (the IB indexes
# it), swaps the default wpad for one with 802.11s mesh support, adds a first-boot overlay
# that sets the router's role, and runs `make image`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

ib=""
profile=""
role="primary"
packages_dir="$repo/dist/packages"
out=""
extra=""

usage() {
	sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
	cat <<EOF

options:
  --ib PATH         Image Builder archive (.tar.zst/.tar.xz) or an unpacked Image Builder folder
  --profile NAME    device profile (\`make info\` in the Image Builder lists them)
  --role ROLE       primary (trellis-controller, which holds the agent, + LuCI app; the default) or satellite (agent + LuCI app)
  --packages DIR    output of \`cargo xtask package\` (default: dist/packages)
  --out DIR         where the images go (default: dist/images/PROFILE)
  --extra "PKGS"    more packages for the image, e.g. "luci-ssl -ppp"
EOF
}

die() {
	echo "build-image: $*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	case "$1" in
	--ib) ib="${2:?--ib needs a path}"; shift 2 ;;
	--profile) profile="${2:?--profile needs a name}"; shift 2 ;;
	--role) role="${2:?--role needs primary or satellite}"; shift 2 ;;
	--packages) packages_dir="${2:?--packages needs a folder}"; shift 2 ;;
	--out) out="${2:?--out needs a folder}"; shift 2 ;;
	--extra) extra="${2:?--extra needs a package list}"; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" ;;
	esac
done

[ -n "$ib" ] || { usage >&2; die "--ib is required"; }
[ -n "$profile" ] || { usage >&2; die "--profile is required"; }
case "$role" in
primary) uci_role=controller ;;
satellite) uci_role=agent ;;
*) die "--role is primary or satellite, not '$role'" ;;
esac
out="${out:-$repo/dist/images/$profile}"

# An archive is unpacked once next to the other build output; a folder is used as it is.
if [ -f "$ib" ]; then
	name="$(basename "$ib")"
	name="${name%.tar.*}"
	dir="$repo/target/imagebuilder/$name"
	if [ ! -f "$dir/Makefile" ]; then
		echo "unpacking $ib"
		mkdir -p "$dir"
		tar -xf "$ib" -C "$dir" --strip-components=1 ||
			die "cannot unpack $ib (a .tar.zst needs zstd: apt-get install zstd)"
	fi
	ib="$dir"
fi
if [ ! -f "$ib/Makefile" ] || [ ! -f "$ib/.config" ]; then
	die "$ib is not an OpenWrt Image Builder (no Makefile/.config)"
fi

arch="$(sed -n 's/^CONFIG_TARGET_ARCH_PACKAGES="\(.*\)"$/\1/p' "$ib/.config")"
[ -n "$arch" ] || die "cannot read CONFIG_TARGET_ARCH_PACKAGES from $ib/.config"

# 25.12 Image Builders use apk (.apk packages); 24.10 ones use opkg (.ipk).
if [ -f "$ib/repositories" ] || [ -x "$ib/staging_dir/host/bin/apk" ]; then
	format=apk
else
	format=ipk
fi

# Captured first: `grep -q` quitting early would break the pipe under pipefail.
profiles="$(make -s -C "$ib" info)" || die "\`make info\` failed in $ib"
if ! grep -q "^$profile:" <<<"$profiles"; then
	die "profile '$profile' is not in this Image Builder; \`make -C $ib info\` lists the profiles"
fi

shopt -s nullglob
arch_pkgs=("$packages_dir/$arch"/*."$format")
noarch_pkgs=("$packages_dir/all"/*."$format")
shopt -u nullglob
if [ "${#arch_pkgs[@]}" -eq 0 ] || [ "${#noarch_pkgs[@]}" -eq 0 ]; then
	if [ "$format" = apk ]; then
		die "this Image Builder (OpenWrt 25.12) needs .apk packages; cargo xtask package writes .ipk
for 24.10 only. Build .apk packages with the SDK feed (firmware/feed, see firmware/README.md) and pass
their folder with --packages, or use a 24.10 Image Builder."
	fi
	die "no Trellis packages for $arch in $packages_dir; run: cargo xtask package --target $arch"
fi
ours=("${arch_pkgs[@]}" "${noarch_pkgs[@]}")
mkdir -p "$ib/packages"
# Stale Trellis packages of another version would make the IB's index ambiguous.
rm -f "$ib/packages"/trellis-*."$format" "$ib/packages"/luci-app-trellis*."$format"
cp "${ours[@]}" "$ib/packages/"

# First-boot overlay: the role of this router. 89 runs before the package's 90-trellis.
overlay="$(mktemp -d)"
trap 'rm -rf "$overlay"' EXIT
mkdir -p "$overlay/etc/uci-defaults"
cat >"$overlay/etc/uci-defaults/89-trellis-role" <<EOF
#!/bin/sh
# Written by firmware/imagebuilder/build-image.sh --role $role
uci -q set trellis.main.role='$uci_role'
uci -q commit trellis
exit 0
EOF
if [ -d "$here/files" ]; then
	cp -a "$here/files/." "$overlay/"
fi

# The primary's trellis-controller holds the agent too (one multi-call binary) and
# conflicts with trellis-agent: a router gets one of the two.
if [ "$role" = primary ]; then
	pkgs="trellis-controller luci-app-trellis"
else
	pkgs="trellis-agent luci-app-trellis"
fi
# The default wpad has no 802.11s; mesh SAE needs a wpad built with CONFIG_MESH.
pkgs="$pkgs wpad-mesh-mbedtls -wpad-basic-mbedtls -wpad-basic-wolfssl -wpad-basic-openssl"
pkgs="$pkgs kmod-nft-tproxy kmod-nft-socket $extra"

mkdir -p "$out"
echo "building $profile ($arch, $format) as a Trellis $role router"
make -C "$ib" image \
	PROFILE="$profile" \
	PACKAGES="$pkgs" \
	FILES="$overlay" \
	BIN_DIR="$out" \
	EXTRA_IMAGE_NAME="trellis"

echo
echo "images in $out:"
find "$out" -maxdepth 1 -type f \( -name '*sysupgrade*' -o -name '*factory*' \) -printf '  %f\n' | sort
