"""Hostile and damaged inputs (issue 17): each class of attack gets one clear line, is bounded, or falls back.

* the CLI error boundary: an expected failure is one ``genie: error: ...`` line naming the file (exit 2),
  a bug is one line pointing to ``--debug`` (exit 1), ``--debug`` shows the traceback;
* config bounds: every field of every config dataclass is type- and range-checked when a preset or
  model directory is read, before anything is built (tried on every field, not only the examples);
* weights of the wrong dtype or with non-finite values are refused, naming the tensor;
* resume skips a damaged checkpoint (truncated weights or trainer state, garbage state.json) for the
  newest one that loads, says so, and never deletes it; ``latest`` cannot lead out of the run;
* an episode store whose manifest disagrees with its shard index (or is consistent but absurd) fails
  ``genie data info --verify`` and reading gives a StoreError, never an IndexError.

Everything runs on 16x16 random models, a toy trainer task and 8x8 stores: seconds in all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import struct
import typing
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from genieworld import config as C
from genieworld.cli import main
from genieworld.errors import UserError

pytestmark = pytest.mark.timeout(120)


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A saved random 16x16 Genie (fixtures_genie.tiny_genie)."""
    from fixtures_genie import tiny_genie

    out = tmp_path_factory.mktemp("hostile") / "model"
    tiny_genie().save_pretrained(out)
    return out


@pytest.fixture()
def model(model_dir, tmp_path) -> Path:
    """A private copy of ``model_dir`` to damage."""
    dst = tmp_path / "model"
    shutil.copytree(model_dir, dst)
    return dst


def edit_json(path: Path, fn) -> None:
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def run_cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("genie: error: "), err
    assert "Traceback" not in err
    return lines[0]


def generate(capsys, model: Path, tmp_path: Path) -> tuple[int, str]:
    return run_cli(capsys, "generate", model, "--prompt", tmp_path / "none.png", "--actions", "0",
                   "--out", tmp_path / "out.gif")


def load_genie(model: Path):
    from genieworld.genie import Genie

    return Genie.from_pretrained(model)


# ------------------------------------------------------------------------------------------------ the CLI boundary
@pytest.mark.parametrize("damage, named", [
    (lambda m: (m / "genie.json").write_bytes(b"\xff\xfe{\x00 not utf-8"), "genie.json"),
    (lambda m: edit_json(m / "genie.json", lambda d: d.update(format_version="abc")), "format_version"),
    (lambda m: (m / "actions.json").write_text("[" * 100_000 + "]" * 100_000), "actions.json"),
    (lambda m: (m / "dynamics" / "config.json").write_bytes(b"{\"num_codes\": \xc3\x28}"), "dynamics/config.json"),
    (lambda m: (m / "tokenizer" / "model.safetensors").write_bytes(
        (m / "tokenizer" / "model.safetensors").read_bytes()[:200]), "tokenizer/model.safetensors"),
])
def test_damaged_model_files_give_one_line(model, tmp_path, capsys, damage, named):
    damage(model)
    rc, err = generate(capsys, model, tmp_path)
    assert rc == 2
    assert named in one_error_line(err)


def test_unexpected_errors_point_to_debug(monkeypatch, capsys, tmp_path):
    from genieworld.commands import generate as gen_cmd

    def boom(args):
        raise TypeError("something internal")

    monkeypatch.setattr(gen_cmd, "run_generate", boom)
    argv = ["generate", "m", "--prompt", "p.png", "--actions", "0", "--out", tmp_path / "o.gif"]
    rc, err = run_cli(capsys, *argv)
    assert rc == 1
    line = one_error_line(err)
    assert "TypeError" in line and "--debug" in line
    rc, err = run_cli(capsys, *argv, "--debug")
    assert rc == 1 and "Traceback" in err and "something internal" in err
    rc, err = run_cli(capsys, "--debug", *argv)
    assert rc == 1 and "Traceback" in err


def test_expected_errors_under_debug_show_the_traceback_too(model, tmp_path, capsys):
    (model / "genie.json").write_bytes(b"\xff")
    rc, err = run_cli(capsys, "generate", model, "--prompt", tmp_path / "p.png", "--actions", "0",
                      "--out", tmp_path / "o.gif", "--debug")
    assert rc == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("genie: error: ")


# ------------------------------------------------------------------------------------------------ config bounds
def config_classes() -> list[type]:
    seen, todo = [], [C.Preset]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.append(cls)
        todo += [t for t in typing.get_type_hints(cls).values() if dataclasses.is_dataclass(t)]
    return seen


def scalar_fields():
    """(path, annotation) of every scalar field under Preset, e.g. ("dynamics.transformer.num_layers", int)."""
    out = []

    def walk(cls, prefix):
        for name, typ in typing.get_type_hints(cls).items():
            if dataclasses.is_dataclass(typ):
                walk(typ, f"{prefix}{name}.")
            else:
                out.append((f"{prefix}{name}", typ))
    walk(C.Preset, "")
    return out


def with_value(path: str, value) -> dict:
    d = C.to_dict(C.load_preset("tiny"))
    node = d
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    return d


def test_every_numeric_and_choice_field_has_an_explicit_bound():
    missing = []
    for cls in config_classes():
        bounds = C.FIELD_BOUNDS.get(cls)
        assert bounds is not None, f"{cls.__name__} has no entry in FIELD_BOUNDS"
        for name, typ in typing.get_type_hints(cls).items():
            base = [a for a in typing.get_args(typ) if a is not type(None)] or [typ]
            if base[0] in (int, float) and name not in bounds:
                missing.append(f"{cls.__name__}.{name}")
        assert set(bounds) <= set(typing.get_type_hints(cls)), f"{cls.__name__}: bounds for unknown fields"
    assert not missing, f"fields without a bound in config.FIELD_BOUNDS: {missing}"


def test_shipped_presets_are_within_bounds():
    for name in C.PRESET_NAMES:
        C.load_preset(name)
    history = (C.configs_dir() / "previous" / "README.md").read_text()
    for path in sorted((C.configs_dir() / "previous").glob("*.json")):
        try:
            C.load_preset(str(path))
        except C.ConfigError as e:  # it needs a removed option: the README sends it to the commit that runs it
            commit = str(e).rsplit(" ", 1)[-1]
            assert "this option was removed" in str(e) and f"| `{path.name}` |" in history, str(e)
            assert history.split(f"| `{path.name}` |")[1].split("\n")[0].rstrip(" |").endswith(commit), str(e)


def hostile_values(typ):
    base = [a for a in typing.get_args(typ) if a is not type(None)] or [typ]
    t = base[0]
    if t is bool:
        return [1, "yes", None]
    if t is str:
        return [3, "x" * 10_000, ["conv"]]
    vals = ["abc", True, 10**12, -10**12, float("nan"), float("inf"), [1], {"a": 1}]
    if t is int:
        vals.append(2.5)
    if type(None) not in typing.get_args(typ):
        vals.append(None)
    return vals


@pytest.mark.parametrize("path, typ", scalar_fields(), ids=[p for p, _ in scalar_fields()])
def test_every_field_refuses_hostile_values_naming_itself(path, typ):
    leaf = path.split(".")[-1]
    for value in hostile_values(typ):
        if leaf == "name" and isinstance(value, str) and len(value) < 256:
            continue
        with pytest.raises(C.ConfigError) as e:
            C.from_dict(C.Preset, with_value(path, value), where="preset.json")
        msg = str(e.value)
        assert msg.startswith("preset.json: ") and path in msg, (value, msg)


@pytest.mark.parametrize("path, value, words", [
    ("dynamics.transformer.num_layers", 100_000, "above the limit"),
    ("sampling.maskgit_steps", 1e9, "integer"),
    ("sampling.maskgit_steps", 10**9, "above the limit"),
    ("sampling.temperature", -1, "at least 0"),
    ("tokenizer.encoder.d_model", -4, "at least 1"),
    ("tokenizer.encoder.d_model", "abc", "integer"),
    ("tokenizer.patch_size", 5, "multiple"),
    ("dynamics.mask_rate_max", 0.3, "above mask_rate_max"),
    ("lam.arch", "rnn", "one of"),
    ("lam.conv.nce_weight", 2e6, "above the limit"),
    ("lam_train.eval_every", -1, "at least 0"),
    ("tokenizer_train.min_lr", 1.0, "above lr"),
])
def test_issue_examples(path, value, words):
    with pytest.raises(C.ConfigError, match=words) as e:
        C.from_dict(C.Preset, with_value(path, value), where="p.json")
    assert path.rsplit(".", 1)[0] in str(e.value)


def test_too_many_parameters_are_refused_before_building():
    d = with_value("dynamics.transformer.d_model", 16384)
    d["dynamics"]["transformer"].update(num_layers=128, num_heads=256, head_dim=1024)
    with pytest.raises(C.ConfigError, match="parameters"):
        C.from_dict(C.Preset, d)


@pytest.mark.parametrize("part, key, value, named", [
    ("dynamics", ("transformer", "num_layers"), 100_000, "transformer.num_layers"),
    ("tokenizer", ("encoder", "d_model"), -4, "encoder.d_model"),
    ("tokenizer", ("encoder", "d_model"), "abc", "encoder.d_model"),
    ("lam", ("vq", "num_codes"), 0, "vq.num_codes"),
    ("lam", ("arch",), "conv", None),  # a valid field that no longer fits the weights: refused from the header
])
def test_model_dir_configs_are_bounded(model, part, key, value, named):
    from genieworld.genie import ModelDirError

    def set_(d):
        node = d
        for k in key[:-1]:
            node = node[k]
        node[key[-1]] = value
    edit_json(model / part / "config.json", set_)
    with pytest.raises(ModelDirError) as e:
        load_genie(model)
    msg = str(e.value)
    assert f"{part}/config.json" in msg or f"{part}/model.safetensors" in msg, msg
    if named:
        assert named in msg


def test_genie_json_sampling_is_bounded(model, tmp_path, capsys):
    original = (model / "genie.json").read_text()
    for field, value in (("maskgit_steps", 10**9), ("maskgit_steps", 1e9), ("temperature", -1),
                         ("context_frames", "abc")):
        (model / "genie.json").write_text(original)
        edit_json(model / "genie.json", lambda d: d["sampling"].update({field: value}))
        rc, err = generate(capsys, model, tmp_path)
        assert rc == 2
        line = one_error_line(err)
        assert "genie.json" in line and f"sampling: {field}=" in line, line


def test_sampling_overrides_are_bounded(model_dir):
    g = load_genie(model_dir)
    with pytest.raises(C.ConfigError, match="maskgit_steps"):
        g.rollout(torch.zeros(1, 1, 16, 16, 3, dtype=torch.uint8), torch.zeros(1, 1, dtype=torch.long),
                  maskgit_steps=10**9)


def test_config_that_does_not_fit_the_weights_is_refused_before_building(model, monkeypatch):
    """num_layers 100 (within bounds) with one layer of weights: refused from the header, before the
    model is built for real (the real constructor is never called)."""
    from genieworld import dynamics
    from genieworld.genie import ModelDirError

    edit_json(model / "dynamics" / "config.json", lambda d: d["transformer"].update(num_layers=100))
    real_init = dynamics.DynamicsModel.__init__
    built = []

    def spy(self, cfg):
        built.append(torch.empty(0).device.type)  # the default device the model would be built on
        real_init(self, cfg)

    monkeypatch.setattr(dynamics.DynamicsModel, "__init__", spy)
    with pytest.raises(ModelDirError, match="missing"):
        load_genie(model)
    assert built == ["meta"], built


# ------------------------------------------------------------------------------------------------ weights
@pytest.mark.parametrize("change, words", [
    (lambda t: t.half(), "float16"),
    (lambda t: t.long(), "int64"),
    (lambda t: t.fill_(float("nan")), "non-finite"),
    (lambda t: t.index_fill_(0, torch.tensor([0]), float("inf")), "non-finite"),
])
def test_wrong_dtype_or_non_finite_weights_are_refused(model, change, words):
    from genieworld.genie import ModelDirError

    path = model / "dynamics" / "model.safetensors"
    sd = load_file(str(path))
    name = next(k for k, v in sd.items() if v.is_floating_point() and v.ndim == 2)
    sd[name] = change(sd[name].clone())
    save_file(sd, str(path))
    with pytest.raises(ModelDirError, match=words) as e:
        load_genie(model)
    assert repr(name) in str(e.value)


# ------------------------------------------------------------------------------------------------ checkpoints
class ToyTask(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def training_step(self, batch, step):
        loss = ((self.lin(batch["x"]) - batch["y"]) ** 2).mean()
        return loss, {"loss": loss.item()}

    def model_configs(self):
        return {"toy": {"width": 4}}

    def export(self, run):
        (Path(run) / "toy").mkdir(exist_ok=True)


class ToyLoader:
    """Resumable like WindowLoader: refuses a state saved with another batch size."""

    def __init__(self, batch_size=2):
        self.batch_size, self.k = batch_size, 0

    def __iter__(self):
        while True:
            g = torch.Generator().manual_seed(self.k)
            self.k += 1
            yield {"x": torch.randn(self.batch_size, 4, generator=g), "y": torch.randn(self.batch_size, 1, generator=g)}

    def state_dict(self):
        return {"step": self.k, "batch_size": self.batch_size}

    def load_state_dict(self, state):
        if state["batch_size"] != self.batch_size:
            raise ValueError(f"loader state has batch_size={state['batch_size']} but this loader has "
                             f"{self.batch_size}")
        self.k = int(state["step"])


def toy_fit(run: Path, steps: int, batch_size: int = 2):
    from genieworld.train.trainer import Trainer

    torch.manual_seed(0)
    cfg = C.TrainConfig(steps=steps, batch_size=batch_size, warmup_steps=0, checkpoint_every=2, log_every=1)
    trainer = Trainer(ToyTask(), ToyLoader(batch_size), cfg, run, {"component": "toy"}, progress=False)
    trainer.fit()
    return trainer


def truncate(p: Path):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


@pytest.mark.parametrize("damage, reason", [
    (lambda ck: truncate(ck / "model.safetensors"), "model.safetensors"),
    (lambda ck: truncate(ck / "trainer.pt"), "trainer.pt"),
    (lambda ck: (ck / "state.json").write_text("{garbage"), "state.json"),
    (lambda ck: edit_json(ck / "state.json", lambda d: d.update(step="abc")), "state.json"),
    (lambda ck: edit_json(ck / "state.json", lambda d: d["rng"].update(numpy=[1, 2])), "state.json"),
])
def test_resume_falls_back_past_a_damaged_latest_checkpoint(tmp_path, capsys, damage, reason):
    run = tmp_path / "run"
    toy_fit(run, 6)  # step_2, step_4, step_6
    ck = run / "checkpoints"
    assert sorted(p.name for p in ck.glob("step_*")) == ["step_00000002", "step_00000004", "step_00000006"]
    damage(ck / "step_00000006")
    damaged_bytes = {p.name: p.read_bytes() for p in (ck / "step_00000006").iterdir()}
    capsys.readouterr()
    trainer = toy_fit(run, 8)
    out = capsys.readouterr()
    assert "resumed" in out.out and "step_00000004" in out.out, out
    assert "skipping checkpoint step_00000006" in out.err and reason in out.err, out.err
    assert trainer.step == 8
    kept = ck / "damaged-step_00000006"  # set aside when step 6 was saved again, never deleted
    assert {p.name: p.read_bytes() for p in kept.iterdir()} == damaged_bytes
    assert (ck / "step_00000006" / "state.json").exists()


def test_latest_pointer_cannot_leave_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    toy_fit(run, 4)
    evil = tmp_path / "evilck"
    shutil.copytree(run / "checkpoints" / "step_00000004", evil)
    edit_json(evil / "state.json", lambda d: d.update(step=3))
    for pointer in ("../../evilck", str(evil), "step_00000004/../../../evilck"):
        (run / "checkpoints" / "latest").write_text(pointer + "\n")
        capsys.readouterr()
        from genieworld.train.checkpoint import latest_checkpoint

        assert latest_checkpoint(run) == run / "checkpoints" / "step_00000004"
    # a symlinked checkpoint folder pointing outside is not a candidate either
    (run / "checkpoints" / "step_00000099").symlink_to(evil)
    trainer = toy_fit(run, 6)
    assert "from step_00000004" in capsys.readouterr().out and trainer.step == 6


def test_no_loadable_checkpoint_is_one_clear_error(tmp_path):
    from genieworld.weights import CheckpointError

    run = tmp_path / "run"
    toy_fit(run, 4)
    for ck in (run / "checkpoints").glob("step_*"):
        truncate(ck / "trainer.pt")
    with pytest.raises(CheckpointError, match="no checkpoint could be loaded"):
        toy_fit(run, 6)
    assert len(list((run / "checkpoints").glob("step_*"))) == 2  # nothing deleted


def test_resuming_with_another_batch_size_is_a_user_error(tmp_path):
    run = tmp_path / "run"
    toy_fit(run, 2)
    with pytest.raises(UserError, match="batch_size=2.*--batch-size"):
        toy_fit(run, 4, batch_size=3)


# ------------------------------------------------------------------------------------------------ episode stores
def small_store(path: Path, lengths=(41, 20)) -> Path:
    from genieworld.data.store import EpisodeWriter

    rng = np.random.default_rng(0)
    with EpisodeWriter(path, resolution=(8, 8), fps=10, num_actions=3) as w:
        for n in lengths:
            w.add_episode(rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8), rng.integers(0, 3, n - 1))
    return path


def rewrite_shard_index(store: Path, fn) -> None:
    """Apply ``fn`` to the first shard's index and rewrite the shard *consistently*: new trailer,
    and the manifest's size, sha256 and lengths updated to match (a careful attacker)."""
    from genieworld.data.store import _TRAILER

    m = json.loads((store / "manifest.json").read_text())
    s = m["shards"][0]
    data = (store / s["file"]).read_bytes()
    off, length, end = _TRAILER.unpack(data[-_TRAILER.size:])
    index = json.loads(zlib.decompress(data[off:off + length]))
    fn(index)
    blob = zlib.compress(json.dumps(index).encode())
    new = data[:off] + blob + struct.pack("<QQ8s", off, len(blob), end)
    (store / s["file"]).write_bytes(new)
    s.update(bytes=len(new), sha256=hashlib.sha256(new).hexdigest())
    if isinstance(index.get("episodes"), list):
        for e, ie in zip(s["episodes"], index["episodes"]):
            e["length"] = ie["length"]
    s["frames"] = sum(e["length"] for e in s["episodes"])
    (store / "manifest.json").write_text(json.dumps(m))


def test_verify_catches_a_manifest_length_that_disagrees_with_the_shard(tmp_path, capsys):
    from genieworld.data.store import EpisodeStore, StoreError

    store = small_store(tmp_path / "s")
    edit_json(store / "manifest.json", lambda m: m["shards"][0]["episodes"][0].update(length=91))
    bad = EpisodeStore(store).verify_detailed()
    assert bad and "91" in bad[0][1] and "41" in bad[0][1], bad
    rc, err = run_cli(capsys, "data", "info", store, "--verify")
    assert rc == 1 and "91" in err
    with pytest.raises(StoreError, match="91"):
        EpisodeStore(store).read_frames(0, 80, 90)


def test_a_consistent_but_absurd_episode_length_fails_verify_and_reading(tmp_path, capsys):
    from genieworld.data.loader import WindowLoader
    from genieworld.data.store import EpisodeStore, StoreError

    store = small_store(tmp_path / "s")
    rewrite_shard_index(store, lambda ix: ix["episodes"][0].update(length=100_000,
                                                                    actions=[0] * 99_999))
    st = EpisodeStore(store)
    bad = st.verify_detailed()
    assert bad and "100000 frames need 6250 chunks" in bad[0][1], bad
    rc, err = run_cli(capsys, "data", "info", store, "--verify")
    assert rc == 1
    loader = WindowLoader(st, seq_len=4, batch_size=2)
    with pytest.raises(StoreError, match="chunks"):
        for _, _ in zip(range(50), loader):
            pass
    # beyond any sane length: refused when the store is opened, as one line
    rewrite_shard_index(store, lambda ix: ix["episodes"][0].update(length=10**12))
    rc, err = run_cli(capsys, "data", "info", store)
    assert rc == 2 and "manifest.json" in one_error_line(err)


def test_shard_index_disagreements_are_store_errors(tmp_path):
    from genieworld.data.store import EpisodeStore, StoreError

    cases = [
        lambda ix: ix["episodes"][0].update(offsets=ix["episodes"][0]["offsets"][::-1]),
        lambda ix: ix["episodes"][0].update(offsets=[x + 10**9 for x in ix["episodes"][0]["offsets"]]),
        lambda ix: ix["episodes"][0].update(actions=[7] * 40),
        lambda ix: ix["episodes"][0].update(actions=None),
        lambda ix: ix["episodes"].pop(),
        lambda ix: ix.update(episodes="x"),
    ]
    for i, fn in enumerate(cases):
        store = small_store(tmp_path / f"s{i}")
        rewrite_shard_index(store, fn)
        st = EpisodeStore(store)
        assert st.verify_detailed(), i
        with pytest.raises(StoreError):
            st.read_frames(0)


# ------------------------------------------------------------------------------------------------ through `genie train`
MICRO_TOKENIZER = {
    "tokenizer": {"image_size": 8, "patch_size": 4, "max_frames": 4,
                  "encoder": {"num_layers": 1, "d_model": 16, "num_heads": 2, "head_dim": 8},
                  "decoder": {"num_layers": 1, "d_model": 16, "num_heads": 2, "head_dim": 8},
                  "vq": {"num_codes": 16, "code_dim": 4, "dead_code_steps": 3}},
    "tokenizer_train": {"steps": 2, "batch_size": 2, "seq_len": 4, "lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 1,
                        "checkpoint_every": 1, "log_every": 1},
}


def train_tokenizer(capsys, tmp_path, store, *extra) -> tuple[int, str]:
    preset = tmp_path / "micro.json"
    preset.write_text(json.dumps(MICRO_TOKENIZER))
    return run_cli(capsys, "train", "tokenizer", "--data", store, "--out", tmp_path / "run", "--preset", preset,
                   "--no-progress", *extra)


def test_train_resumed_with_another_batch_size_is_one_line(tmp_path, capsys):
    store = small_store(tmp_path / "s")
    assert train_tokenizer(capsys, tmp_path, store)[0] == 0
    rc, err = train_tokenizer(capsys, tmp_path, store, "--steps", "4", "--batch-size", "3")
    assert rc == 2
    line = one_error_line(err)
    assert "batch_size=2" in line and "--batch-size" in line


def test_train_on_a_store_with_absurd_lengths_is_one_line(tmp_path, capsys):
    store = small_store(tmp_path / "s")
    rewrite_shard_index(store, lambda ix: ix["episodes"][0].update(length=100_000, actions=[0] * 99_999))
    rc, err = train_tokenizer(capsys, tmp_path, store)
    assert rc == 2 and "shard-000000.gws" in one_error_line(err) and "chunks" in err
    rewrite_shard_index(store, lambda ix: ix["episodes"][0].update(length=10**12))
    rc, err = train_tokenizer(capsys, tmp_path, store)
    assert rc == 2 and "manifest.json" in one_error_line(err)


def test_hostile_preset_is_one_line(tmp_path, capsys):
    store = small_store(tmp_path / "s")
    micro = json.loads(json.dumps(MICRO_TOKENIZER))
    micro["tokenizer"]["encoder"]["num_layers"] = 100_000
    preset = tmp_path / "hostile.json"
    preset.write_text(json.dumps(micro))
    rc, err = run_cli(capsys, "train", "tokenizer", "--data", store, "--out", tmp_path / "run", "--preset", preset)
    assert rc == 2 and "tokenizer.encoder.num_layers=100000" in one_error_line(err)


# ------------------------------------------------------------------------------------------------ huge source frames
def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_huge_source_frames_are_refused_before_decoding(tmp_path, monkeypatch):
    import av

    from genieworld.data import video

    with pytest.raises(ValueError, match="8192x8192 frames are larger than"):
        video.load_image(_png_claiming(8192, 8192))
    path = tmp_path / "v.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=10)
        s.height = s.width = 32
        s.pix_fmt = "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * i, np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    assert len(list(video.iter_video_frames(path, fps=10, size=16))) == 3
    monkeypatch.setattr(video, "MAX_SOURCE_PIXELS", 31 * 31)
    with pytest.raises(ValueError, match="32x32 frames are larger than"):
        list(video.iter_video_frames(path, fps=10, size=16))


def test_deep_prompt_index_is_ignored(tmp_path):
    from genieworld.prompts import PROMPT_INDEX, read_prompt_labels

    (tmp_path / PROMPT_INDEX).write_text("[" * 100_000 + "]" * 100_000)
    assert read_prompt_labels(tmp_path) == {}


def test_json_and_os_errors_reaching_the_boundary_are_one_line(monkeypatch, capsys, tmp_path):
    from genieworld.commands import generate as gen_cmd

    argv = ["generate", "m", "--prompt", "p.png", "--actions", "0", "--out", tmp_path / "o.gif"]
    for exc in (json.JSONDecodeError("Expecting value", "x", 0), PermissionError(13, "Permission denied", "/x/y"),
                RecursionError("maximum recursion depth exceeded"), MemoryError()):
        def boom(args, exc=exc):
            raise exc

        monkeypatch.setattr(gen_cmd, "run_generate", boom)
        rc, err = run_cli(capsys, *argv)
        assert rc == 2, (exc, err)
        one_error_line(err)
