# Sourced by scripts/setup and scripts/install: install the Debian packages given that are missing.
# As root (or with password-less sudo) it runs apt-get; otherwise it names them in one line and fails.
ensure_debian_packages() {
  local missing=() package sudo=""
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo"
    else
      echo "ser-stream: missing Debian packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
      return 1
    fi
  fi
  echo "ser-stream setup: installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The packages ser-stream needs at run time: PortAudio, libsndfile, ALSA's PulseAudio plugin, Python's venv.
runtime_packages() {
  local packages=(libportaudio2 libsndfile1 libasound2-plugins)
  command -v python3 >/dev/null || packages+=(python3)
  python3 -c 'import venv, ensurepip' 2>/dev/null || packages+=(python3-venv)
  echo "${packages[@]}"
}

require_python() {
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "ser-stream: needs Python 3.10 or newer, found $(python3 --version)" >&2; return 1; }
}
