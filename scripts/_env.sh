# Sourced by scripts/demo.sh and scripts/test.sh: a virtual environment with the project
# installed, and the tools the stack needs. Safe to run again; it only installs what changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

die() { echo "error: $*" >&2; exit 1; }

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON="$candidate"; break
    fi
  done
fi
[ -n "$PYTHON" ] || die "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)"
command -v java >/dev/null 2>&1 || [ -n "${JAVA_HOME:-}" ] || die "Java 17+ is required for the local Kafka broker"
command -v mvn >/dev/null 2>&1 || die "Apache Maven is required: it resolves Kafka and the registry from Maven Central"

VENV="${HUB_VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.hub-installed"
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
  echo "==> installing the hub and its test tools into $VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e ".[dev]"
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"

# promtool and prometheus (Debian's `prometheus` package) for the monitoring tests: the alert
# rules are unit-tested with promtool and a real Prometheus server scrapes a real worker.
# Installed with apt-get when missing and we are root; the package's service is kept from
# starting (a temporary policy-rc.d answering 101, RUNLEVEL=1), so nothing stray keeps :9090.
# scripts/test.sh cannot do without them and stops here; other scripts only warn.
# Install a Debian package without letting its service start: a temporary policy-rc.d
# answering 101 (any existing one restored), RUNLEVEL=1, and where systemd runs anyway, the
# service stopped and disabled. Used for prometheus and postgresql below.
apt_install_without_service() (
  package="$1"
  policy=/usr/sbin/policy-rc.d
  backup=""
  if [ -e "$policy" ]; then
    backup="$(mktemp)"
    cp -p "$policy" "$backup"
  fi
  restore() {
    if [ -n "$backup" ]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi
  }
  trap restore EXIT
  printf '#!/bin/sh\n# temporary, from scripts/_env.sh: start no service while installing\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
  echo "    apt-get update"
  apt-get update -qq || exit 1
  echo "    apt-get install -y --no-install-recommends $package"
  apt-get install -y -qq --no-install-recommends "$package" >/dev/null || exit 1
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$package" 2>/dev/null; then
    echo "    stopping and disabling the $package service the package started"
    systemctl stop "$package"
    systemctl disable --quiet "$package" || true
  fi
)

if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  PROMETHEUS_NEEDED=0
  [ "$(basename "$0")" = "test.sh" ] && PROMETHEUS_NEEDED=1
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> promtool/prometheus missing: installing Debian's prometheus package (service not started)"
    if ! apt_install_without_service prometheus || ! command -v promtool >/dev/null 2>&1; then
      msg="could not install Debian's prometheus package (promtool, prometheus) with apt-get"
      [ "$PROMETHEUS_NEEDED" -eq 1 ] && die "$msg; the monitoring tests need it"
      echo "warning: $msg" >&2
    fi
  else
    msg="promtool and prometheus are not on PATH and cannot be installed here (needs root and apt-get); install Debian's 'prometheus' package (apt-get install prometheus) or put both binaries on PATH"
    [ "$PROMETHEUS_NEEDED" -eq 1 ] && die "$msg: the monitoring tests need them"
    echo "warning: $msg" >&2
  fi
fi

# PostgreSQL (Debian's `postgresql` package) for the outbox connector's tests: they run
# initdb and pg_ctl themselves on a throwaway cluster (tests/integration/test_outbox.py), so
# only the binaries are needed. Installed like prometheus above: with apt-get when missing and
# we are root, the package's own service kept from starting (a temporary policy-rc.d
# answering 101, restored afterwards, RUNLEVEL=1). scripts/test.sh cannot do without it.
postgres_binaries_found() {
  local bin
  for bin in /usr/lib/postgresql/*/bin; do
    [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] && return 0
  done
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1
}


if ! postgres_binaries_found; then
  POSTGRES_NEEDED=0
  [ "$(basename "$0")" = "test.sh" ] && POSTGRES_NEEDED=1
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> initdb/pg_ctl missing: installing Debian's postgresql package (service not started)"
    if ! apt_install_without_service postgresql || ! postgres_binaries_found; then
      msg="could not install Debian's postgresql package (initdb, pg_ctl) with apt-get"
      [ "$POSTGRES_NEEDED" -eq 1 ] && die "$msg; the outbox connector's PostgreSQL tests need it"
      echo "warning: $msg" >&2
    fi
  else
    msg="PostgreSQL's initdb and pg_ctl are not installed and cannot be installed here (needs root and apt-get); install Debian's 'postgresql' package (apt-get install postgresql)"
    [ "$POSTGRES_NEEDED" -eq 1 ] && die "$msg: the outbox connector's PostgreSQL tests need it"
    echo "warning: $msg" >&2
  fi
fi

# Chromium (Debian's `chromium` package) for the web page's browser test: playwright (a dev
# dependency) drives this browser, never one of its own downloads. Only scripts/test.sh
# needs it; installed with apt-get when missing and we are root.
if [ "$(basename "$0")" = "test.sh" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> chromium missing: installing Debian's chromium package (the browser test)"
    apt_install_without_service chromium || true
    command -v chromium >/dev/null 2>&1 ||
      die "could not install Debian's chromium package with apt-get; the browser test needs it"
  else
    die "chromium is not on PATH and cannot be installed here (needs root and apt-get); install Debian's 'chromium' package (apt-get install chromium): the browser test needs it"
  fi
fi
