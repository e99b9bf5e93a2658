"""Every file genieworld reads goes through one guarded open (genieworld.utils.open_regular): regular files
only (a FIFO is refused, never waited on; a link to /dev/zero is refused, never read), bounded in size."""

from __future__ import annotations

import json
import os
import shutil
import threading

import numpy as np
import pytest
from fixtures_models import synthetic_store_dir, untrained_model_dir  # noqa: F401

from genieworld.errors import UserError
from genieworld.utils import open_regular, read_bytes_bounded, read_json


def _no_hang(fn, timeout=10.0):
    """Run ``fn`` in a thread; fail (instead of hanging the suite) when it has not returned in ``timeout`` s."""
    out = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the read blocked"
    return out


@pytest.fixture
def fifo(tmp_path):
    p = tmp_path / "fifo"
    os.mkfifo(p)
    return p


def test_open_regular_refuses_fifo_devices_folders_and_oversize(tmp_path, fifo):
    r = _no_hang(lambda: open_regular(fifo))
    assert isinstance(r.get("error"), UserError) and "FIFO" in str(r["error"])
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    with pytest.raises(UserError, match="character device"):
        read_bytes_bounded(zero, 100)
    with pytest.raises(UserError, match="folder"):
        open_regular(tmp_path)
    big = tmp_path / "big.json"
    big.write_text(" " * 2000)
    with pytest.raises(UserError, match="more than"):
        read_json(big, max_bytes=1000)
    ok = tmp_path / "ok.json"
    ok.write_text('{"a": 1}')
    link = tmp_path / "link.json"
    link.symlink_to(ok)  # a link to a regular file is read
    assert read_json(link) == {"a": 1}


def test_prompt_index_as_fifo_or_dev_zero_is_ignored_quickly(tmp_path):
    from genieworld.prompts import read_prompt_labels

    d = tmp_path / "prompts"
    d.mkdir()
    os.mkfifo(d / "index.json")
    assert _no_hang(lambda: read_prompt_labels(d))["value"] == {}
    (d / "index.json").unlink()
    (d / "index.json").symlink_to("/dev/zero")
    assert _no_hang(lambda: read_prompt_labels(d))["value"] == {}


def test_play_server_starts_with_a_fifo_index(tmp_path, untrained_model_dir):
    from genieworld.play.server import _load_model_prompts as load_model_prompts

    model = tmp_path / "model"
    shutil.copytree(untrained_model_dir, model)
    (model / "prompts").mkdir(exist_ok=True)
    os.mkfifo(model / "prompts" / "index.json")
    r = _no_hang(lambda: load_model_prompts(model, 16, 8))
    assert "error" not in r


def test_a_fifo_shard_is_refused_not_waited_on(tmp_path, synthetic_store_dir):
    from genieworld.data.store import EpisodeStore, StoreError

    store_dir = tmp_path / "store"
    shutil.copytree(synthetic_store_dir, store_dir)
    shard = sorted(store_dir.glob("shard-*"))[0]
    shard.unlink()
    os.mkfifo(shard)
    r = _no_hang(lambda: EpisodeStore(store_dir).read_frames(0))
    assert isinstance(r.get("error"), StoreError), r
    r = _no_hang(lambda: EpisodeStore(store_dir).verify())
    assert "error" in r or r["value"]  # refused or reported, never a hang


def test_fifo_weights_cache_arrays_and_images_are_refused(tmp_path, fifo, untrained_model_dir):
    from genieworld.data.video import load_image
    from genieworld.genie import Genie
    from genieworld.train.token_cache import TokenCache

    model = tmp_path / "model"
    shutil.copytree(untrained_model_dir, model)
    (model / "dynamics" / "model.safetensors").unlink()
    os.mkfifo(model / "dynamics" / "model.safetensors")
    r = _no_hang(lambda: Genie.from_pretrained(model))
    assert isinstance(r.get("error"), UserError), r

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "cache.json").write_text(json.dumps({"version": 1, "offsets": [0, 1]}))
    os.mkfifo(cache / "tokens.npy")
    np.save(cache / "actions.npy", np.zeros(1, np.int16))
    r = _no_hang(lambda: TokenCache(cache))
    assert isinstance(r.get("error"), ValueError), r

    r = _no_hang(lambda: load_image(fifo))
    assert isinstance(r.get("error"), ValueError), r
