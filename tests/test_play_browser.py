"""End to end: `genie play`'s server on 127.0.0.1, driven by Debian's headless Chromium via Playwright.

Needs /usr/bin/chromium (``bash scripts/install-system-deps.sh``); never ``playwright install``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
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


@contextlib.contextmanager
def serving(model_dir, data_dir=None):
    """The play app for ``model_dir`` served by uvicorn on 127.0.0.1:<free port> in a thread."""
    import uvicorn

    from genieworld.genie import Genie
    from genieworld.play.server import LOOPBACK_HOSTS, PlayConfig, bind_socket, create_app

    genie = Genie.from_pretrained(model_dir)
    config = PlayConfig(allowed_hosts=LOOPBACK_HOSTS, max_sessions=4)
    app = create_app(genie, model_dir=model_dir, data_dir=data_dir, config=config)
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
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "genie": genie, "app": app}
    finally:
        srv.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture
def server(untrained_model_dir, synthetic_store_dir):
    """The play app on the untrained model (every action visibly changes the frame), prompts from the store."""
    with serving(untrained_model_dir, synthetic_store_dir) as srv:
        yield srv


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


def frames_received(pg) -> int:
    """Frames that arrived; a frame whose image decodes after a newer one's is never drawn."""
    return pg.evaluate("() => window.genie.framesReceived")


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

    # a burst of key presses: every frame arrives (counted on arrival: a frame whose image decodes
    # after a newer one's is never drawn), the newest is drawn, the HUD shows fps and the queue
    n = frames_received(pg)
    for k in (2, 3, 2, 3):
        pg.keyboard.press(key_of[k])
    pg.wait_for_function(f"() => window.genie.framesReceived >= {n + 4} - window.genie.lastMeta.dropped")
    pg.wait_for_function("() => document.getElementById('frame-index').textContent"
                         " === String(window.genie.lastMeta.index)")
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


NAMES = ["Left", "Right", "Jump", "Stay"]  # CoinRun's effective names (genie actions name), 4 of the 6


@pytest.fixture
def prompt_server(untrained_model_dir, synthetic_store_dir, tmp_path):
    """A model folder as shipped: named actions (actions.json) and prompt frames (prompts/*.png); no --data."""
    from genieworld.prompts import write_prompts

    model = tmp_path / "model"
    shutil.copytree(untrained_model_dir, model)
    (model / "actions.json").write_text(json.dumps({"names": NAMES}))
    paths = write_prompts(model, synthetic_store_dir, n=6, seed=0)
    with serving(model) as srv:
        srv["prompt_files"] = paths
        yield srv


def hud(pg) -> dict:
    return pg.evaluate("""() => ({fps: document.getElementById('fps').textContent,
        unitHidden: document.getElementById('fps-unit').hidden,
        lag: document.getElementById('latency').textContent, state_fps: window.genie.fps,
        idle: window.genie.idle})""")


def test_play_opens_on_a_prompt_with_named_buttons_and_live_figures(prompt_server, page):
    pg = page
    genie = prompt_server["genie"]
    pg.goto(prompt_server["url"])
    pg.wait_for_function("() => window.genie.framesDrawn >= 1 && window.genie.info")
    info = pg.evaluate("() => window.genie.info")
    assert info["action_names"] == NAMES and info["prompt"] == "prompt-00"
    assert not pg.locator("#gravity").is_visible()  # no gravity table in this model's actions.json

    # the first frame is the model's first prompt frame: a real frame, not a uniform one
    first = np.asarray(Image.open(prompt_server["prompt_files"][0]))
    shown = canvas_rgb(pg)
    assert np.array_equal(shown, first) and shown.std() > 4 and len(np.unique(shown.reshape(-1, 3), axis=0)) > 1
    # the gallery: the model's prompts first (the first selected), the neutral frame as a further option
    pg.wait_for_function("() => document.querySelectorAll('#prompts img').length === 7")
    kinds = pg.eval_on_selector_all("#prompts button", "bs => bs.map(b => b.dataset.kind)")
    assert kinds == ["model"] * 6 + ["grey"]
    assert pg.locator("#prompts button.selected").get_attribute("data-prompt") == "prompt-00"
    assert pg.inner_text("#prompt-label").startswith("started from: episode ")
    assert pg.locator("#upload").count() == 1
    assert hud(pg)["fps"] == "idle"

    # one named button per action, with its key; laid out as a pad (jump above, left/stay/right below)
    buttons = pg.locator("#pad button.act")
    assert buttons.count() == 4
    assert [buttons.nth(i).locator(".name").inner_text() for i in range(4)] == NAMES
    assert [buttons.nth(i).locator("kbd").inner_text() for i in range(4)] == ["\u2190", "\u2192", "\u2191", "\u2193"]
    box = {n: buttons.nth(i).bounding_box() for i, n in enumerate(NAMES)}
    assert box["Jump"]["y"] + box["Jump"]["height"] <= box["Stay"]["y"]
    assert box["Left"]["x"] < box["Stay"]["x"] < box["Right"]["x"] and box["Left"]["y"] == box["Stay"]["y"]
    assert min(b["height"] for b in box.values()) >= 40  # a thumb can hit them

    # a click steps the world exactly like the key does
    world = genie.world(first, seed=info["seed"])
    expect = world.step(1)
    for name, i in (("Left", 0), ("Right", 1), ("Jump", 2), ("Stay", 3)):
        n = frames_drawn(pg)
        pg.click(f"#pad button[data-action='{i}']")
        pg.wait_for_function(f"() => window.genie.framesDrawn > {n}")
        meta = pg.evaluate("() => window.genie.lastMeta")
        assert meta["action"] == i and meta["name"] == name
        assert pg.locator(f"#pad button[data-action='{i}']").get_attribute("class").split().count("active") == 1
    reset_and_wait(pg)
    n = frames_drawn(pg)
    pg.click("#pad button[data-action='1']")
    pg.wait_for_function(f"() => window.genie.framesDrawn > {n}")
    assert np.array_equal(canvas_rgb(pg), expect)
    reset_and_wait(pg)
    assert press_and_wait(pg, "ArrowRight")["action"] == 1
    assert np.array_equal(canvas_rgb(pg), expect)
    assert pg.evaluate("() => window.genie.idle") is False

    # holding a button repeats its action, one at a time (no flood of queued presses)
    n = frames_received(pg)  # (the next press goes out on arrival, not draw)
    pg.hover("#pad button[data-action='2']")
    pg.mouse.down()
    pg.wait_for_function(f"() => window.genie.framesReceived >= {n + 4}")
    pg.mouse.up()
    metas = pg.evaluate(f"() => window.genie.metas.slice(-{4})")
    assert all(m["action"] == 2 and m["pending"] == 0 for m in metas)
    time.sleep(0.3)
    settled = frames_received(pg)
    time.sleep(0.4)
    assert frames_received(pg) == settled, "frames kept coming after the button was released"

    # honest live figures: 12 presses 200 ms apart give about 5 frames per second, the lag is shown
    pg.evaluate("() => { window.genie.idleMs = 600; }")
    pg.wait_for_function("() => window.genie.idle && document.getElementById('fps').textContent === 'idle'")
    samples = pg.evaluate("""async () => {
        const out = [];
        for (let i = 0; i < 12; i++) {
            document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowLeft', bubbles: true}));
            await new Promise((r) => setTimeout(r, 200));
            out.push([document.getElementById('fps').textContent, document.getElementById('latency').textContent,
                      window.genie.lastMeta.index]);
        }
        return out;
    }""")
    fps = [float(f) for f, _, _ in samples]  # a number at every press: never "idle" or stuck while playing
    assert all(f > 0 for f in fps) and len(set(fps)) > 2, samples
    assert 3.0 <= fps[-1] <= 7.0, f"12 presses at 5 per second shown as {fps[-1]} fps"
    lags = [float(lag) for _, lag, _ in samples]
    assert all(0 <= lag < 2000 for lag in lags)
    assert len({i for _, _, i in samples}) >= 10  # the frame index moved with every press
    assert not hud(pg)["unitHidden"]
    # and "idle", not 0.0, once nobody plays
    pg.wait_for_function("() => document.getElementById('fps').textContent === 'idle'", timeout=5000)
    assert hud(pg)["unitHidden"]

    assert not pg.problems, pg.problems


def test_buttons_work_on_a_touch_screen(prompt_server, page):
    ctx = page.context.browser.new_context(has_touch=True, is_mobile=True, viewport={"width": 390, "height": 844})
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(30_000)
        pg.goto(prompt_server["url"])
        pg.wait_for_function("() => window.genie.framesDrawn >= 1 && window.genie.info")
        for i in (2, 0, 3):
            n = frames_drawn(pg)
            pg.tap(f"#pad button[data-action='{i}']")
            pg.wait_for_function(f"() => window.genie.framesDrawn > {n}")
            assert pg.evaluate("() => window.genie.lastMeta.action") == i
        assert pg.evaluate("() => window.genie.framesDrawn") == 4  # one frame per tap, no double steps
        assert pg.eval_on_selector("#pad button.act", "b => getComputedStyle(b).touchAction") == "manipulation"
    finally:
        ctx.close()


def test_every_key_of_an_action_plays_it(prompt_server, page):
    """The keymap's further keys (space and W jump, A/D/S) play their action until that action is rebound."""
    pg = page
    pg.goto(prompt_server["url"])
    pg.wait_for_function("() => window.genie.framesDrawn >= 1 && window.genie.info")
    keymap = pg.evaluate("() => window.genie.info.keymap")
    assert keymap[" "] == keymap["w"] == keymap["ArrowUp"] == 2 and keymap["a"] == 0 and keymap["s"] == 3
    rows = pg.locator("#keys tbody tr")
    assert rows.nth(2).locator("small.alias").inner_text() == "also Space, W"
    assert "Space" in pg.locator("#pad button[data-action='2']").get_attribute("title")
    pg.locator("#screen").focus()
    for key, action in ((" ", 2), ("w", 2), ("a", 0), ("d", 1), ("s", 3), ("ArrowUp", 2)):
        assert press_and_wait(pg, key)["action"] == action, key

    # rebinding Jump to X retires its other keys: space then does nothing, X jumps
    rows.nth(2).locator("button").click()
    pg.keyboard.press("x")
    assert rows.nth(2).locator("small.alias").count() == 0
    pg.locator("#screen").focus()
    assert press_and_wait(pg, "x")["action"] == 2
    n = frames_drawn(pg)
    pg.keyboard.press(" ")
    pg.keyboard.press("ArrowLeft")
    pg.wait_for_function(f"() => window.genie.framesDrawn > {n} && window.genie.lastMeta.action === 0")
    assert frames_drawn(pg) == n + 1, "space still played a retired binding"
    assert not pg.problems, pg.problems


def test_gravity_shows_the_key_pressed_and_the_fall_played(untrained_model_dir, synthetic_store_dir, tmp_path, page):
    """With a gravity table (genieworld.controls), a key pressed after two jumps plays a fall: the page's
    "last" figure says both, and the down arrow plays the Fall action."""
    from genieworld.prompts import write_prompts

    model = tmp_path / "model"
    shutil.copytree(untrained_model_dir, model)
    names = ["Left", "Stay", "Jump", "Fall"]
    counts = np.zeros((3, 4, 4, 4), dtype=int)  # real actions: Left 0, Stay 1, Jump 2
    counts[:, 2, 2, 3] = 40  # after two jumps the recordings fall, whatever is held
    (model / "actions.json").write_text(json.dumps({
        "names": names, "sequence_counts": counts.tolist(),
        "motion": [{"down": 0.0, "up": 0.0}, {"down": 0.0, "up": 0.0}, {"down": 0.0, "up": 0.9},
                   {"down": 0.9, "up": 0.0}],
        "mapping": [{"latent": 0, "true_action": 0}, {"latent": 1, "true_action": 1},
                    {"latent": 2, "true_action": 2}, {"latent": 3, "true_action": 1, "effect": "fall"}]}))
    write_prompts(model, synthetic_store_dir, n=2, seed=0)
    with serving(model) as srv:
        pg = page
        pg.goto(srv["url"])
        pg.wait_for_function("() => window.genie.framesDrawn >= 1 && window.genie.info")
        assert pg.evaluate("() => window.genie.info.keymap")["ArrowDown"] == 3
        assert pg.locator("#gravity").is_visible() and "Gravity is on" in pg.inner_text("#gravity")
        pg.locator("#screen").focus()
        assert [press_and_wait(pg, "ArrowUp")["action"] for _ in range(2)] == [2, 2]
        meta = press_and_wait(pg, "s")
        assert meta["pressed"] == 1 and meta["action"] == 3
        assert pg.inner_text("#last-action") == "Stay \u2192 Fall"
        meta = press_and_wait(pg, "ArrowLeft")  # after (Jump, Fall): nothing recorded, as pressed
        assert meta["action"] == meta["pressed"] == 0 and pg.inner_text("#last-action") == "Left"
        assert not pg.problems, pg.problems
