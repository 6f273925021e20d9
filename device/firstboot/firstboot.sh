#!/bin/bash
# Second stage of provisioning, run by lookout-firstboot.service once the network is online (both
# the cloud-init and the legacy firstrun path end here): take the config and keys off the boot
# partition (secure-config.sh), install lookout from the bundle flash.sh put there, then disable this
# one-shot. On failure it stays enabled and retries at the next boot; the log is on the boot
# partition, readable with a card reader (it never holds a secret).
#
#   firstboot.sh [--root DIR]     # DIR: a staged root (tests): install.sh --root, no systemctl
set -euo pipefail
ROOT=""
if [ "${1:-}" = --root ]; then
  ROOT=$(cd "${2:?--root needs a directory}" && pwd)
fi
BOOT=$ROOT/boot/firmware
[ -d "$BOOT/lookout" ] || BOOT=$ROOT/boot
DIR=$BOOT/lookout
exec >>"$DIR/install.log" 2>&1
echo "== firstboot $(date -Is)"
# shellcheck source=/dev/null
. "$DIR/flash.env"
root_args=()
if [ -n "$ROOT" ]; then root_args=(--root "$ROOT"); fi
# Before anything that can fail: a retry at the next boot finds the config in /etc/lookout.
bash "$DIR/device/firstboot/secure-config.sh" ${root_args[@]+"${root_args[@]}"}
# install.sh keeps the /etc/lookout/config.toml just written.
# shellcheck disable=SC2086  # LOOKOUT_INSTALL_ARGS is a word list written by flash.sh
bash "$DIR/device/install.sh" --source "$DIR" ${root_args[@]+"${root_args[@]}"} ${LOOKOUT_INSTALL_ARGS:-}
if [ -n "$ROOT" ]; then
  rm -f "$ROOT/etc/systemd/system/multi-user.target.wants/lookout-firstboot.service"
else
  systemctl disable lookout-firstboot.service || true
fi
touch "$DIR/installed"
echo "== firstboot done"
