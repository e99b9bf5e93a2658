"""Genie bundle: model directory round trip, compatibility checks, prompts, rollout, `genie generate`."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch
from fixtures_genie import one_thread, tiny_genie, tiny_lam_cfg, tiny_tokenizer_cfg  # noqa: F401
from PIL import Image

from genieworld.genie import Genie, ModelDirError, save_component

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def model_dir(tmp_path):
    genie = tiny_genie(steps=2)
    return genie, genie.save_pretrained(tmp_path / "model")


def _prompt(b=1, t=1, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (b, t, 16, 16, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------- directory format
def test_save_and_load_give_identical_outputs(model_dir, tmp_path):
    genie, path = model_dir
    assert {p.name for p in path.iterdir()} == {"genie.json", "tokenizer", "lam", "dynamics", ".genieworld"}
    meta = json.loads((path / "genie.json").read_text())
    assert meta["format"] == "genieworld-model" and meta["num_actions"] == 4
    loaded = Genie.from_pretrained(path)
    assert loaded.sampling == genie.sampling
    for (k, a), (k2, b) in zip(genie.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    prompt, actions = _prompt(b=2, t=2), torch.tensor([[0, 1, 2], [3, 3, 1]])
    out_a = genie.rollout(prompt, actions, seed=7)
    out_b = loaded.rollout(prompt, actions, seed=7)
    assert out_a.shape == (2, 5, 16, 16, 3) and out_a.dtype == torch.uint8
    assert torch.equal(out_a, out_b)
    assert torch.equal(genie.infer_actions(prompt), loaded.infer_actions(prompt))
    # a training RUN folder is accepted too (RUN/model)
    shutil.copytree(path, tmp_path / "run" / "model")
    assert Genie.from_pretrained(tmp_path / "run").num_actions == 4


def _replace_part(path, name, module):
    shutil.rmtree(path / name)
    save_component(module, module.cfg, path / name)


def test_mismatched_parts_fail_with_a_message_naming_the_mismatch(model_dir):
    from genieworld.lam import LatentActionModel
    from genieworld.tokenizer import VideoTokenizer

    _, path = model_dir
    good_tok = path.parent / "good_tok"
    shutil.copytree(path / "tokenizer", good_tok)

    _replace_part(path, "tokenizer", VideoTokenizer(tiny_tokenizer_cfg(codes=64)))
    with pytest.raises(ModelDirError, match="dynamics expects 32 codes but the tokenizer has 64"):
        Genie.from_pretrained(path)
    _replace_part(path, "tokenizer", VideoTokenizer(tiny_tokenizer_cfg(size=32, patch=8)))
    with pytest.raises(ModelDirError, match="LAM expects 16x16 images but the tokenizer 32x32"):
        Genie.from_pretrained(path)
    _replace_part(path, "tokenizer", VideoTokenizer(tiny_tokenizer_cfg(size=32, patch=4)))
    with pytest.raises(ModelDirError, match="dynamics expects 16 tokens per frame but the tokenizer makes 64"):
        Genie.from_pretrained(path)
    shutil.rmtree(path / "tokenizer")
    shutil.copytree(good_tok, path / "tokenizer")

    lam_dir = path.parent / "good_lam"
    shutil.copytree(path / "lam", lam_dir)
    _replace_part(path, "lam", LatentActionModel(tiny_lam_cfg(actions=6)))
    with pytest.raises(ModelDirError, match="genie.json says 4 actions but the LAM has 6"):
        Genie.from_pretrained(path)
    _replace_part(path, "lam", LatentActionModel(tiny_lam_cfg(code_dim=16)))
    with pytest.raises(ModelDirError, match="action vectors of size 8 but the LAM's action codes have size 16"):
        Genie.from_pretrained(path)
    shutil.rmtree(path / "lam")
    shutil.copytree(lam_dir, path / "lam")

    (path / "actions.json").write_text(json.dumps({"names": ["left", "right"]}))
    with pytest.raises(ModelDirError, match="actions.json: 2 names for 4 latent actions"):
        Genie.from_pretrained(path)
    # names reach a web page: the same rules as the play server's reader, named in the error
    for bad, why in ((["<img src=x onerror=alert(1)>", "b", "c", "d"], "name 0"), (["a", "a", "c", "d"], "duplicate"),
                     (["a", None, "c", "d"], "name 1 is a NoneType")):
        (path / "actions.json").write_text(json.dumps({"names": bad}))
        with pytest.raises(ModelDirError, match=why):
            Genie.from_pretrained(path)
    (path / "actions.json").write_text(json.dumps({"names": ["left", "right", "up", "down"]}))
    assert Genie.from_pretrained(path).action_names == ["left", "right", "up", "down"]

    # weights that do not match their own config
    cfg = json.loads((path / "dynamics" / "config.json").read_text())
    cfg["transformer"]["num_layers"] = 3
    (path / "dynamics" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelDirError, match="missing"):
        Genie.from_pretrained(path)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelDirError, match="no such model directory"):
        Genie.from_pretrained(tmp_path / "nope")
    with pytest.raises(ModelDirError, match="no genie.json"):
        Genie.from_pretrained(tmp_path)


def test_action_names_default_and_properties():
    genie = tiny_genie()
    assert genie.num_actions == 4 and genie.image_size == 16
    assert genie.action_names == ["0", "1", "2", "3"]
    genie.action_names = ["a", "b", "c", "d"]
    assert genie.action_names == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="1 names for 4"):
        genie.action_names = ["a"]
    with pytest.raises(ValueError, match="name 3"):
        genie.action_names = ["a", "b", "c", "</script>"]


# ----------------------------------------------------------------------------- prompts and inference
def test_prompt_inputs_are_all_accepted_and_resized(tmp_path):
    genie = tiny_genie()
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    png = tmp_path / "shot.png"
    Image.fromarray(rgb).save(png)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    from genieworld.data.video import prepare_frame

    expected = torch.from_numpy(prepare_frame(rgb, 16))
    for prompt in (str(png), png, buf.getvalue(), Image.fromarray(rgb), rgb, torch.from_numpy(rgb)):
        frames = genie.prepare_prompt(prompt)
        assert frames.shape == (1, 16, 16, 3) and frames.dtype == torch.uint8
        assert torch.equal(frames[0], expected), type(prompt)
    clip = np.stack([rgb, rgb[::-1]])
    assert genie.prepare_prompt(clip).shape == (2, 16, 16, 3)
    assert genie.prepare_prompt(rgb.astype(np.float32) / 255.0).shape == (1, 16, 16, 3)
    assert genie.encode_prompt(rgb).shape == (1, 1, 16)
    for bad in (tmp_path / "missing.png", b"not an image", np.zeros((4, 4)), 3.5, np.zeros((4, 4, 3), np.int32)):
        with pytest.raises(ValueError):
            genie.prepare_prompt(bad)


def test_infer_actions_and_rollout_validation():
    genie = tiny_genie(steps=1)
    video = _prompt(b=2, t=5)
    acts = genie.infer_actions(video)
    assert acts.shape == (2, 4) and acts.dtype == torch.long and int(acts.max()) < 4
    with pytest.raises(ValueError, match="uint8"):
        genie.infer_actions(video.float())
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        genie.rollout(video[:, :1], torch.tensor([[0, 4], [1, 1]]))
    with pytest.raises(ValueError, match="B=2"):
        genie.rollout(video[:, :1], torch.tensor([[0, 1]]))
    out = genie.rollout(video[:, :3], torch.zeros(2, 0, dtype=torch.long))
    assert out.shape == (2, 3, 16, 16, 3)
    # the World shares the rollout's machinery: the same seed gives the same frames
    w = genie.world(video[0, :1].numpy(), seed=11)
    frames = [w.step(a) for a in (1, 2)]
    roll = genie.rollout(video[:1, :1], torch.tensor([[1, 2]]), seed=11)
    assert np.array_equal(roll[0, 1].numpy(), frames[0]) and np.array_equal(roll[0, 2].numpy(), frames[1])


# ----------------------------------------------------------------------------- genie generate
def test_generate_cli_writes_gif_and_mp4(model_dir, tmp_path, capsys):
    from genieworld.cli import main

    _, path = model_dir
    png = tmp_path / "shot.png"
    Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(png)
    gif = tmp_path / "out.gif"
    assert main(["generate", str(path), "--prompt", str(png), "--actions", "0,3,3,1", "--out", str(gif),
                 "--scale", "2", "--steps", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(gif)
    with Image.open(gif) as im:
        assert im.size == (32, 32) and im.n_frames == 5
    mp4 = tmp_path / "out.mp4"
    assert main(["generate", str(path), "--prompt", str(png), "--actions", "1,2", "--out", str(mp4),
                 "--seed", "3", "--temperature", "0"]) == 0
    import av

    with av.open(str(mp4)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 3 and frames[0].shape == (64, 64, 3)


@pytest.mark.parametrize("argv,msg", [
    (["--actions", "0,4"], "action 4 is outside the codebook; this model has 4 latent actions"),
    (["--actions", "0,jump"], "'jump' is not an action"),
    (["--actions", ""], "comma-separated"),
    (["--prompt", "MISSING"], "--prompt"),
    (["--out", "x.avi"], ".gif or .mp4"),
    (["--scale", "0"], "--scale"),
])
def test_generate_cli_errors_are_one_line(model_dir, tmp_path, capsys, argv, msg):
    from genieworld.cli import main

    _, path = model_dir
    png = tmp_path / "shot.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(png)
    args = {"--prompt": str(png), "--actions": "0", "--out": str(tmp_path / "o.gif")}
    for k, v in zip(argv[::2], argv[1::2]):
        args[k] = str(tmp_path / v) if v in ("MISSING", "x.avi") else v
    cmd = ["generate", str(path)] + [x for kv in args.items() for x in kv]
    assert main(cmd) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genie: error:") and msg in err and "\n" not in err
    assert not (tmp_path / "o.gif").exists()


def test_generate_cli_bad_model_dir(tmp_path, capsys):
    from genieworld.cli import main

    assert main(["generate", str(tmp_path), "--prompt", "x.png", "--actions", "0", "--out",
                 str(tmp_path / "o.gif")]) == 2
    assert "no genie.json" in capsys.readouterr().err


def test_play_uses_play_maskgit_steps_and_eval_keeps_the_default(tmp_path):
    """`play_maskgit_steps` (fast interactive play) and `play_temperature` reach genie play / GenieEnv and the
    play-quality bench, and survive save/load; the API default stays the model's own settings."""
    import dataclasses

    import numpy as np

    from fixtures_genie import tiny_genie
    from genieworld.env import GenieEnv
    from genieworld.genie import Genie
    from genieworld.eval.play_quality import play_sampling
    from genieworld.play.server import _new_world

    g = tiny_genie(steps=6)
    assert "temperature" not in g.play_overrides() and play_sampling(g).temperature == g.sampling.temperature
    g.sampling = dataclasses.replace(g.sampling, play_maskgit_steps=2, temperature=0.0, play_temperature=0.3)
    g.save_pretrained(tmp_path / "m")
    g2 = Genie.from_pretrained(tmp_path / "m")
    assert g2.sampling.play_maskgit_steps == 2 and g2.sampling.maskgit_steps == 6
    assert g2.sampling.play_temperature == 0.3 and g2.sampling.temperature == 0.0
    prompt = np.zeros((16, 16, 3), np.uint8)
    played = _new_world(g2, None, prompt, 0).sampling
    assert (played.maskgit_steps, played.temperature) == (2, 0.3)
    env = GenieEnv(g2)
    env.reset(seed=0)
    assert (env._world.sampling.maskgit_steps, env._world.sampling.temperature) == (2, 0.3)
    assert (play_sampling(g2).maskgit_steps, play_sampling(g2).temperature) == (2, 0.3)
    default = g2.world(prompt, seed=0).sampling  # the API default stays the model's
    assert (default.maskgit_steps, default.temperature) == (6, 0.0)
