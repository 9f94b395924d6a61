"""Render a compare report in headless Chromium and save a PNG, to look at a report without a browser.

    python scripts/screenshot_report.py runs/compare-x/report.html /tmp/report.png

Exits nonzero with a message if Chromium is missing, the screenshot is not written, or the page
is not self-contained (an <img> that is not an inlined PNG, or a reference to another file or URL).
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

WINDOW = (1280, 4000)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (no imaging library needed)."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    return struct.unpack(">II", head[16:24])


def screenshot(html: Path, out: Path, chromium: str, window: tuple[int, int] = WINDOW, timeout: float = 120) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # so a stale file is never mistaken for a fresh screenshot
    with tempfile.TemporaryDirectory(prefix="ftune-chromium-") as profile:  # no clash with a running browser
        command = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   f"--user-data-dir={profile}", f"--screenshot={out.resolve()}",
                   f"--window-size={window[0]},{window[1]}", html.resolve().as_uri()]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if not out.is_file() or out.stat().st_size == 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"Chromium did not write {out} (exit code {result.returncode})"
                           + "".join(f"\n  {line}" for line in detail))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the report.html written by ftune compare")
    parser.add_argument("out", type=Path, help="where to write the PNG")
    args = parser.parse_args(argv)
    if not args.html.is_file():
        print(f"screenshot_report: {args.html}: no such file", file=sys.stderr)
        return 2
    chromium = find_chromium()
    if chromium is None:
        print("screenshot_report: Chromium not found (looked for /usr/bin/chromium and "
              f"{', '.join(CHROMIUM_NAMES)} on PATH); install it: apt-get install -y chromium", file=sys.stderr)
        return 3
    try:
        screenshot(args.html, args.out, chromium)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        print(f"screenshot_report: {error}", file=sys.stderr)
        return 1
    width, height = png_size(args.out)
    print(f"{args.out}: {width}x{height} PNG, {args.out.stat().st_size / 1024:,.0f} KB")

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # also outside the venv
    from ftune.comparison.report import check_self_contained

    problems = check_self_contained(args.html.read_text(encoding="utf-8"))
    for problem in problems:
        print(f"screenshot_report: {args.html}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
