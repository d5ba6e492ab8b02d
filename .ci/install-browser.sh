#!/usr/bin/env bash
# Install what tests/test_browser_panel.py needs on a fresh Debian/Ubuntu machine:
# the Debian chromium package (playwright's own browser download is not used) and, from pip,
# JupyterLab (with the ipywidgets front end) and playwright (its wheel bundles the driver).
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1 && [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core
fi

PYTHON="${PYTHON:-python3}"
"$PYTHON" -m pip install --quiet "jupyterlab>=4" "notebook>=7" "ipywidgets>=8" "jupyterlab_widgets>=3" "playwright>=1.40"

chromium --version 2>/dev/null || /usr/bin/chromium --version
"$PYTHON" -c "import playwright, jupyterlab, notebook; print('playwright + jupyterlab', jupyterlab.__version__, '+ notebook', notebook.__version__, 'ready')"
