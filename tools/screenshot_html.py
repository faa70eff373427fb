"""Open an HTML page in headless Chromium: take a screenshot, read the DOM after its scripts ran, and
collect every console message (the drawing tests fail on any). Used by tests/test_draw.py and to make
the README's screenshots:

    netdef draw nets/lenet.yaml -o /tmp/lenet.html
    python tools/screenshot_html.py /tmp/lenet.html docs/lenet.png [--anchor conv2] [--size 1400x900]

Chromium is Debian's `chromium` package (.ci/run installs it); nothing here uses the network.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0"]
CONSOLE = re.compile(r":CONSOLE[:(]\d*\)?\] (.*)")


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run_chromium(page, anchor=None, screenshot=None, size=(1400, 900), budget_ms=3000, timeout=90):
    """Loads `page` (optionally at #anchor); returns (DOM after scripts ran or None, console messages)."""
    chromium = find_chromium()
    if chromium is None:
        raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")
    url = Path(page).resolve().as_uri() + (f"#{anchor}" if anchor else "")
    with tempfile.TemporaryDirectory(prefix="netdef-chromium-") as profile:
        action = [f"--screenshot={Path(screenshot).resolve()}"] if screenshot else ["--dump-dom"]
        result = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}",
                                 f"--virtual-time-budget={budget_ms}", *action, url],
                                capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"chromium exited with {result.returncode}:\n{result.stderr[-2000:]}")
    console = [m.group(1) for m in CONSOLE.finditer(result.stderr)]
    return (None if screenshot else result.stdout), console


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", help="HTML file")
    parser.add_argument("output", help="PNG screenshot to write")
    parser.add_argument("--anchor", help="open the page at #ANCHOR (a netdef drawing: a layer name)")
    parser.add_argument("--size", default="1400x900", help="window size WxH (default 1400x900)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    _, console = run_chromium(args.page, args.anchor, args.output, (width, height))
    for message in console:
        print(f"console: {message}", file=sys.stderr)
    print(f"{args.output}: {width}x{height} screenshot of {args.page}")
    return 1 if console else 0


if __name__ == "__main__":
    sys.exit(main())
