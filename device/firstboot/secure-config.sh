#!/bin/bash
# First boot, before anything else: move the config (broker URL and credentials) and the TLS files that
# flash.sh put on the FAT boot partition into /etc/lookout, then erase the boot-partition copies. FAT has
# no permissions: anyone who reads the card, or any user on the Pi, could read them there.
#
#   secure-config.sh [--root DIR]     # DIR: a staged root (tests); default /
#
# Result: /etc/lookout/config.toml 0640 root:lookout, /etc/lookout/tls/ 0750 root:lookout with ca.crt and
# client.crt 0644 and client.key 0600 lookout:lookout (the service user must read its key, nobody else).
# The copies are overwritten (shred: random, then zeros) before they are unlinked, so the data is gone
# from the FAT clusters too. Idempotent: with nothing left on the boot partition it does nothing.
set -euo pipefail
ROOT=""
if [ "${1:-}" = --root ]; then
  ROOT=$(cd "${2:?--root needs a directory}" && pwd)
fi
BOOT=$ROOT/boot/firmware
[ -d "$BOOT/lookout" ] || BOOT=$ROOT/boot
DIR=$BOOT/lookout
[ -f "$DIR/config.toml" ] || [ -d "$DIR/tls" ] || exit 0

# The lookout user and group (install.sh declares them too; systemd-sysusers is idempotent).
if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT/etc"
  systemd-sysusers --root="$ROOT" "$DIR/device/lookout.sysusers"
else
  systemd-sysusers "$DIR/device/lookout.sysusers"
fi
id_of() { # id_of passwd|group NAME -> numeric id inside the root
  awk -F: -v n="$2" '$1 == n { print $3; found = 1 } END { exit !found }' "$ROOT/etc/$1"
}
uid=$(id_of passwd lookout)
gid=$(id_of group lookout)

put() { # put SRC DEST MODE UID GID: write DEST atomically; owner only when root (staging as a user: no chown)
  local own=()
  if [ "$(id -u)" -eq 0 ]; then own=(-o "$4" -g "$5"); fi
  install -m "$3" "${own[@]}" "$1" "$2.new"
  mv -f "$2.new" "$2"
}

erase() { # overwrite in place (a random pass, then zeros), sync, then unlink
  if ! shred --iterations=1 --zero "$1" 2>/dev/null; then
    dd if=/dev/zero of="$1" bs=4096 count="$(($(stat -c %s "$1") / 4096 + 1))" conv=notrunc,fsync status=none
  fi
  sync "$1" 2>/dev/null || sync
  rm -f "$1"
}

ETC=$ROOT/etc/lookout
install -d -m 0755 "$ETC"
if [ -f "$DIR/config.toml" ]; then
  put "$DIR/config.toml" "$ETC/config.toml" 0640 0 "$gid"
  erase "$DIR/config.toml"
  echo "secure-config: moved config.toml to /etc/lookout (0640 root:lookout)"
fi
if [ -d "$DIR/tls" ]; then
  install -d -m 0750 "$ETC/tls"
  if [ "$(id -u)" -eq 0 ]; then chown "0:$gid" "$ETC/tls"; fi
  for f in "$DIR"/tls/*; do
    [ -f "$f" ] || continue
    name=$(basename "$f")
    case "$name" in
      *.key) put "$f" "$ETC/tls/$name" 0600 "$uid" "$gid" ;;
      *) put "$f" "$ETC/tls/$name" 0644 0 0 ;;
    esac
    erase "$f"
    echo "secure-config: moved tls/$name to /etc/lookout/tls"
  done
  rmdir "$DIR/tls"
fi
sync
