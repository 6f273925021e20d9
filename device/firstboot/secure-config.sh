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
#
# The Wi-Fi passphrase goes the same way once the root filesystem holds the Wi-Fi settings: cloud-init's
# `network-config` (and the image's original, lookout/network-config.orig) after cloud-init has taken it in
# (/var/lib/cloud/instance exists; runcmd, which calls this, runs after cloud-init's network stage), with
# cloud-init's network handling switched off for later boots so a missing seed never replaces the Wi-Fi
# it configured; the legacy path's LOOKOUT_WIFI_PSK line in flash.env (firstrun.sh calls this after it
# applied the Wi-Fi).
set -euo pipefail
ROOT=""
if [ "${1:-}" = --root ]; then
  ROOT=$(cd "${2:?--root needs a directory}" && pwd)
fi
BOOT=$ROOT/boot/firmware
[ -d "$BOOT/lookout" ] || BOOT=$ROOT/boot
DIR=$BOOT/lookout

erase() { # overwrite in place (a random pass, then zeros), sync, then unlink
  if ! shred --iterations=1 --zero "$1" 2>/dev/null; then
    dd if=/dev/zero of="$1" bs=4096 count="$(($(stat -c %s "$1") / 4096 + 1))" conv=notrunc,fsync status=none
  fi
  sync "$1" 2>/dev/null || sync
  rm -f "$1"
}

# --- Wi-Fi passphrase ----------------------------------------------------------------------------
if [ -f "$BOOT/network-config" ] && [ -e "$ROOT/var/lib/cloud/instance" ]; then
  # cloud-init applied it (its copy is in the root fs, root-only): keep it from reading the seed again.
  install -d -m 0755 "$ROOT/etc/cloud/cloud.cfg.d"
  printf '# lookout first boot: the Wi-Fi cloud-init configured stays; network-config was erased from the boot partition\nnetwork: {config: disabled}\n' \
    >"$ROOT/etc/cloud/cloud.cfg.d/99-lookout-network.cfg"
  erase "$BOOT/network-config"
  [ ! -f "$DIR/network-config.orig" ] || erase "$DIR/network-config.orig"
  echo "secure-config: erased network-config (Wi-Fi) from the boot partition"
fi
if [ -f "$DIR/flash.env" ] && grep -q '^LOOKOUT_WIFI_PSK=' "$DIR/flash.env"; then
  kept=$(grep -v '^LOOKOUT_WIFI_PSK=' "$DIR/flash.env")
  erase "$DIR/flash.env"
  printf '%s\n' "$kept" >"$DIR/flash.env"
  sync
  echo "secure-config: erased the Wi-Fi passphrase from flash.env"
fi

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
