"""Real-browser test helpers: JupyterLab on loopback plus headless Debian chromium via playwright."""
