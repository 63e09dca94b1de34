#!/usr/bin/env bash
# The project's one test command (README, and .ci/run calls it): makes .venv if needed,
# installs the package with its test extras under the pinned torch pair, lints, runs pytest
# headless (under Xvfb when available, so napari canvases render).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"

# napari/Qt tests need an X server; install Xvfb when we can (root on Debian, as in CI).
if ! command -v xvfb-run >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-image0 \
        libxcb-render-util0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libgl1 libegl1 \
        libfontconfig1 libdbus-1-3 >/dev/null
fi

.venv/bin/ruff check .

set +e
if command -v xvfb-run >/dev/null 2>&1; then
    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest "$@"
else
    echo "xvfb-run not found: napari viewer tests need an X server and are skipped (install xvfb)" >&2
    QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -m "not napari" "$@"
fi
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: treating as a failure" >&2
    exit 1
fi
exit "$rc"
