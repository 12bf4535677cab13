#!/usr/bin/env bash
# Install or upgrade llm-proxy on a Debian/Ubuntu VM as a systemd service.
#
# Run as root from a checkout of the repository:
#   sudo ./deploy/install.sh
#
# Idempotent: re-running upgrades the code in /opt/llm-proxy/venv and
# re-installs the unit, but never overwrites /etc/llm-proxy/config.yaml or
# /etc/llm-proxy/llm-proxy.env. It does not start or restart the service.
#
# Environment overrides: PYTHON (interpreter used to create the venv, >= 3.11).
set -euo pipefail

readonly SVC_USER=llm-proxy
readonly PREFIX=/opt/llm-proxy
readonly VENV="${PREFIX}/venv"
readonly ETC_DIR=/etc/llm-proxy
readonly STATE_DIR=/var/lib/llm-proxy
readonly UNIT_DST=/etc/systemd/system/llm-proxy.service
PYTHON="${PYTHON:-python3}"

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_DIR

log() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ ${EUID} -eq 0 ]] || die "must be run as root (try: sudo $0)"

for f in pyproject.toml example.config.yaml deploy/llm-proxy.service deploy/llm-proxy@.service \
    deploy/llm-proxy.target deploy/llm-proxy.env.example; do
    [[ -f "${REPO_DIR}/${f}" ]] || die "${REPO_DIR}/${f} not found; run from a repository checkout"
done

# root may run with a restrictive umask; the venv must be readable by the service user.
umask 022

# --- Python ------------------------------------------------------------------
command -v "${PYTHON}" >/dev/null 2>&1 || die "${PYTHON} not found (apt-get install python3)"
"${PYTHON}" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$("${PYTHON}" -V 2>&1 || true) is too old; Python 3.11+ required (set PYTHON=/path/to/python3.11)"
if ! "${PYTHON}" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "python venv support missing (install python3-venv)"
    log "Installing python3-venv"
    apt-get install -y --no-install-recommends python3-venv
fi

# --- System user ---------------------------------------------------------------
if getent passwd "${SVC_USER}" >/dev/null; then
    log "User ${SVC_USER} exists"
else
    log "Creating system user ${SVC_USER}"
    useradd --system --user-group --home-dir "${STATE_DIR}" --no-create-home \
        --shell /usr/sbin/nologin --comment "llm-proxy service" "${SVC_USER}"
fi

# --- Virtualenv + package --------------------------------------------------------
if [[ ! -x "${VENV}/bin/python" ]]; then
    log "Creating virtualenv ${VENV}"
    install -d -m 0755 -o root -g root "${PREFIX}"
    "${PYTHON}" -m venv "${VENV}"
fi
log "Installing llm-proxy from ${REPO_DIR} into ${VENV}"
"${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
# --upgrade: always rebuild from the checkout and pick up newer dependencies.
"${VENV}/bin/python" -m pip install --disable-pip-version-check --upgrade "${REPO_DIR}"
[[ -x "${VENV}/bin/llm-proxy" ]] || die "${VENV}/bin/llm-proxy missing after install"
# A venv built from an interpreter under /root or /home (pyenv, etc.) is not
# usable by the service user, and ProtectHome= in the unit hides it anyway.
runuser -u "${SVC_USER}" -- "${VENV}/bin/python" -c 'import sys' >/dev/null 2>&1 \
    || die "${SVC_USER} cannot run ${VENV}/bin/python; rebuild it from a system-wide Python: rm -rf ${VENV} && PYTHON=/usr/bin/python3 $0"

# --- Configuration -----------------------------------------------------------------
# Directory: root owns (service cannot modify its own config), group may read.
install -d -m 0750 -o root -g "${SVC_USER}" "${ETC_DIR}"

if [[ -e "${ETC_DIR}/config.yaml" ]]; then
    log "Keeping existing ${ETC_DIR}/config.yaml"
else
    log "Installing example config to ${ETC_DIR}/config.yaml"
    install -m 0640 -o root -g "${SVC_USER}" "${REPO_DIR}/example.config.yaml" "${ETC_DIR}/config.yaml"
fi

if [[ -e "${ETC_DIR}/llm-proxy.env" ]]; then
    log "Keeping existing ${ETC_DIR}/llm-proxy.env"
else
    log "Installing ${ETC_DIR}/llm-proxy.env (secrets; mode 0640 root:${SVC_USER})"
    install -m 0640 -o root -g "${SVC_USER}" "${REPO_DIR}/deploy/llm-proxy.env.example" "${ETC_DIR}/llm-proxy.env"
fi

# --- systemd unit ------------------------------------------------------------------
log "Installing ${UNIT_DST}, llm-proxy@.service and llm-proxy.target"
install -m 0644 -o root -g root "${REPO_DIR}/deploy/llm-proxy.service" "${UNIT_DST}"
# One instance per core on one port (server.reuse_port: true): llm-proxy@1..N under the target.
install -m 0644 -o root -g root "${REPO_DIR}/deploy/llm-proxy@.service" /etc/systemd/system/
install -m 0644 -o root -g root "${REPO_DIR}/deploy/llm-proxy.target" /etc/systemd/system/
# Each instance's own metrics port (the shared port reaches any of them): 19001, 19002, ...
for i in $(seq 1 "$(nproc)"); do
    install -d -m 0755 "/etc/systemd/system/llm-proxy@${i}.service.d"
    printf '[Service]\nEnvironment=METRICS_PORT=%d\n' $((19000 + i)) \
        > "/etc/systemd/system/llm-proxy@${i}.service.d/metrics-port.conf"
done
if [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    running=no
    systemctl is-active --quiet llm-proxy && running=yes
else
    log "systemd is not running here; skipped daemon-reload"
    running=no
fi

# --- Next steps ----------------------------------------------------------------------
cat <<NEXT

llm-proxy installed into ${VENV}.

Next steps:
  1. Edit the config:        ${ETC_DIR}/config.yaml
     and secrets/env vars:   ${ETC_DIR}/llm-proxy.env   (keep mode 0640 root:${SVC_USER})
  2. Enable and start:       systemctl enable --now llm-proxy
     (the unit runs check-config first; a bad config fails the start)
     or, one instance per core on one port (set server: {reuse_port: true} and, to share
     per-key limits, rate_limit_backend: redis://...):
       for i in \$(seq 1 \$(nproc)); do systemctl enable llm-proxy@\$i; done
       systemctl enable --now llm-proxy.target
  3. Check:                  systemctl status llm-proxy
                             curl -s http://127.0.0.1:18000/health
                             journalctl -u llm-proxy -f -o cat
NEXT
if [[ ${running} == yes ]]; then
    printf '\nThe service is running the previous version; apply the upgrade with:\n  systemctl restart llm-proxy\n'
fi
