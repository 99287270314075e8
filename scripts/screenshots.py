"""Take the README's screenshots from a real demo run, in Debian's Chromium.

    .venv/bin/python scripts/screenshots.py [--out docs]

Starts `peerdesk run --demo` in a scratch directory, lets the demo chats talk until the
queue holds an urgent case and a few others, then photographs the main pages as the
demo coordinator (and the queue once more in Dutch). Nothing is downloaded: Playwright
drives /usr/bin/chromium, as the browser tests do.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
PAGES = [
    ("screenshot-queue.png", "/queue", 1280, 720),
    ("screenshot-case.png", "CASE", 1280, 1400),
    ("screenshot-faq.png", "/faq", 1280, 900),
    ("screenshot-reports.png", "/reports", 1280, 1300),
    ("screenshot-people.png", "/people", 1280, 800),
]


def wait_for_cases(url: str, cookies: dict[str, str], want: int, within: float) -> list[Any]:
    deadline = time.monotonic() + within
    cases: list[Any] = []
    with httpx.Client(base_url=url, cookies=cookies) as client:
        while time.monotonic() < deadline:
            cases = client.get("/api/v1/cases").json()["cases"]
            if len(cases) >= want and any(c["urgent"] for c in cases):
                return cases
            time.sleep(0.5)
    raise SystemExit(f"only {len(cases)} demo cases after {within:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    out = args.out.resolve()
    with tempfile.TemporaryDirectory() as scratch:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--demo", "--port", "0"],
            cwd=scratch,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            found = re.search(r"(http://\S+)", process.stdout.readline())
            if not found:
                raise SystemExit("peerdesk did not start")
            url = found.group(1)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
                context = browser.new_context(base_url=url, locale="en-GB")
                page = context.new_page()
                page.goto("/login")
                page.get_by_label("Username").fill("demo")
                page.get_by_label("Password").fill("demo")
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url("**/queue")
                cookies = {c["name"]: c["value"] for c in context.cookies()}
                cases = wait_for_cases(url, cookies, want=4, within=120)
                urgent = next(c for c in cases if c["urgent"])
                for name, path, width, height in PAGES:
                    page.set_viewport_size({"width": width, "height": height})
                    page.goto(f"/cases/{urgent['id']}" if path == "CASE" else path)
                    page.screenshot(path=str(out / name))
                    print(out / name)
                page.set_viewport_size({"width": 390, "height": 844})  # a phone
                page.goto("/queue")
                page.get_by_role("button", name="Nederlands").click()
                page.wait_for_load_state()
                page.screenshot(path=str(out / "screenshot-queue-phone-nl.png"))
                print(out / "screenshot-queue-phone-nl.png")
                browser.close()
        finally:
            process.terminate()
            process.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
