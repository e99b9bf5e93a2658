"""Settings removed from the code (``config.RETIRED_SETTINGS``, issue 35): a file that holds one at its
old off value loads as before (the shipped model lists them all); any other value is refused with one
line that names the setting and the last commit that runs it."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
from fixtures_genie import one_thread  # noqa: F401  (fixture)

from genieworld import config as C
from genieworld.genie import Genie, ModelDirError

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "coinrun-cpu"
CLASSES = {"ConvLAMConfig": ("lam", "conv"), "DynamicsConfig": ("dynamics",), "SamplingConfig": ("sampling",)}


def _cpu() -> dict:
    return json.loads((C.configs_dir() / "cpu.json").read_text())


def _preset_with(key: str, value) -> dict:
    """The ``cpu`` preset as a dict, with retired setting ``key`` ("Class.field") set to ``value``."""
    d = _cpu()
    cls, name = key.split(".")
    node = d
    for part in CLASSES[cls]:
        node = node[part]
    node[name] = value
    return d


@pytest.mark.parametrize("key", sorted(C.RETIRED_SETTINGS))
def test_a_retired_setting_at_its_off_value_is_dropped_and_any_other_value_names_its_commit(key):
    retired = C.RETIRED_SETTINGS[key]
    cls, name = key.split(".")
    assert name not in {f.name for f in fields(getattr(C, cls))}
    assert C.from_dict(C.Preset, _preset_with(key, retired.off)) == C.from_dict(C.Preset, _cpu())
    other = "on" if isinstance(retired.off, str) else (not retired.off if isinstance(retired.off, bool)
                                                        else retired.off + 1)
    with pytest.raises(C.ConfigError) as e:
        C.from_dict(C.Preset, _preset_with(key, other), where="old.json")
    msg = str(e.value)
    path = ".".join(CLASSES[cls] + (name,))
    assert "\n" not in msg and msg.startswith(f"old.json: {path}=") and "this option was removed" in msg, msg
    assert msg.endswith(f"it runs at commit {retired.commit}"), msg


def test_json_false_is_not_the_number_zero():
    with pytest.raises(C.ConfigError, match="conv.centre_weight=False"):
        C.from_dict(C.Preset, _preset_with("ConvLAMConfig.centre_weight", False))


def test_the_shipped_model_lists_retired_settings_and_still_loads(tmp_path):
    lam = json.loads((SHIPPED / "lam" / "config.json").read_text())
    dyn = json.loads((SHIPPED / "dynamics" / "config.json").read_text())
    held = {f"ConvLAMConfig.{k}" for k in lam["conv"]} | {f"DynamicsConfig.{k}" for k in dyn}
    assert held & set(C.RETIRED_SETTINGS)  # written before the removal: the test is not vacuous
    genie = Genie.from_pretrained(SHIPPED)
    assert genie.lam.cfg.arch == "conv" and genie.dynamics.cfg.prev_frame_warp == 3
    # the same model with a removed option switched on is refused, naming the file, the setting and the commit
    model = tmp_path / "model"
    shutil.copytree(SHIPPED, model)
    lam["conv"]["camera_shift"] = "given"
    (model / "lam" / "config.json").write_text(json.dumps(lam))
    with pytest.raises(ModelDirError) as e:
        Genie.from_pretrained(model)
    msg = str(e.value)
    commit = C.RETIRED_SETTINGS["ConvLAMConfig.camera_shift"].commit
    assert "lam/config.json" in msg and "conv.camera_shift='given'" in msg and commit in msg, msg
