# Building a guest's initramfs from Debian packages, shared by the wifi lab
# (tests/lab/run-lab.sh) and the router-CPU bench (tests/router-cpu/run-guest.sh).
#
# Source it after setting WORK (scratch with the fetched .debs in $WORK/debs), ROOT (the
# initramfs tree), LIBDIR (the guest's multiarch directory, e.g. x86_64-linux-gnu) and a die()
# that says what went wrong. unpack_debs unpacks every fetched package but the kernel into one
# tree (again only when the set of .debs changed); find_in_debroot finds a program or library
# there; copy_elf copies a program into ROOT with, recursively, every library it needs.

unpack_debs() {
  DEBROOT="$WORK/debroot"
  local stamp d
  stamp=$(find "$WORK/debs" -name '*.deb' -printf '%f\n' | LC_ALL=C sort | md5sum | cut -c1-12)
  if [ ! -f "$DEBROOT/.stamp-$stamp" ]; then
    rm -rf "$DEBROOT"; mkdir -p "$DEBROOT"
    for d in "$WORK"/debs/*.deb; do case ${d##*/} in linux-image-*) continue;; esac; dpkg -x "$d" "$DEBROOT"; done
    touch "$DEBROOT/.stamp-$stamp"
  fi
}

find_in_debroot() {  # the path of a library or program inside the unpacked packages
  local f d
  for d in lib/$LIBDIR usr/lib/$LIBDIR lib64 usr/lib lib bin sbin usr/bin usr/sbin; do
    f="$DEBROOT/$d/$1"; [ -e "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

declare -A copied=()
copy_elf() {  # copy_elf SRC DST: a program and, recursively, the libraries it needs
  local src=$1 dst=$2 lib path
  rm -f "$dst"; cp -L "$src" "$dst"
  for lib in $(readelf -d "$src" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -n "${copied[$lib]:-}" ] && continue
    path=$(find_in_debroot "$lib") || die "library $lib (needed by ${src##*/}) is in no fetched package"
    copied[$lib]=1
    copy_elf "$path" "$ROOT/lib/$LIBDIR/$lib"
  done
}
