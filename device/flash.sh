#!/usr/bin/env bash
# Write a Raspberry Pi OS image to an SD card (or an image file) and add first-boot provisioning,
# so the card boots into a running lookout service that publishes to the broker.
#
#   device/flash.sh IMAGE TARGET --config FILE [--device-id ID] [--wifi SSID:PSK] [--wifi-country CC]
#
# The config's [mqtt.tls] files (CA, client certificate and key) go onto the card with it, and
# runtime.type = "edgetpu" adds --edgetpu to the device's install. First boot moves config and keys
# into /etc/lookout (config 0640 root:lookout, key 0600 lookout) and erases them from the boot
# partition, so no broker password or key stays on the FAT partition.
#
# IMAGE: .img, .img.xz, .img.gz or .img.zst. TARGET: a whole-disk block device (/dev/sdX, /dev/mmcblkN)
# or an image file (created or overwritten; TARGET == IMAGE edits the image in place).
# The boot (FAT) partition is edited with mtools at its byte offset: no mount, no loop device, no root
# needed for image files. Provisioning, detected from the image:
#   cloud-init (user-data/meta-data on the boot partition, or ds=nocloud in cmdline.txt): user-data,
#     meta-data (new instance-id) and network-config are written;
#   otherwise the legacy hook: lookout/firstrun.sh run via systemd.run= on the kernel command line.
# Both end in lookout-firstboot.service, which runs device/install.sh once the network is online.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: flash.sh IMAGE TARGET --config FILE [options]
  --config FILE         lookout config.toml for the device (broker URL, credentials, source, runtime);
                        the [mqtt.tls] files it names are carried too
  --device-id ID        device id (sets device_id in the config; also the hostname when it is a valid one)
  --wifi SSID:PSK       Wi-Fi network to join (split at the first ':')
  --wifi-country CC     Wi-Fi regulatory country (ISO 3166 alpha-2; the Pi's WLAN stays off without one)
  --source DIR          lookout checkout to put on the card (default: the checkout holding this script)
  --install-args ARGS   extra arguments for install.sh on the device (--edgetpu follows runtime.type)
  --yes                 do not ask before overwriting a block device
  --dry-run             check everything, write nothing
  -h, --help            this help
EOF
}

die() {
  echo "flash.sh: error: $*" >&2
  exit 2
}
note() { echo "flash.sh: $*"; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(dirname "$HERE")
IMAGE=""
TARGET=""
CONFIG=""
DEVICE_ID=""
WIFI=""
WIFI_COUNTRY=""
INSTALL_ARGS=""
YES=0
DRY_RUN=0
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
    --device-id) DEVICE_ID=${2:?--device-id needs an id}; shift 2 ;;
    --wifi) WIFI=${2:?--wifi needs SSID:PSK}; shift 2 ;;
    --wifi-country) WIFI_COUNTRY=${2:?--wifi-country needs a country code}; shift 2 ;;
    --source) SOURCE=${2:?--source needs a directory}; shift 2 ;;
    --install-args) INSTALL_ARGS=${2:-}; shift 2 ;;
    --yes) YES=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option $1" ;;
    *) positional+=("$1"); shift ;;
  esac
done
[ ${#positional[@]} -eq 2 ] || { usage >&2; die "expected IMAGE and TARGET"; }
IMAGE=${positional[0]}
TARGET=${positional[1]}

# --- validate inputs ---------------------------------------------------------------------------
for tool in sfdisk mcopy mdir mtype mmd mdeltree; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install fdisk mtools)"
done
[ -f "$IMAGE" ] || die "image $IMAGE not found"
[ -n "$CONFIG" ] || die "--config FILE is required (the device's lookout config.toml)"
[ -f "$CONFIG" ] || die "config $CONFIG not found"
[ -f "$SOURCE/device/install.sh" ] || die "--source $SOURCE is not a lookout checkout (no device/install.sh)"
if [ -n "$DEVICE_ID" ] && ! [[ $DEVICE_ID =~ ^[A-Za-z0-9_.-]{1,64}$ ]]; then
  die "--device-id '$DEVICE_ID' must be 1-64 characters of A-Z a-z 0-9 _ . -"
fi
WIFI_SSID=""
WIFI_PSK=""
if [ -n "$WIFI" ]; then
  [[ $WIFI == *:* ]] || die "--wifi must be SSID:PSK"
  WIFI_SSID=${WIFI%%:*}
  WIFI_PSK=${WIFI#*:}
  [ -n "$WIFI_SSID" ] || die "--wifi: empty SSID"
  { [ ${#WIFI_PSK} -ge 8 ] && [ ${#WIFI_PSK} -le 63 ]; } || die "--wifi: a WPA passphrase has 8 to 63 characters"
  [ -n "$WIFI_COUNTRY" ] || note "warning: no --wifi-country: Raspberry Pi OS keeps the WLAN blocked until one is set"
fi
if [ -n "$WIFI_COUNTRY" ] && ! [[ $WIFI_COUNTRY =~ ^[A-Z]{2}$ ]]; then
  die "--wifi-country '$WIFI_COUNTRY' must be two capital letters (ISO 3166), e.g. GB"
fi
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import tomllib' 2>/dev/null || die "$PYTHON 3.11 or later is needed to read the config (tomllib)"
# The card's config and TLS files, prepared before anything is written: a bad config stops here.
CFG_DIR=$(mktemp -d)
trap 'rm -rf "$CFG_DIR"' EXIT
id_args=()
if [ -n "$DEVICE_ID" ]; then id_args=(--device-id "$DEVICE_ID"); fi
cfg_out=$("$PYTHON" "$HERE/flash_config.py" "$CONFIG" "$CFG_DIR" ${id_args[@]+"${id_args[@]}"}) || exit 2
RUNTIME_TYPE="" TLS_FILES="" WARNINGS=""
eval "$cfg_out"
if [ -n "$WARNINGS" ]; then
  while IFS= read -r w; do note "warning: $w"; done <<<"$WARNINGS"
fi
if [ "$RUNTIME_TYPE" = edgetpu ] && [[ " $INSTALL_ARGS " != *" --edgetpu "* ]]; then
  INSTALL_ARGS="${INSTALL_ARGS:+$INSTALL_ARGS }--edgetpu"
  note "runtime.type is edgetpu: the device installs Coral's libedgetpu (install.sh --edgetpu)"
fi
[ -z "$TLS_FILES" ] || note "TLS files for /etc/lookout/tls on the device: $TLS_FILES"
HOSTNAME_NEW=""
if [[ $DEVICE_ID =~ ^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$ ]]; then
  HOSTNAME_NEW=$DEVICE_ID
elif [ -n "$DEVICE_ID" ]; then
  note "device id '$DEVICE_ID' is not a valid hostname: hostname left as in the image"
fi

# --- refuse dangerous targets ------------------------------------------------------------------
# Called before anything is written. A block device must be a whole disk that is neither mounted
# (any partition), nor used as swap, nor the disk holding the running system's /.
check_block_target() {
  local dev=$1 kind mp rootsrc rootdisk
  kind=$(lsblk -dno TYPE "$dev" 2>/dev/null || true)
  case "$kind" in
    part) die "$dev is a partition: give the whole disk (e.g. /dev/sdb, /dev/mmcblk0)" ;;
    disk | loop | "") ;;
    *) die "$dev is a '$kind' device, not a disk" ;;
  esac
  mp=$(lsblk -nro MOUNTPOINTS "$dev" 2>/dev/null | grep -v '^$' | head -n1 || true)
  [ -z "$mp" ] || die "refusing $dev: it is mounted (at $mp); unmount it first"
  while read -r src mnt _; do
    src=$(readlink -f "$src" 2>/dev/null || echo "$src")
    case "$src" in
      "$dev" | "$dev"[0-9]* | "$dev"p[0-9]*) die "refusing $dev: $src is mounted at $mnt" ;;
    esac
  done </proc/mounts
  while read -r src _; do
    case "$src" in "$dev" | "$dev"[0-9]* | "$dev"p[0-9]*) die "refusing $dev: $src is in use as swap" ;; esac
  done < <(tail -n +2 /proc/swaps)
  rootsrc=$(findmnt -no SOURCE / 2>/dev/null || true)
  rootsrc=$(readlink -f "$rootsrc" 2>/dev/null || echo "$rootsrc")
  rootdisk=$(lsblk -no PKNAME "$rootsrc" 2>/dev/null | head -n1 || true)
  if [ "$rootsrc" = "$dev" ] || { [ -n "$rootdisk" ] && [ "/dev/$rootdisk" = "$dev" ]; }; then
    die "refusing $dev: it holds the running system's root filesystem"
  fi
}

TARGET_REAL=$(readlink -f "$TARGET" 2>/dev/null || echo "$TARGET")
IS_BLOCK=0
if [ -b "$TARGET_REAL" ]; then
  IS_BLOCK=1
  check_block_target "$TARGET_REAL"
elif [ -e "$TARGET_REAL" ] && [ ! -f "$TARGET_REAL" ]; then
  die "target $TARGET is neither a block device nor a regular file"
elif [ -f "$TARGET_REAL" ] && command -v losetup >/dev/null && [ -n "$(losetup -j "$TARGET_REAL" 2>/dev/null)" ]; then
  die "refusing $TARGET: the file is attached to a loop device ($(losetup -j "$TARGET_REAL" | cut -d: -f1))"
fi
IN_PLACE=0
[ "$(readlink -f "$IMAGE")" = "$TARGET_REAL" ] && IN_PLACE=1

if [ "$DRY_RUN" -eq 1 ]; then
  note "dry run: would write $IMAGE to $TARGET and add first-boot provisioning"
  exit 0
fi

# --- write the image ---------------------------------------------------------------------------
decompress() {
  case "$IMAGE" in
    *.xz) xz -dc "$IMAGE" ;;
    *.gz) gzip -dc "$IMAGE" ;;
    *.zst) zstd -dc "$IMAGE" ;;
    *) cat "$IMAGE" ;;
  esac
}
if [ "$IS_BLOCK" -eq 1 ]; then
  if [ "$YES" -ne 1 ]; then
    [ -t 0 ] || die "refusing to overwrite $TARGET_REAL without a terminal to confirm: add --yes"
    lsblk -o NAME,SIZE,MODEL,TRAN "$TARGET_REAL" || true
    read -r -p "Everything on $TARGET_REAL will be erased. Type 'yes' to continue: " answer
    [ "$answer" = yes ] || die "aborted"
  fi
  note "writing $IMAGE to $TARGET_REAL"
  decompress | dd of="$TARGET_REAL" bs=4M conv=fsync status=progress
  if command -v blockdev >/dev/null; then blockdev --rereadpt "$TARGET_REAL" 2>/dev/null || true; fi
elif [ "$IN_PLACE" -eq 1 ]; then
  case "$IMAGE" in *.xz | *.gz | *.zst) die "cannot edit a compressed image in place: give a different TARGET" ;; esac
  note "editing $IMAGE in place"
else
  note "writing $IMAGE to file $TARGET"
  decompress | dd of="$TARGET_REAL" bs=4M conv=sparse status=none
fi

# --- locate the boot (FAT) partition -----------------------------------------------------------
dump=$(sfdisk -d "$TARGET_REAL" 2>/dev/null) || die "$TARGET has no partition table (is $IMAGE a disk image?)"
SECTOR=$(awk -F': *' '$1 == "sector-size" { print $2 }' <<<"$dump")
SECTOR=${SECTOR:-512}
START=$(awk '
  / : start=/ {
    line = $0; gsub(/ /, "", line)
    match(line, /start=[0-9]+/); start = substr(line, RSTART + 6, RLENGTH - 6)
    match(line, /type=[^,]+/); type = toupper(substr(line, RSTART + 5, RLENGTH - 5))
    if (type ~ /^(B|C|E|EF|EBD0A0A2-B9E5-4433-87C0-68B6B72699C7|C12A7328-F81F-11D2-BA4B-00A0C93EC93B)$/) { print start; exit }
  }' <<<"$dump")
[ -n "$START" ] || die "$TARGET has no FAT boot partition (not a Raspberry Pi OS image?)"
export MTOOLS_SKIP_CHECK=1
FAT="$TARGET_REAL@@$((START * SECTOR))"
mdir -i "$FAT" -b :: >/dev/null 2>&1 || die "the first FAT partition of $TARGET cannot be read by mtools"
has() { mdir -i "$FAT" -b "::/$1" >/dev/null 2>&1; }
has cmdline.txt || die "no cmdline.txt on the boot partition of $TARGET (not a Raspberry Pi OS image?)"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK" "$CFG_DIR"' EXIT
mtype -i "$FAT" ::/cmdline.txt | tr -d '\r' | head -n1 >"$WORK/cmdline.txt"

MODE=firstrun
if has user-data || has meta-data || grep -q 'ds=nocloud' "$WORK/cmdline.txt"; then
  MODE=cloud-init
fi
note "boot partition at byte offset $((START * SECTOR)); provisioning: $MODE"

# --- the bundle: checkout subset, config, settings ---------------------------------------------
B=$WORK/lookout
mkdir -p "$B"
parts=(pyproject.toml app device systemd)
for f in README.md LICENSE models docs/deploy.md; do
  if [ -e "$SOURCE/$f" ]; then parts+=("$f"); fi
done
(cd "$SOURCE" && tar --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' -cf - "${parts[@]}") |
  tar -xf - -C "$B"
# Config (device_id set, TLS paths pointed at /etc/lookout/tls) and the TLS files: first boot moves
# them into /etc/lookout and erases these copies (device/firstboot/secure-config.sh).
cp "$CFG_DIR/config.toml" "$B/config.toml"
if [ -d "$CFG_DIR/tls" ]; then cp -r "$CFG_DIR/tls" "$B/tls"; fi
{
  echo "# Written by flash.sh $(date -u +%Y-%m-%dT%H:%M:%SZ); read by lookout/device/firstboot/*.sh"
  printf 'LOOKOUT_DEVICE_ID=%q\n' "$DEVICE_ID"
  printf 'LOOKOUT_HOSTNAME=%q\n' "$HOSTNAME_NEW"
  printf 'LOOKOUT_WIFI_SSID=%q\n' "$WIFI_SSID"
  printf 'LOOKOUT_WIFI_COUNTRY=%q\n' "$WIFI_COUNTRY"
  printf 'LOOKOUT_INSTALL_ARGS=%q\n' "$INSTALL_ARGS"
  if [ "$MODE" = firstrun ] && [ -n "$WIFI_PSK" ]; then printf 'LOOKOUT_WIFI_PSK=%q\n' "$WIFI_PSK"; fi
} >"$B/flash.env"

yaml_str() { # single-quoted YAML scalar
  printf "'%s'" "${1//\'/\'\'}"
}

if [ "$MODE" = cloud-init ]; then
  for f in user-data meta-data network-config; do
    if has "$f"; then mtype -i "$FAT" "::/$f" >"$B/$f.orig"; fi
  done
  {
    echo "#cloud-config"
    echo "# lookout first boot (flash.sh): settings, then lookout-firstboot.service installs the service"
    if [ -n "$HOSTNAME_NEW" ]; then
      echo "hostname: $(yaml_str "$HOSTNAME_NEW")"
      echo "manage_etc_hosts: true"
    fi
    if [ -n "$WIFI_COUNTRY" ]; then
      echo "bootcmd:"
      echo "  - [sh, -c, 'command -v raspi-config >/dev/null && raspi-config nonint do_wifi_country $WIFI_COUNTRY || true']"
    fi
    echo "runcmd:"
    echo "  - [bash, /boot/firmware/lookout/device/firstboot/secure-config.sh]"
    echo "  - [install, -m, '0644', /boot/firmware/lookout/device/firstboot/lookout-firstboot.service, /etc/systemd/system/lookout-firstboot.service]"
    echo "  - [systemctl, daemon-reload]"
    echo "  - [systemctl, enable, lookout-firstboot.service]"
    echo "  - [systemctl, start, --no-block, lookout-firstboot.service]"
  } >"$WORK/user-data"
  {
    echo "instance-id: $(yaml_str "lookout-${DEVICE_ID:-device}-$(date -u +%Y%m%d%H%M%S)")"
    if [ -n "$HOSTNAME_NEW" ]; then echo "local-hostname: $(yaml_str "$HOSTNAME_NEW")"; fi
  } >"$WORK/meta-data"
  mcopy -o -i "$FAT" "$WORK/user-data" "$WORK/meta-data" ::/
  if [ -n "$WIFI_SSID" ]; then
    {
      echo "network:"
      echo "  version: 2"
      echo "  wifis:"
      echo "    wlan0:"
      echo "      dhcp4: true"
      echo "      optional: true"
      [ -z "$WIFI_COUNTRY" ] || echo "      regulatory-domain: $WIFI_COUNTRY"
      echo "      access-points:"
      echo "        $(yaml_str "$WIFI_SSID"):"
      echo "          password: $(yaml_str "$WIFI_PSK")"
    } >"$WORK/network-config"
    mcopy -o -i "$FAT" "$WORK/network-config" ::/
  fi
else
  if grep -q 'systemd\.run=' "$WORK/cmdline.txt" && ! grep -q 'systemd\.run=[^ ]*lookout/firstrun\.sh' "$WORK/cmdline.txt"; then
    die "cmdline.txt already runs another first-boot script (systemd.run=); flash a fresh image"
  fi
  hook="systemd.run=/boot/firmware/lookout/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"
  sed -e 's| systemd\.run=[^ ]*lookout/firstrun\.sh||' -e 's| systemd\.run_success_action=reboot||' \
    -e 's| systemd\.unit=kernel-command-line\.target||' -e 's|[[:space:]]*$||' "$WORK/cmdline.txt" >"$WORK/cmdline.new"
  printf '%s %s\n' "$(cat "$WORK/cmdline.new")" "$hook" >"$WORK/cmdline.txt"
  cp "$HERE/firstboot/firstrun.sh" "$B/firstrun.sh"
  mcopy -o -i "$FAT" "$WORK/cmdline.txt" ::/cmdline.txt
fi

# Replace any bundle from an earlier run, then copy the new one.
if has lookout; then mdeltree -i "$FAT" ::/lookout; fi
mcopy -s -o -i "$FAT" "$B" :: || die "could not copy the bundle to the boot partition (full?)"
if [ "$IS_BLOCK" -eq 1 ]; then sync; fi
note "done: $TARGET boots into lookout ($MODE${DEVICE_ID:+, device $DEVICE_ID}); first boot needs internet for apt/pip"
