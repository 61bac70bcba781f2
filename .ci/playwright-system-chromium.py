"""Point Playwright (npm) at Debian's Chromium: Playwright cannot download its browsers on this CI machine.

``python .ci/playwright-system-chromium.py NODE_PROJECT_DIR BROWSERS_DIR`` reads the chromium revisions that the
``playwright`` package installed in NODE_PROJECT_DIR expects, and lays out BROWSERS_DIR (use it as
``PLAYWRIGHT_BROWSERS_PATH``) so that ``npx playwright install chromium`` finds them installed and launches
``/usr/bin/chromium``. Used by ``.ci/run`` for ``python -m jupyterlab.browser_check``.
"""

import json
import os
import sys
from pathlib import Path

CHROMIUM = os.environ.get("LLMOPS_CHROMIUM", "/usr/bin/chromium")
LAYOUT = {  # playwright browser name -> (directory prefix, executable path inside it)
    "chromium": ("chromium", ("chrome-linux64", "chrome")),
    "chromium-headless-shell": ("chromium_headless_shell", ("chrome-headless-shell-linux64", "chrome-headless-shell")),
    "ffmpeg": ("ffmpeg", ("ffmpeg-linux",)),
}

project, target = Path(sys.argv[1]), Path(sys.argv[2])
browsers = json.loads((project / "node_modules" / "playwright-core" / "browsers.json").read_text())["browsers"]
for b in browsers:
    if b["name"] not in LAYOUT:
        continue
    prefix, exe = LAYOUT[b["name"]]
    home = target / f"{prefix}-{b['revision']}"
    path = home.joinpath(*exe)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to("/bin/true" if b["name"] == "ffmpeg" else CHROMIUM)
    for marker in ("INSTALLATION_COMPLETE", "DEPENDENCIES_VALIDATED"):
        (home / marker).touch()
    print(f"{home} -> {CHROMIUM if b['name'] != 'ffmpeg' else '(no ffmpeg)'}")
