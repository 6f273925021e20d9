#!/bin/bash
# Legacy first-boot hook (Raspberry Pi OS Bookworm without cloud-init), run once by systemd from the
# kernel command line (systemd.run=/boot/firmware/lookout/firstrun.sh) before the normal boot, then
# the Pi reboots. It applies hostname and Wi-Fi, enables lookout-firstboot.service (which installs
# lookout once the network is up) and removes its own hook from cmdline.txt. Written by flash.sh.
set -u
BOOT=/boot/firmware
[ -d "$BOOT/lookout" ] || BOOT=/boot
DIR=$BOOT/lookout
exec >>"$DIR/firstrun.log" 2>&1
echo "== firstrun $(date -Is)"
# shellcheck source=/dev/null
. "$DIR/flash.env"
if [ -n "${LOOKOUT_HOSTNAME:-}" ]; then
  if [ -x /usr/lib/raspberrypi-sys-mods/imager_custom ]; then
    /usr/lib/raspberrypi-sys-mods/imager_custom set_hostname "$LOOKOUT_HOSTNAME"
  else
    old=$(tr -d ' \t\n\r' </etc/hostname)
    echo "$LOOKOUT_HOSTNAME" >/etc/hostname
    sed -i "s/127\.0\.1\.1.*$old/127.0.1.1\t$LOOKOUT_HOSTNAME/" /etc/hosts
  fi
fi

if [ -n "${LOOKOUT_WIFI_SSID:-}" ]; then
  if [ -x /usr/lib/raspberrypi-sys-mods/imager_custom ]; then
    /usr/lib/raspberrypi-sys-mods/imager_custom set_wlan "$LOOKOUT_WIFI_SSID" "$LOOKOUT_WIFI_PSK" "${LOOKOUT_WIFI_COUNTRY:-}"
  else
    conn=/etc/NetworkManager/system-connections/lookout-wifi.nmconnection
    mkdir -p "$(dirname "$conn")"
    umask 077
    cat >"$conn" <<NM
[connection]
id=lookout-wifi
type=wifi
autoconnect=true

[wifi]
mode=infrastructure
ssid=$LOOKOUT_WIFI_SSID

[wifi-security]
key-mgmt=wpa-psk
psk=$LOOKOUT_WIFI_PSK

[ipv4]
method=auto

[ipv6]
method=auto
NM
    if [ -n "${LOOKOUT_WIFI_COUNTRY:-}" ] && command -v raspi-config >/dev/null; then
      raspi-config nonint do_wifi_country "$LOOKOUT_WIFI_COUNTRY"
    fi
  fi
fi
# The broker config, TLS key and (now that the root filesystem holds the Wi-Fi) the Wi-Fi passphrase
# leave the FAT partition, overwritten before they are unlinked (secure-config.sh; firstboot repeats it).
bash "$DIR/device/firstboot/secure-config.sh" || echo "secure-config failed; firstboot retries it"

install -m 0644 "$DIR/device/firstboot/lookout-firstboot.service" /etc/systemd/system/lookout-firstboot.service
mkdir -p /etc/systemd/system/multi-user.target.wants
ln -sf /etc/systemd/system/lookout-firstboot.service /etc/systemd/system/multi-user.target.wants/lookout-firstboot.service

# Remove this hook from the (single-line) kernel command line.
sed -i -e 's| systemd\.run=[^ ]*lookout/firstrun\.sh||' -e 's| systemd\.run_success_action=reboot||' \
  -e 's| systemd\.unit=kernel-command-line\.target||' "$BOOT/cmdline.txt"
echo "== firstrun done"
exit 0
