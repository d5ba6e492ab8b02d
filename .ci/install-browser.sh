#!/usr/bin/env bash
# Install what the browser tests (tests/**/test_*_browser.py) need on a fresh Debian/Ubuntu machine:
# the Debian chromium package (playwright's own browser download is not used) and, from pip,
# JupyterLab (with the ipywidgets front end) and playwright (its wheel bundles the driver).
set -euo pipefail

# fonts-noto-color-emoji: the call blocks' and footers' symbols show as users' browsers show them
# (without it chromium draws an empty box, and screenshots would not show what users see).
PACKAGES=()
if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then PACKAGES+=(chromium fonts-dejavu-core); fi
if ! dpkg -s fonts-noto-color-emoji >/dev/null 2>&1; then PACKAGES+=(fonts-noto-color-emoji); fi
if [ "${#PACKAGES[@]}" -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${PACKAGES[@]}"
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet "jupyterlab>=4" "notebook>=7" "ipywidgets>=8" "jupyterlab_widgets>=3" "playwright>=1.40"

chromium --version 2>/dev/null || /usr/bin/chromium --version
"$PYTHON" -c "import playwright, jupyterlab, notebook; print('playwright + jupyterlab', jupyterlab.__version__, '+ notebook', notebook.__version__, 'ready')"
