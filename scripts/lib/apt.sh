# Sourced by scripts/ensure-*.sh: install Debian packages that are missing.
#
#   apt_install WHAT HINT PACKAGE...
#
# Installs PACKAGE... with apt-get (refreshing the package lists only when the first try fails,
# waiting up to 5 minutes for another apt to let go of dpkg's lock). Not root, or no apt-get: says
# what is missing (for WHAT) and how to install it, then HINT, and exits 1.

apt_install() {
  local what="$1" hint="$2"
  shift 2
  [ $# -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "Missing Debian packages for $what: $*" >&2
    echo "Install them with:  sudo apt-get install $*" >&2
    [ -z "$hint" ] || echo "$hint" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "Missing $* for $what and no apt-get here: install them" >&2
    [ -z "$hint" ] || echo "$hint" >&2
    exit 1
  fi
  echo "Installing $* from Debian's packages…" >&2
  local apt=(apt-get -o DPkg::Lock::Timeout=300)
  export DEBIAN_FRONTEND=noninteractive
  "${apt[@]}" install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
    "${apt[@]}" update >/dev/null
    "${apt[@]}" install -y --no-install-recommends "$@" >/dev/null
  } || { echo "Could not install $* for $what." >&2; [ -z "$hint" ] || echo "$hint" >&2; exit 1; }
  echo "Installed $*" >&2
}
