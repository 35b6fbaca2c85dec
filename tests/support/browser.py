"""Open a local HTML file in headless Chromium over the DevTools protocol: collect console errors and uncaught
exceptions, evaluate an expression once the page has loaded, and take a screenshot of the full page or of the
viewport. `python -m tests.support.browser PAGE.html OUT.png` saves a full-page screenshot of a page.

The DevTools protocol (not `--dump-dom`) because it reports errors as events instead of log lines to parse,
and it can wait for the page's own rendering. Chromium is Debian's `chromium` (scripts/setup.sh installs it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


@dataclass
class PageRun:
    errors: list[str] = field(default_factory=list)
    value: Any = None


async def _session(ws_url: str, url: str, expression: str, screenshot: Path | None, settle_s: float,
                   viewport: tuple[int, int], full_page: bool) -> PageRun:
    run = PageRun()
    async with websockets.connect(ws_url, max_size=64 * 1024 * 1024) as ws:
        counter = 0
        waiting: dict[int, asyncio.Future[dict]] = {}
        loaded = asyncio.Event()

        async def send(method: str, **params: Any) -> dict:
            nonlocal counter
            counter += 1
            future = asyncio.get_running_loop().create_future()
            waiting[counter] = future
            await ws.send(json.dumps({"id": counter, "method": method, "params": params}))
            return await asyncio.wait_for(future, 60)

        async def reader() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if "id" in message and message["id"] in waiting:
                    waiting.pop(message["id"]).set_result(message.get("result", message.get("error", {})))
                method = message.get("method")
                params = message.get("params", {})
                if method == "Runtime.exceptionThrown":
                    details = params["exceptionDetails"]
                    run.errors.append(details.get("exception", {}).get("description") or details.get("text", ""))
                elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    run.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
                elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                    run.errors.append(params["entry"].get("text", ""))
                elif method == "Page.loadEventFired":
                    loaded.set()

        task = asyncio.create_task(reader())
        try:
            for domain in ("Runtime", "Log", "Page"):
                await send(f"{domain}.enable")
            await send("Emulation.setDeviceMetricsOverride", width=viewport[0], height=viewport[1], deviceScaleFactor=1,
                       mobile=False)
            await send("Page.navigate", url=url)
            await asyncio.wait_for(loaded.wait(), 60)
            await asyncio.sleep(settle_s)  # let late errors and rendering land; not a timing assertion
            result = await send("Runtime.evaluate", expression=expression, returnByValue=True)
            run.value = result.get("result", {}).get("value")
            if screenshot is not None:
                clip = {}
                if full_page:
                    # the whole document, not the viewport: its layout size, captured beyond the viewport
                    # without resizing it (a resize would make Plotly redraw every responsive chart)
                    metrics = await send("Page.getLayoutMetrics")
                    size = metrics.get("cssContentSize") or metrics["contentSize"]
                    clip = {"clip": {"x": 0, "y": 0, "width": math.ceil(size["width"]),
                                     "height": math.ceil(size["height"]), "scale": 1}}
                shot = await send("Page.captureScreenshot", format="png", captureBeyondViewport=full_page, **clip)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
        finally:
            task.cancel()
    return run


def open_page(path: Path, expression: str = "true", screenshot: Path | None = None, settle_s: float = 1.0,
              viewport: tuple[int, int] = (1280, 900), full_page: bool = True) -> PageRun:
    """Load `path` in headless Chromium; return its errors and the value of `expression`. With `screenshot`,
    save a PNG of the whole page (`full_page`) or of the viewport only."""
    binary = chromium_path()
    if binary is None:
        raise RuntimeError("chromium is not installed")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"]
    env = {**os.environ, "HOME": profile}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        browser_ws = None
        assert proc.stderr is not None
        for line in proc.stderr:
            if match := re.search(r"DevTools listening on (ws://\S+)", line):
                browser_ws = match.group(1)
                break
        if browser_ws is None:
            raise RuntimeError(f"chromium did not start (exit {proc.poll()})")
        # keep draining its log so a full pipe never blocks the browser
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
        port = re.search(r":(\d+)/", browser_ws).group(1)  # type: ignore[union-attr]
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            pages = [t for t in json.load(response) if t.get("type") == "page"]
        return asyncio.run(_session(pages[0]["webSocketDebuggerUrl"], path.resolve().as_uri(), expression,
                                    screenshot, settle_s, viewport, full_page))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header."""
    header = path.read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def main(argv: list[str] | None = None) -> int:
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tests.support.browser PAGE.html OUT.png", file=sys.stderr)
        return 2
    page, out = Path(args[0]), Path(args[1])
    if not page.is_file():
        print(f"error: {page}: no such file", file=sys.stderr)
        return 2
    run = open_page(page, screenshot=out, settle_s=3.0)
    for error in run.errors:
        print(f"page error: {error}", file=sys.stderr)
    width, height = png_size(out)
    print(f"{out}: {width} x {height} px")
    return 1 if run.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
