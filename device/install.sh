#!/usr/bin/env bash
# Install the lookout service on a Raspberry Pi OS / Debian device (or into a staged root).
#
#   sudo device/install.sh [--wheel FILE | --source DIR] [--config FILE] [--edgetpu] [--torch]
#   sudo device/install.sh --uninstall            # removes everything but /etc/lookout and /var/lib/lookout
#   device/install.sh --root DIR [...]            # stage into DIR: no apt, pip, useradd or systemctl
#
# Idempotent: a second run leaves every file as it was. See docs/deploy.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: install.sh [options]
  --source DIR        install the package from this checkout (default: the checkout holding this script)
  --wheel FILE        install the package from a built wheel instead
  --models DIR        model folder to install to /opt/lookout/models (default: SOURCE/models)
  --config FILE       initial /etc/lookout/config.toml (only used when none exists yet)
  --role ROLE         device (default: enable lookout.service) | monitor (enable lookout-fleet.service)
  --edgetpu           add Coral's apt repository and install libedgetpu1-std
  --torch             also install the torch extra (ExecuTorch, PyTorch Mobile); large on a Pi
  --python EXE        interpreter for the venv (default: python3)
  --pip-args ARGS     extra arguments for pip install (word-split), e.g. "--no-deps --no-index"
  --no-venv           do not create the venv or pip install (files, user and units only)
  --no-start          enable the service but do not start it now
  --root DIR          install into a staged root; implies --no-venv (a venv is not relocatable:
                      run install.sh on the device itself to build it) and skips apt/systemctl
  --uninstall         remove the installation; keeps config (/etc/lookout) and state (/var/lib/lookout)
  -h, --help          this help
EOF
}

die() {
  echo "install.sh: error: $*" >&2
  exit 2
}
note() { echo "install.sh: $*"; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(dirname "$HERE")
WHEEL=""
MODELS=""
CONFIG=""
ROLE=device
EDGETPU=0
TORCH=0
PYTHON=python3
PIP_ARGS=""
NO_VENV=0
NO_START=0
ROOT=""
UNINSTALL=0

while [ $# -gt 0 ]; do
  case "$1" in
    --source) SOURCE=${2:?--source needs a directory}; shift 2 ;;
    --wheel) WHEEL=${2:?--wheel needs a file}; shift 2 ;;
    --models) MODELS=${2:?--models needs a directory}; shift 2 ;;
    --config) CONFIG=${2:?--config needs a file}; shift 2 ;;
    --role) ROLE=${2:?--role needs device or monitor}; shift 2 ;;
    --edgetpu) EDGETPU=1; shift ;;
    --torch) TORCH=1; shift ;;
    --python) PYTHON=${2:?--python needs an interpreter}; shift 2 ;;
    --pip-args) PIP_ARGS=${2:-}; shift 2 ;;
    --no-venv) NO_VENV=1; shift ;;
    --no-start) NO_START=1; shift ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done

case "$ROLE" in device | monitor) ;; *) die "--role must be device or monitor, not '$ROLE'" ;; esac
if [ -n "$ROOT" ]; then
  [ -d "$ROOT" ] || die "--root $ROOT is not a directory"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" != / ] || die "--root / is the running system: leave --root out instead"
  NO_VENV=1
elif [ "$(id -u)" -ne 0 ]; then
  die "run as root (sudo), or stage into a directory with --root DIR"
fi
SOURCE=$(cd "$SOURCE" 2>/dev/null && pwd) || die "--source $SOURCE is not a directory"
[ -z "$WHEEL" ] || [ -f "$WHEEL" ] || die "--wheel $WHEEL not found"
[ -z "$CONFIG" ] || [ -f "$CONFIG" ] || die "--config $CONFIG not found"
MODELS=${MODELS:-$SOURCE/models}

# Everything the installer writes, relative to the root. /etc/lookout and /var/lib/lookout are
# deliberately not in this list: config and state survive --uninstall.
OPT=/opt/lookout
UNIT_DIR=/etc/systemd/system
DROPIN_DIR=$UNIT_DIR/lookout.service.d
UDEV_DIR=/etc/udev/rules.d
SYSUSERS=/etc/sysusers.d/lookout.conf
BIN_LINK=/usr/local/bin/lookout # on PATH for sudo and login shells
BOOT_CONFIG=/boot/firmware/config.txt
MARK_BEGIN='# >>> lookout'
MARK_END='# <<< lookout'

# --- helpers -----------------------------------------------------------------------------------
host() { [ -z "$ROOT" ]; }
# systemd manages this host right now (sd_booted(3): /run/systemd/system exists). Not so in an image
# being prepared, a container or a chroot, even with systemd installed, nor where it is absent.
systemd_running() { host && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

# Enable a unit without systemd: the symlinks `systemctl enable` would make for its WantedBy= targets.
enable_offline() { # enable_offline UNIT
  local unit=$1 target
  # shellcheck disable=SC2013  # WantedBy= is a space-separated list of words
  for target in $(sed -n 's/^WantedBy=//p' "$ROOT$UNIT_DIR/$unit"); do
    mkdir -p "$ROOT$UNIT_DIR/$target.wants"
    ln -sfn "$UNIT_DIR/$unit" "$ROOT$UNIT_DIR/$target.wants/$unit"
  done
}

# Numeric id of a user or group inside the (staged) root, or the name itself on the host.
lookup_id() { # lookup_id passwd|group NAME
  if host; then
    echo "$2"
  elif [ "$2" = root ]; then
    echo 0
  else
    awk -F: -v n="$2" '$1 == n { print $3; found = 1 } END { exit !found }' "$ROOT/etc/$1"
  fi
}

set_owner() { # set_owner USER GROUP PATH...
  local u=$1 g=$2 uid gid
  shift 2
  if [ "$(id -u)" -ne 0 ]; then
    return 0 # staging as a normal user: ownership is left to the image builder
  fi
  uid=$(lookup_id passwd "$u") || die "user $u missing in $ROOT/etc/passwd"
  gid=$(lookup_id group "$g") || die "group $g missing in $ROOT/etc/group"
  chown "$uid:$gid" "$@"
}

# Copy SRC to DEST (relative to the root) only when the content differs; always fix mode/owner.
put() { # put SRC DEST MODE [USER GROUP]
  local src=$1 dest=$ROOT$2 mode=$3
  mkdir -p "$(dirname "$dest")"
  if ! cmp -s "$src" "$dest" 2>/dev/null; then
    cp "$src" "$dest.lookout-new"
    mv -f "$dest.lookout-new" "$dest"
  fi
  chmod "$mode" "$dest"
  set_owner "${4:-root}" "${5:-root}" "$dest"
}

# Mirror a directory tree (content, not timestamps): files 0644, directories 0755, root-owned.
sync_tree() { # sync_tree SRC_DIR DEST_DIR
  local src=$1 dest=$ROOT$2 rel
  mkdir -p "$dest"
  while IFS= read -r -d '' rel; do
    rel=${rel#./}
    if [ -d "$src/$rel" ]; then
      mkdir -p "$dest/$rel"
      chmod 0755 "$dest/$rel"
    else
      put "$src/$rel" "$2/$rel" 0644
    fi
  done < <(cd "$src" && find . -mindepth 1 \( -name __pycache__ -o -name '.*' \) -prune -o -print0)
  # drop files that are gone from the source
  while IFS= read -r -d '' rel; do
    rel=${rel#./}
    [ -e "$src/$rel" ] || rm -rf "${dest:?}/$rel"
  done < <(cd "$dest" && find . -mindepth 1 -print0)
  chmod 0755 "$dest"
  set_owner root root "$dest"
}

# Add or replace the marked lookout block in the Pi's config.txt (only when the file exists).
boot_config_block() { # boot_config_block add|remove
  local file=$ROOT$BOOT_CONFIG tmp
  [ -f "$file" ] || return 0
  tmp=$(mktemp)
  awk -v b="$MARK_BEGIN" -v e="$MARK_END" 'index($0, b) == 1 { skip = 1 } !skip { print } index($0, e) == 1 { skip = 0 }' "$file" >"$tmp"
  if [ "$1" = add ]; then
    cat "$HERE/rpi/config.txt.snippet" >>"$tmp"
  fi
  if cmp -s "$tmp" "$file"; then
    rm -f "$tmp"
  else
    cat "$tmp" >"$file" # keep the FAT file's inode, owner and mode
    rm -f "$tmp"
    note "updated $BOOT_CONFIG (reboot for camera/I2C/overlay changes)"
  fi
}

# --- uninstall ---------------------------------------------------------------------------------
if [ "$UNINSTALL" -eq 1 ]; then
  if systemd_running; then
    systemctl disable --now lookout.service lookout-fleet.service 2>/dev/null || true
  fi
  rm -f "$ROOT$UNIT_DIR/lookout.service" "$ROOT$UNIT_DIR/lookout-fleet.service"
  rm -rf "$ROOT$DROPIN_DIR"
  rm -f "$ROOT$UDEV_DIR/99-lookout-coral.rules" "$ROOT$UDEV_DIR/99-lookout-rpi.rules" "$ROOT$SYSUSERS"
  rm -f "$ROOT$UNIT_DIR/multi-user.target.wants/lookout.service" \
    "$ROOT$UNIT_DIR/multi-user.target.wants/lookout-fleet.service"
  rmdir "$ROOT$UNIT_DIR/multi-user.target.wants" 2>/dev/null || true
  rm -rf "$ROOT$OPT"
  if [ "$(readlink "$ROOT$BIN_LINK" 2>/dev/null)" = "$OPT/venv/bin/lookout" ]; then rm -f "$ROOT$BIN_LINK"; fi
  boot_config_block remove
  if systemd_running; then
    systemctl daemon-reload
    if command -v udevadm >/dev/null; then udevadm control --reload || true; fi
  fi
  note "removed; kept /etc/lookout (config) and /var/lib/lookout (state). The 'lookout' system user"
  note "stays (it may own files in the state directory): remove it with 'userdel lookout' if wanted."
  exit 0
fi

# --- system packages (host only) ---------------------------------------------------------------
if host; then
  export DEBIAN_FRONTEND=noninteractive
  pkgs=(python3-venv python3-pip)
  if [ "$ROLE" = device ] && apt-cache show python3-picamera2 >/dev/null 2>&1; then
    pkgs+=(python3-picamera2) # from Raspberry Pi OS's archive; visible through --system-site-packages
  fi
  if [ "$EDGETPU" -eq 1 ]; then
    keyring=/usr/share/keyrings/coral-edgetpu-archive-keyring.gpg
    if [ ! -s "$keyring" ]; then
      apt-get install -y -q curl gnupg ca-certificates
      curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | gpg --dearmor -o "$keyring"
    fi
    echo "deb [signed-by=$keyring] https://packages.cloud.google.com/apt coral-edgetpu-stable main" \
      >/etc/apt/sources.list.d/coral-edgetpu.list
    pkgs+=(libedgetpu1-std)
  fi
  apt-get update -q
  apt-get install -y -q "${pkgs[@]}"
elif [ "$EDGETPU" -eq 1 ]; then
  note "--root: skipped Coral's apt repository and libedgetpu1-std (run install.sh --edgetpu on the device)"
fi

# --- user and groups ---------------------------------------------------------------------------
put "$HERE/lookout.sysusers" "$SYSUSERS" 0644
if command -v systemd-sysusers >/dev/null; then
  if host; then
    systemd-sysusers "$SYSUSERS"
  else
    systemd-sysusers --root="$ROOT" "$ROOT$SYSUSERS"
  fi
else
  host || die "systemd-sysusers is needed to create the lookout user in $ROOT (apt-get install systemd)"
  for g in video plugdev i2c; do getent group "$g" >/dev/null || groupadd --system "$g"; done
  id lookout >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/lookout \
    --no-create-home --shell /usr/sbin/nologin --comment "Lookout edge-AI service" lookout
  usermod -a -G video,plugdev,i2c lookout
fi

# --- program: models, docs, venv ---------------------------------------------------------------
mkdir -p "$ROOT$OPT"
chmod 0755 "$ROOT$OPT"
set_owner root root "$ROOT$OPT"
if [ -d "$MODELS" ]; then
  sync_tree "$MODELS" "$OPT/models"
else
  note "no models folder at $MODELS: the service will not find its model (use --models DIR)"
fi
if [ -f "$SOURCE/docs/deploy.md" ]; then
  put "$SOURCE/docs/deploy.md" "$OPT/docs/deploy.md" 0644
  chmod 0755 "$ROOT$OPT/docs"
fi

if [ "$NO_VENV" -eq 0 ]; then
  venv=$OPT/venv
  if [ ! -x "$venv/bin/python" ]; then
    # --system-site-packages: picamera2 and libcamera's Python bindings come from apt.
    "$PYTHON" -m venv --system-site-packages "$venv"
  fi
  # A device runs models (LiteRT, the Pi's I2C meter); a monitor keeps the fleet's history (psycopg for
  # --db postgresql://) and draws `lookout fleet report`'s charts (matplotlib), and runs no model.
  extras=tflite,rpi
  more=()
  if [ "$ROLE" = monitor ]; then
    extras=fleet
    more=("matplotlib>=3.7")
  fi
  [ "$TORCH" -eq 1 ] && extras+=",torch"
  target=${WHEEL:-$SOURCE}
  # The project's pins (torch: other versions pull CUDA wheels; per machine: see constraints.txt).
  constraints=()
  [ ! -f "$SOURCE/constraints.txt" ] || constraints=(--constraint "$SOURCE/constraints.txt")
  # shellcheck disable=SC2086  # PIP_ARGS is a word list on purpose
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${constraints[@]}" $PIP_ARGS "${target}[${extras}]" ${more[@]+"${more[@]}"}
  if [ "$TORCH" -eq 1 ] && [ "$(uname -m)" = aarch64 ]; then
    # ExecuTorch for PyPI's aarch64 CPU torch (2.9.1): its declared dependencies are its export stack
    # (coremltools built from source, pandas, pytest...); the runtime needs only torch and numpy.
    [ ${#constraints[@]} -gt 0 ] || die "$SOURCE/constraints.txt is missing: it pins ExecuTorch for aarch64"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "${constraints[@]}" $PIP_ARGS executorch
  fi
  "$venv/bin/lookout" --version
elif host; then
  note "--no-venv: /opt/lookout/venv not built; lookout.service needs /opt/lookout/venv/bin/lookout"
else
  note "--root: /opt/lookout/venv not built (not relocatable); run install.sh on the device to build it"
fi

# The command on PATH (sudo's secure_path and login shells include /usr/local/bin); an existing file
# that is not this link (another install) is left alone.
if [ "$(readlink "$ROOT$BIN_LINK" 2>/dev/null)" = "$OPT/venv/bin/lookout" ] ||
  { [ ! -e "$ROOT$BIN_LINK" ] && [ ! -L "$ROOT$BIN_LINK" ]; }; then
  mkdir -p "$ROOT$(dirname "$BIN_LINK")"
  ln -sfn "$OPT/venv/bin/lookout" "$ROOT$BIN_LINK"
else
  note "kept $BIN_LINK (not a link to $OPT/venv/bin/lookout): run $OPT/venv/bin/lookout by its path"
fi

# --- configuration (kept when present) ---------------------------------------------------------
if [ ! -e "$ROOT/etc/lookout/config.toml" ]; then
  put "${CONFIG:-$HERE/config.example.toml}" /etc/lookout/config.toml 0640 root lookout
  note "wrote /etc/lookout/config.toml: set mqtt.url (and device_id) there"
else
  note "kept the existing /etc/lookout/config.toml"
fi
chmod 0755 "$ROOT/etc/lookout"

# --- units, drop-ins, udev rules, boot config --------------------------------------------------
put "$SOURCE/systemd/lookout.service" "$UNIT_DIR/lookout.service" 0644
put "$SOURCE/systemd/lookout-fleet.service" "$UNIT_DIR/lookout-fleet.service" 0644
if [ "$TORCH" -eq 1 ]; then
  # PyTorch's x86 kernels (oneDNN, fbgemm) generate code at run time: allow W+X memory.
  tmp=$(mktemp)
  printf '[Service]\n# installed by install.sh --torch: oneDNN/fbgemm JIT needs writable+executable memory\nMemoryDenyWriteExecute=no\n' >"$tmp"
  put "$tmp" "$DROPIN_DIR/50-torch-jit.conf" 0644
  rm -f "$tmp"
  chmod 0755 "$ROOT$DROPIN_DIR"
else
  rm -f "$ROOT$DROPIN_DIR/50-torch-jit.conf"
  rmdir "$ROOT$DROPIN_DIR" 2>/dev/null || true
fi
if [ "$ROLE" = device ]; then
  put "$HERE/99-lookout-coral.rules" "$UDEV_DIR/99-lookout-coral.rules" 0644
  put "$HERE/rpi/99-lookout-rpi.rules" "$UDEV_DIR/99-lookout-rpi.rules" 0644
  boot_config_block add
fi

# --- activate ----------------------------------------------------------------------------------
unit=lookout.service
[ "$ROLE" = monitor ] && unit=lookout-fleet.service
if systemd_running; then
  if [ "$ROLE" = device ]; then
    udevadm control --reload || true
    udevadm trigger --action=add --subsystem-match=usb --subsystem-match=apex --subsystem-match=i2c-dev || true
  fi
  systemctl daemon-reload
  systemctl enable "$unit"
  [ "$NO_START" -eq 1 ] || systemctl restart "$unit"
  note "installed; follow it with: journalctl -fu $unit"
elif host; then
  # An image being prepared, a container, a chroot: nothing to reload or start; udev and systemd
  # read the rules and units when the system boots.
  enable_offline "$unit"
  note "systemd is not running here (not booted with it): enabled $unit without starting it; it starts at the next boot"
else
  enable_offline "$unit"
  note "staged into $ROOT ($unit enabled)"
fi
