#!/usr/bin/env bash
# An emulated Raspberry Pi: a Debian bookworm arm64 root run under qemu-user, for scripts/arm64_check.sh.
#
#   scripts/arm64_pi.sh root                 # print the cached root tarball, building it first if needed
#   scripts/arm64_pi.sh enter [options] ROOT -- CMD [ARG...]
#       --cpu MODEL      QEMU CPU model: cortex-a72 (Pi 4, default) | cortex-a76 (Pi 5)
#       --user NAME      run CMD as this user (with its groups), not root
#       --env K=V        add K=V to CMD's otherwise empty environment (repeatable)
#       --umask MODE     umask for CMD (default 0022)
#
# The root holds what Raspberry Pi OS Lite has for us: python3, venv, pip, systemd (not running) and
# udev, from `debootstrap --arch=arm64 --variant=minbase`. It is cached as a tarball outside the
# clone ($ARM64_CACHE, default ~/.cache/lookout/arm64), named by a hash of its recipe.
#
# `enter` runs CMD in ROOT inside a private mount namespace: every mount it makes (binfmt_misc, proc,
# an aarch64 /proc/cpuinfo, a read-only sysfs, a fresh /dev and /run, the host's pip configuration
# read-only) exists only there and is gone when CMD exits, whatever way it exits. The host's /etc is
# never written. Emulation facts it works around: LiteRT crashes when it sees the host's x86
# /proc/cpuinfo; QEMU's default `max` CPU gives wrong int8 results, so a real Pi core is named.
set -euo pipefail

SUITE=bookworm
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
# What Raspberry Pi OS Lite brings that install.sh relies on (minbase has none of it).
PACKAGES=python3,python3-venv,python3-pip,systemd,udev,ca-certificates,util-linux
RECIPE_VERSION=2
CACHE=${ARM64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lookout/arm64}
QEMU_BINFMT=/usr/libexec/qemu-binfmt/aarch64-binfmt-P

die() {
  echo "arm64_pi.sh: error: $*" >&2
  exit 2
}
note() { echo "arm64_pi.sh: $*" >&2; }

need_host_tools() {
  [ "$(id -u)" -eq 0 ] || die "needs root (binfmt_misc, chroot, mounts)"
  local t
  for t in debootstrap unshare chroot zstd tar; do
    command -v "$t" >/dev/null || die "$t not found: run 'make arm64-check' (it installs the Debian packages)"
  done
  [ -x "$QEMU_BINFMT" ] || die "$QEMU_BINFMT missing: apt-get install qemu-user-static"
}

# --- binfmt_misc: called inside the private mount namespace ----------------------------------------
# The kernel keeps one binfmt_misc instance per user namespace while any mount of it exists, so a
# registration made here lives as long as this namespace (or a host mount) does, and no longer.
ensure_binfmt() {
  local dir=/proc/sys/fs/binfmt_misc
  if [ ! -e "$dir/register" ]; then
    mount -t binfmt_misc binfmt_misc "$dir" || die "cannot mount binfmt_misc on $dir"
  fi
  if [ ! -e "$dir/qemu-aarch64" ]; then
    # Debian's qemu-user-static format (/usr/share/binfmts/qemu-aarch64); F: the interpreter is opened
    # now, so the root needs no copy of qemu; P: argv[0] preserved, which the -P wrapper expects.
    local magic='\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
    local mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
    printf ':qemu-aarch64:M::%s:%s:%s:FP\n' "$magic" "$mask" "$QEMU_BINFMT" >"$dir/register" ||
      die "cannot register qemu-aarch64 with binfmt_misc"
  fi
  [ "$(head -n1 "$dir/qemu-aarch64")" = enabled ] || die "binfmt_misc: qemu-aarch64 is registered but disabled"
}

# --- the cached root -----------------------------------------------------------------------------
recipe_hash() {
  printf '%s\n' "$SUITE" "$MIRROR" "$PACKAGES" "$RECIPE_VERSION" | sha256sum | cut -c1-12
}

tarball_path() { echo "$CACHE/$SUITE-arm64-$(recipe_hash).tar.zst"; }

build_root() { # build_root TARBALL
  local tarball=$1 tmp
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/build.XXXXXX")
  # shellcheck disable=SC2064  # expand now: the trap must remove this build's folder
  trap "rm -rf '$tmp'" EXIT
  note "building the $SUITE arm64 root (debootstrap under qemu; about 6 minutes on 2 cores)"
  # debootstrap's second stage runs arm64 maintainer scripts and mounts proc/sys in the target:
  # both happen inside a private mount namespace with binfmt_misc, like `enter`.
  unshare --mount --propagation private -- "$0" __debootstrap "$tmp/root" >"$tmp/debootstrap.log" 2>&1 || {
    tail -n 20 "$tmp/debootstrap.log" >&2
    die "debootstrap failed (log above)"
  }
  rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/log/"*.log
  tar --numeric-owner --xattrs -C "$tmp/root" -cf - . | zstd -q -T0 -3 -o "$tmp/root.tar.zst"
  find "$CACHE" -maxdepth 1 -name "$SUITE-arm64-*.tar.zst" ! -name "$(basename "$tarball")" -delete
  mv -f "$tmp/root.tar.zst" "$tarball"
  rm -rf "$tmp"
  trap - EXIT
}

do_debootstrap() { # inside the private namespace
  ensure_binfmt
  debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" "$SUITE" "$1" "$MIRROR"
  # package lists as an installed system has them (debootstrap leaves out the translations)
  cp -L /etc/resolv.conf "$1/etc/resolv.conf"
  mount -t proc proc "$1/proc"
  chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 apt-get update -q
  umount "$1/proc"
}

cmd_root() {
  need_host_tools
  local tarball
  tarball=$(tarball_path)
  if [ ! -s "$tarball" ]; then
    build_root "$tarball"
  fi
  echo "$tarball"
}

# --- entering a root -----------------------------------------------------------------------------
# /proc/cpuinfo of a Pi core (the fields LiteRT's and PyTorch's cpuinfo parsers read), one block per
# host CPU so it agrees with /sys/devices/system/cpu.
cpuinfo_for() { # cpuinfo_for MODEL
  local features variant part revision n i
  case "$1" in
    cortex-a72) features="fp asimd evtstrm crc32 cpuid" variant=0x0 part=0xd08 revision=3 ;;
    cortex-a76)
      features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
      variant=0x4 part=0xd0b revision=1
      ;;
    *) die "--cpu $1: use cortex-a72 (Pi 4) or cortex-a76 (Pi 5)" ;;
  esac
  n=$(nproc)
  for ((i = 0; i < n; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' "$i" "$features"
    printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$variant" "$part" "$revision"
  done
}

# Files and folders named by the host's pip configuration (config files, find-links, file:// indexes
# with the folder above them, certificates, constraints), so pip in the root resolves as on the host.
pip_paths() {
  local py
  py=$(command -v python3) || return 0
  {
    "$py" -m pip config debug 2>/dev/null | sed -n 's/^ *\(\/[^,]*\), exists: True$/\1/p'
    { "$py" -m pip config list 2>/dev/null || true; } | grep -o "file://[^ '\"]*" | sed 's#^file://##; s#/simple/*$##'
    { "$py" -m pip config list 2>/dev/null || true; } | grep -o "=' */[^ '\"]*" | sed "s/^=' *//"
    env | sed -n 's/^PIP_[A-Z_]*=//p' | tr ' ' '\n' | sed -n 's#^\(file://\)\{0,1\}\(/.*\)#\2#p'
  } | sort -u | while IFS= read -r p; do
    case "$p" in / | /etc | /usr | /usr/* | /bin* | /lib* | /sbin* | /proc* | /sys* | /dev* | /run* | /var | /root | /home | /tmp) continue ;; esac
    [ -e "$p" ] && echo "$p"
  done
}

pip_env() { env | grep '^PIP_[A-Z_]*=' || true; }

MOUNTS=()
unmount_all() {
  local i
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount -l "${MOUNTS[$i]}" 2>/dev/null || true
  done
  MOUNTS=()
}

mnt() { # mnt TARGET MOUNT-ARGS...
  local target=$1
  shift
  mount "$@" "$target"
  MOUNTS+=("$target")
}

do_enter() { # inside the private namespace: do_enter CPU USER UMASK ROOT CPUINFO -- ENV... -- CMD...
  local cpu=$1 user=$2 umask=$3 root=$4 cpuinfo=$5 p
  shift 5
  [ "$1" = -- ] && shift
  local envs=()
  while [ "$1" != -- ]; do
    envs+=("$1")
    shift
  done
  shift
  trap unmount_all EXIT
  ensure_binfmt
  mnt "$root/proc" -t proc -o nosuid,nodev,noexec proc
  mnt "$root/proc/cpuinfo" --bind "$cpuinfo"
  mnt "$root/sys" -t sysfs -o ro,nosuid,nodev,noexec sysfs
  mnt "$root/dev" -t tmpfs -o nosuid,mode=0755,size=64m tmpfs
  mknod -m 666 "$root/dev/null" c 1 3
  mknod -m 666 "$root/dev/zero" c 1 5
  mknod -m 666 "$root/dev/full" c 1 7
  mknod -m 666 "$root/dev/random" c 1 8
  mknod -m 666 "$root/dev/urandom" c 1 9
  mknod -m 666 "$root/dev/tty" c 5 0
  mkdir -m 1777 "$root/dev/shm"
  ln -s /proc/self/fd "$root/dev/fd"
  ln -s /proc/self/fd/0 "$root/dev/stdin"
  ln -s /proc/self/fd/1 "$root/dev/stdout"
  ln -s /proc/self/fd/2 "$root/dev/stderr"
  # no /run/systemd/system: the root is not booted with systemd, as in an image build or a container
  mnt "$root/run" -t tmpfs -o nosuid,nodev,mode=0755,size=64m tmpfs
  mkdir -m 1777 "$root/run/lock"
  while IFS= read -r p; do
    if [ -d "$p" ]; then
      mkdir -p "$root$p"
    else
      mkdir -p "$(dirname "$root$p")"
      [ -e "$root$p" ] || : >"$root$p"
    fi
    mnt "$root$p" --bind "$p"
    mount -o remount,bind,ro "$root$p"
  done < <(pip_paths)
  cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  local base=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "QEMU_CPU=$cpu")
  local inner=(/usr/bin/env -i "${base[@]}")
  if [ "$user" = root ]; then
    inner+=(HOME=/root TERM=dumb)
    while IFS= read -r p; do inner+=("$p"); done < <(pip_env)
  fi
  inner+=("${envs[@]}")
  local cmd=(/bin/sh -c "umask $umask && exec \"\$@\"" sh "$@")
  if [ "$user" = root ]; then
    env -i "${base[@]}" chroot "$root" "${inner[@]}" "${cmd[@]}"
  else
    env -i "${base[@]}" chroot "$root" /usr/bin/setpriv --reuid="$user" --regid="$user" --init-groups \
      --inh-caps=-all --no-new-privs -- "${inner[@]}" "${cmd[@]}"
  fi
}

cmd_enter() {
  need_host_tools
  local cpu=cortex-a72 user=root umask=0022 envs=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --cpu) cpu=${2:?--cpu needs a model}; shift 2 ;;
      --user) user=${2:?--user needs a name}; shift 2 ;;
      --env) envs+=("${2:?--env needs K=V}"); shift 2 ;;
      --umask) umask=${2:?--umask needs a mode}; shift 2 ;;
      --) shift; break ;;
      -*) die "enter: unknown option $1" ;;
      *) break ;;
    esac
  done
  local root=${1:?enter needs ROOT}
  shift
  [ "${1:-}" = -- ] && shift
  [ $# -gt 0 ] || die "enter needs a command"
  [ -x "$root/usr/bin/python3" ] || die "$root is not an arm64 root made by '$0 root'"
  root=$(cd "$root" && pwd)
  local cpuinfo
  cpuinfo=$(mktemp "${TMPDIR:-/tmp}/arm64-cpuinfo.XXXXXX")
  cpuinfo_for "$cpu" >"$cpuinfo"
  chmod 0644 "$cpuinfo" # readable by every user, as /proc/cpuinfo is (mktemp makes it 0600)
  local rc=0
  unshare --mount --propagation private -- "$0" __enter "$cpu" "$user" "$umask" "$root" "$cpuinfo" \
    -- "${envs[@]}" -- "$@" || rc=$?
  rm -f "$cpuinfo"
  return "$rc"
}

case "${1:-}" in
  root) shift; cmd_root "$@" ;;
  enter) shift; cmd_enter "$@" ;;
  __debootstrap) shift; do_debootstrap "$@" ;;
  __enter) shift; do_enter "$@" ;;
  *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
