#!/bin/bash
# Second stage of provisioning, run by lookout-firstboot.service once the network is online (both
# the cloud-init and the legacy firstrun path end here): install lookout from the bundle flash.sh put
# on the boot partition, then disable this one-shot. On failure it stays enabled and retries at the
# next boot; the log is on the boot partition, readable with a card reader.
set -euo pipefail
BOOT=/boot/firmware
[ -d "$BOOT/lookout" ] || BOOT=/boot
DIR=$BOOT/lookout
exec >>"$DIR/install.log" 2>&1
echo "== firstboot $(date -Is)"
# shellcheck source=/dev/null
. "$DIR/flash.env"
# shellcheck disable=SC2086  # LOOKOUT_INSTALL_ARGS is a word list written by flash.sh
bash "$DIR/device/install.sh" --source "$DIR" --config "$DIR/config.toml" ${LOOKOUT_INSTALL_ARGS:-}
systemctl disable lookout-firstboot.service || true
touch "$DIR/installed"
echo "== firstboot done"
