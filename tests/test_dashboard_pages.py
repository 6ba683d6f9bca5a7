"""Trial pages of optuna-dashboard as a user sees them, in headless Chromium (Debian's
``chromium``) at 1,280 and 1,000 px: nothing scrolls sideways, every picture fills its card
(at least 200 px wide), a collapse is the first line of the trial's note, and the summary is
the first user attr. Chromium is driven over its DevTools pipe (``--remote-debugging-pipe``:
JSON messages ending in a NUL byte on fds 3 and 4), so no client library is needed."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
import pytest

from sweep import optuna_private

CHROMIUM = shutil.which("chromium")
WIDTHS = (1280, 1000)
LAUNCH = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
          "os.execv(sys.argv[3], sys.argv[3:])")
# The page's state once the trial's pictures and its note have loaded: how wide the page
# is (and the texts that reach past the window), each picture's drawn size (fitted whole
# into its box, as CSS object-fit: contain does), and the text in reading order.
MEASURE = """new Promise(done => { const started = Date.now(); const look = () => {
  const imgs = [...document.querySelectorAll('img')].filter(i => i.src.includes('/artifacts/'));
  const text = document.body.innerText;
  if ((imgs.length < PNGS || !imgs.every(i => i.complete && i.naturalWidth > 0)
       || !text.includes('User Attributes')) && Date.now() - started < 30000) {
    return setTimeout(look, 50); }
  const wide = [...document.querySelectorAll('p, span, td')].filter(e =>
    e.children.length === 0 && e.getBoundingClientRect().right > window.innerWidth);
  done(JSON.stringify({scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth, text: text, wide: wide.map(e => e.textContent),
    images: imgs.map(i => { const r = i.getBoundingClientRect();
      const s = Math.min(r.width / i.naturalWidth, r.height / i.naturalHeight);
      return {name: i.alt, width: i.naturalWidth * s, height: i.naturalHeight * s}; })}));
}; look(); })"""


class Chromium:
    """Headless Chromium, spoken to over its DevTools pipe."""

    def __init__(self, profile: Path) -> None:
        to_browser, self._to = os.pipe()
        self._from, from_browser = os.pipe()
        # A small launcher puts the pipes on fds 3 and 4, where Chromium looks for them (a
        # shell's redirections take one-digit fds only; preexec_fn is unsafe with threads).
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(to_browser), str(from_browser), str(CHROMIUM),
             "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--remote-debugging-pipe", f"--user-data-dir={profile}"],
            pass_fds=(to_browser, from_browser), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_browser)
        os.close(from_browser)
        self._n, self._buffer = 0, b""
        self._events: list[str | None] = []

    def _next(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from, 1 << 20)
            assert chunk, f"chromium exited ({self.proc.poll()})"
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(raw))

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._n += 1
        message = {"id": self._n, "method": method, "params": params,
                   **({"sessionId": session} if session else {})}
        os.write(self._to, json.dumps(message).encode() + b"\0")
        while True:  # events come in between (kept for wait); the answer carries our id
            reply = self._next()
            if reply.get("id") == self._n:
                assert "error" not in reply, (method, reply["error"])
                return dict(reply["result"])
            self._events.append(reply.get("method"))

    def wait(self, event: str) -> None:
        """Until Chromium has sent ``event`` (since the last wait)."""
        while event not in self._events:
            self._events.append(self._next().get("method"))
        self._events.clear()

    def look(self, url: str, width: int, pngs: int, screenshot: Path) -> dict[str, Any]:
        """Open ``url`` in a window ``width`` px wide; MEASURE once ``pngs`` pictures have
        loaded, and save the whole page as ``screenshot``."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride", session, width=width, height=900,
                  deviceScaleFactor=1, mobile=False)
        self.call("Page.enable", session)
        self.call("Page.navigate", session, url=url)
        self.wait("Page.loadEventFired")  # the dashboard's script, not about:blank, is there
        result = self.call("Runtime.evaluate", session, awaitPromise=True, returnByValue=True,
                           expression=MEASURE.replace("PNGS", str(pngs)))
        assert "exceptionDetails" not in result, result
        shot = self.call("Page.captureScreenshot", session, format="png",
                         captureBeyondViewport=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return dict(json.loads(result["result"]["value"]))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self._to)
        os.close(self._from)


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # Chromium asks for the page's files at once


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no line per request
        pass


@pytest.fixture
def chromium(tmp_path):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    browser = Chromium(tmp_path / "profile")
    yield browser
    browser.close()


def serve(url: str) -> tuple[WSGIServer, int]:
    """optuna-dashboard on ``url`` with the studies' image stores, as ``python -m sweep
    dashboard`` serves it, on a free loopback port (in a thread of this process)."""
    import optuna_dashboard

    from sweep.commands.dashboard import stores_of
    from sweep.storage.database import open_storage

    storage = open_storage(url, heartbeat_interval=None)
    (stores,) = stores_of(storage, url, None)
    app = optuna_dashboard.wsgi(storage, artifact_store=stores.artifacts)
    server = make_server("127.0.0.1", 0, app, server_class=ThreadingServer,
                         handler_class=QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_port


@pytest.mark.slow  # 9 to 15 s on 2 busy cores: two tiny trials, four page loads
def test_the_seeds_and_a_fixs_trial_pages_read_at_1280_and_1000_px(tmp_path, chromium,
                                                                   monkeypatch):
    import sweep

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/sweeps.db"
    # The seed configuration and the strongest fix (its label is the longest attr a study
    # writes), on images so tiny that both collapse.
    sweep.start(study_name="s", storage=url, n_trials=2,
                fixed={"dataset": "synthetic", "synthetic_size": 96, "width": 4, "depth": 2,
                       "latent_dim": 8, "batch_size": 32, "max_epochs": 1})
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.user_attrs["collapsed"] for t in study.trials] == [True, True]
    pngs = sum(1 for k, v in study.trials[0].system_attrs.items()
               if k.startswith("artifacts:") and ".png" in v)
    server, port = serve(url)
    pages = {}
    try:
        for number, width in ((0, 1280), (1, 1280), (0, 1000), (1, 1000)):
            shot = tmp_path / f"trial-{number}-{width}.png"
            pages[number, width] = chromium.look(
                f"http://127.0.0.1:{port}/dashboard/studies/{optuna_private.study_id(study)}/trials"
                f"?numbers={number}", width, pngs, shot), shot
    finally:
        server.shutdown()
        server.server_close()
    for (number, width), (page, shot) in pages.items():
        where = f"trial {number} at {width} px (screenshot: {shot})"
        # Every line of text is inside the window; at 1,280 px nothing scrolls sideways. At
        # 1,000 px the dashboard's own dates ("Thu Dec 03 2026 14:14:46 GMT+0000
        # (Coordinated Universal Time)") end within it, but their boxes' padding does not.
        assert page["wide"] == [] and page["innerWidth"] == width, (page["wide"], where)
        assert page["scrollWidth"] <= width + (16 if width < 1280 else 0), where
        assert len(page["images"]) == pngs == 5, where
        for image in page["images"]:  # 4:3 in a 200 x 150 card: it fills it
            assert image["width"] >= 200 and image["height"] >= 149, (image, where)
        lines = [line.strip() for line in page["text"].splitlines() if line.strip()]
        heading = next(i for i, line in enumerate(lines)
                       if line.startswith(f"Trial {number} (trial_id="))
        note = lines.index("Note", heading)  # the trial's own, not the menu's
        attrs = lines.index("User Attributes")
        assert lines[note + 1].startswith("posterior collapse: 0 active units"), (lines, where)
        who = ("baseline (the seed)", "calibrated decoder")[number]
        assert lines[attrs + 1].startswith(f"_summary {who}: "), (lines, where)
