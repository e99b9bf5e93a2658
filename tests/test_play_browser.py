"""End to end: `genie play`'s server on 127.0.0.1, driven by Debian's headless Chromium via Playwright.

Needs /usr/bin/chromium (``bash scripts/install-system-deps.sh``); never ``playwright install``.
"""

from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from fixtures_models import one_torch_thread, synthetic_store_dir, untrained_model_dir  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} missing: run `bash scripts/install-system-deps.sh` (Debian chromium)"),
]


@pytest.fixture
def server(untrained_model_dir, synthetic_store_dir):
    """The play app served by uvicorn on 127.0.0.1:<free port> in a thread (the model is untrained, so
    every action visibly changes the frame)."""
    import uvicorn

    from genieworld.genie import Genie
    from genieworld.play.server import LOOPBACK_HOSTS, PlayConfig, bind_socket, create_app

    genie = Genie.from_pretrained(untrained_model_dir)
    config = PlayConfig(allowed_hosts=LOOPBACK_HOSTS, max_sessions=4)
    app = create_app(genie, model_dir=untrained_model_dir, data_dir=synthetic_store_dir, config=config)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_max_size=config.ws_max_size,
                                        ws_per_message_deflate=False))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield {"url": f"http://127.0.0.1:{port}/", "genie": genie, "app": app}
    srv.should_exit = True
    thread.join(timeout=15)
    sock.close()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True)
            pg = context.new_page()
            pg.set_default_timeout(30_000)
            problems = []
            pg.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            pg.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
            pg.problems = problems
            yield pg
        finally:
            browser.close()


def canvas_rgb(pg) -> np.ndarray:
    """The canvas pixels (it is drawn at the model's resolution) as uint8 (H, W, 3)."""
    data = pg.evaluate("""() => {
        const c = document.getElementById('screen');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height);
        return {w: c.width, h: c.height, px: Array.from(d.data)};
    }""")
    return np.asarray(data["px"], dtype=np.uint8).reshape(data["h"], data["w"], 4)[..., :3]


def frames_drawn(pg) -> int:
    return pg.evaluate("() => window.genie.framesDrawn")


def press_and_wait(pg, key: str) -> dict:
    """Press ``key`` and wait until the frame it caused is on the canvas; returns that frame's metadata."""
    n = frames_drawn(pg)
    pg.keyboard.press(key)
    pg.wait_for_function(f"() => window.genie.framesDrawn > {n}")
    return pg.evaluate("() => window.genie.lastMeta")


def reset_and_wait(pg) -> dict:
    n = frames_drawn(pg)
    pg.click("#reset")
    pg.wait_for_function(f"() => window.genie.framesDrawn > {n} && window.genie.lastMeta.reset")
    pg.locator("#screen").focus()
    return pg.evaluate("() => window.genie.lastMeta")


def test_play_in_browser(server, page, tmp_path):
    pg = page
    genie = server["genie"]
    pg.goto(server["url"])
    pg.wait_for_function("() => window.genie.framesDrawn >= 1 && window.genie.info")
    info = pg.evaluate("() => window.genie.info")
    assert info["num_actions"] == genie.num_actions == 4 and info["image_size"] == genie.image_size
    # crisp upscaling, keys shown on screen, prompts offered as thumbnails
    assert pg.eval_on_selector("#screen", "c => getComputedStyle(c).imageRendering") == "pixelated"
    box = pg.locator("#screen").bounding_box()
    assert box["width"] >= 4 * genie.image_size
    assert pg.locator("#keys tbody tr").count() == 4
    key_of = {int(a): k for k, a in info["keymap"].items()}
    assert pg.locator("#keys tbody tr").nth(1).inner_text().split()[-1] == key_of[1].upper()
    pg.wait_for_function("() => document.querySelectorAll('#prompts img').length >= 2")
    assert pg.locator("#prompts button.selected").get_attribute("data-prompt") == info["prompt"]

    # the first frame is the prompt itself
    prompt = server["app"].state.play.get_prompt(info["prompt"]).frame
    assert np.array_equal(canvas_rgb(pg), prompt)

    # each key press makes one new frame, generated with the bound action
    pg.locator("#screen").focus()
    meta = press_and_wait(pg, key_of[0])
    assert meta["action"] == 0 and meta["index"] == 1
    after0 = canvas_rgb(pg)
    world = genie.world(prompt, seed=info["seed"])
    assert np.array_equal(after0, world.step(0)), "the canvas should show what the model makes for action 0"
    assert not np.array_equal(after0, prompt)

    # same prompt and seed, another action: another frame; the same action again: the same frame
    reset_and_wait(pg)
    assert np.array_equal(canvas_rgb(pg), prompt)
    meta = press_and_wait(pg, key_of[1])
    assert meta["action"] == 1 and meta["index"] == 1
    after1 = canvas_rgb(pg)
    assert not np.array_equal(after0, after1), "two actions from the same prompt and seed gave the same frame"
    reset_and_wait(pg)
    press_and_wait(pg, key_of[0])
    assert np.array_equal(canvas_rgb(pg), after0)

    # a burst of key presses: every frame arrives, the HUD shows fps and the queue
    n = frames_drawn(pg)
    for k in (2, 3, 2, 3):
        pg.keyboard.press(key_of[k])
    pg.wait_for_function(f"() => window.genie.framesDrawn >= {n + 4} - window.genie.lastMeta.dropped")
    assert pg.evaluate("() => window.genie.fps") > 0
    assert float(pg.inner_text("#fps")) > 0
    assert int(pg.inner_text("#frame-index")) >= 4

    # rebind action 2 to "x"; the binding survives a reload (localStorage)
    pg.locator("#keys tbody tr").nth(2).locator("button").click()
    pg.keyboard.press("x")
    assert pg.locator("#keys tbody tr").nth(2).locator("button").inner_text() == "X"
    pg.locator("#screen").focus()
    assert press_and_wait(pg, "x")["action"] == 2
    pg.reload()
    pg.wait_for_function("() => window.genie.framesDrawn >= 1 && window.genie.info")
    assert pg.evaluate("() => window.genie.info.resumed") is True  # same tab: same session
    assert pg.locator("#keys tbody tr").nth(2).locator("button").inner_text() == "X"
    pg.locator("#screen").focus()
    assert press_and_wait(pg, "x")["action"] == 2

    # another prompt from the dataset thumbnails
    n = frames_drawn(pg)
    pg.locator("#prompts button[data-prompt='data-2']").click()
    pg.wait_for_function(f"() => window.genie.framesDrawn > {n} && window.genie.lastMeta.prompt === 'data-2'")
    assert np.array_equal(canvas_rgb(pg), server["app"].state.play.get_prompt("data-2").frame)

    # upload an image as the prompt (resized like ingestion)
    from genieworld.data.video import prepare_frame

    src = np.zeros((48, 96, 3), dtype=np.uint8)
    src[:, :48] = (250, 200, 0)
    path = tmp_path / "mine.jpg"
    Image.fromarray(src).save(path, quality=95)
    n = frames_drawn(pg)
    pg.set_input_files("#upload", str(path))
    pg.wait_for_function(f"() => window.genie.framesDrawn > {n} && "
                         "(window.genie.lastMeta.prompt || '').startsWith('upload-')")
    from genieworld.data.video import load_image

    assert np.array_equal(canvas_rgb(pg), prepare_frame(load_image(path), genie.image_size))
    pg.locator("#screen").focus()
    press_and_wait(pg, key_of[3])

    # download the session (frames since the last reset) as mp4 and GIF
    with pg.expect_download() as dl:
        pg.click("#dl-mp4")
    mp4 = tmp_path / "s.mp4"
    dl.value.save_as(mp4)
    assert mp4.read_bytes()[4:8] == b"ftyp"
    with pg.expect_download() as dl:
        pg.click("#dl-gif")
    gif = Image.open(io.BytesIO(open(dl.value.path(), "rb").read()))
    assert gif.n_frames == 2  # the uploaded prompt + one step

    assert not pg.problems, pg.problems


def test_browser_survives_hostile_messages(server, page):
    """Garbage sent over the page's own socket gets error replies; the page keeps playing."""
    pg = page
    pg.goto(server["url"])
    pg.wait_for_function("() => window.genie.framesDrawn >= 1 && window.genie.info")
    pg.evaluate("""() => {
        const ws = window.genie.ws;
        ws.send('{nope'); ws.send('[]'); ws.send(JSON.stringify({type: 'action', action: 99}));
        ws.send('x'.repeat(10000)); ws.send(new Uint8Array([1, 2, 3]));
    }""")
    pg.wait_for_function("() => window.genie.errors.length >= 5")
    codes = pg.evaluate("() => window.genie.errors.map(e => e.code)")
    assert codes == ["bad_json", "bad_message", "bad_action", "too_large", "binary_not_supported"]
    assert pg.locator("#status.error").count() == 1
    key0 = next(k for k, a in pg.evaluate("() => window.genie.info.keymap").items() if a == 0)
    pg.locator("#screen").focus()
    assert press_and_wait(pg, key0)["action"] == 0
