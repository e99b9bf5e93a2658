"""Distributed training on CPU (gloo, 2 processes under torchrun): DDP equals one process, resume, FSDP2.

What is compared, and why it is meaningful:

* Data.  ``WindowLoader`` gives epoch position ``p`` to rank ``p % world`` and cuts each
  rank's positions into batches, so with world 2 and per-rank batch B/2, the union of
  rank 0's and rank 1's k-th batches is exactly the single process's k-th batch of B
  (checked directly below).  DDP averages the two ranks' mean gradients, which is the
  mean gradient of the whole batch: the runs should agree up to float summation order.
* The VQ data-dependent init is the one intended difference: it seeds the codebook from
  the *first batch it sees*, i.e. rank 0's half under DDP.  The equivalence run therefore
  starts from the (seeded, identical) random codebook in both worlds, by running the real
  CLI through this file with ``VectorQuantizer._data_init`` reduced to "mark initialised"
  (``python tests/test_distributed.py train tokenizer ...``).  Dead-code restarts (also
  drawn from rank 0's batch) never trigger here (``dead_code_steps`` > steps).
* Resume and FSDP2 use the unmodified CLI (``python -m torch.distributed.run -m genieworld.cli``).

Tolerances: DDP vs one process ``atol=2e-5`` on every float tensor (a few optimizer steps
of Adam on float32; measured: 1.6e-7 while the weights moved by 8e-3); resume under DDP: bit-identical;
FSDP2 vs DDP: ``atol=1e-6`` (bit-identical when measured).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

STEPS = 6
ST = {"num_layers": 1, "d_model": 32, "num_heads": 2, "head_dim": 16, "ffn_mult": 2.0}
PRESET = {
    "tokenizer": {"image_size": 16, "patch_size": 4, "max_frames": 4, "encoder": ST, "decoder": ST,
                  "vq": {"num_codes": 32, "code_dim": 8, "dead_code_steps": 1000}},
    "tokenizer_train": {"steps": STEPS, "batch_size": 4, "seq_len": 4, "lr": 2e-3, "min_lr": 2e-4,
                        "warmup_steps": 2, "checkpoint_every": 100, "log_every": 1, "seed": 3},
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from genieworld.data.synthetic import make_synthetic_store

    d = tmp_path_factory.mktemp("dist")
    make_synthetic_store(d / "store", episodes=4, length=12, size=16, seed=0)
    (d / "preset.json").write_text(json.dumps(PRESET))
    return d


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", GENIEWORLD_NO_PROGRESS="1")
    env.pop("RANK", None), env.pop("WORLD_SIZE", None), env.pop("LOCAL_RANK", None)
    return env


def _train_args(d: Path, out: str, *extra) -> list[str]:
    return ["train", "tokenizer", "--data", str(d / "store"), "--out", str(d / out), "--preset",
            str(d / "preset.json"), "--no-progress", *extra]


def _run(cmd: list[str], timeout: int = 150) -> str:
    p = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-6000:]}")
    return p.stdout + p.stderr


def torchrun(*args) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]


def cli(d, out, *extra, world=2, no_data_init=False) -> str:
    target = [__file__] if no_data_init else ["-m", "genieworld.cli"]
    if world == 1:
        return _run([sys.executable, *target, *_train_args(d, out, *extra)])
    return _run(torchrun(*target, *_train_args(d, out, *extra)))


def weights(d: Path, out: str) -> dict[str, torch.Tensor]:
    return load_file(str(d / out / "tokenizer" / "model.safetensors"))


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


# ----------------------------------------------------------------------------- data split
def test_rank_batches_union_to_the_single_process_batch(setup):
    from genieworld.data.loader import WindowLoader

    one = WindowLoader(setup / "store", seq_len=4, batch_size=4, seed=3)
    ranks = [WindowLoader(setup / "store", seq_len=4, batch_size=2, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert len(one) == len(ranks[0]) == len(ranks[1])
    for k in range(3 * len(one)):  # across epoch boundaries
        e, s = one.batch_windows(k)
        single = sorted(zip(e.tolist(), s.tolist()))
        union = sorted(sum((list(zip(*[x.tolist() for x in r.batch_windows(k)])) for r in ranks), []))
        assert union == single, k


# ----------------------------------------------------------------------------- DDP == one process
def test_ddp_two_ranks_equals_one_process_with_the_same_global_batch(setup):
    cli(setup, "single", "--batch-size", "4", world=1, no_data_init=True)
    cli(setup, "ddp_eq", "--batch-size", "2", world=2, no_data_init=True)
    a, b = weights(setup, "single"), weights(setup, "ddp_eq")
    moved = max_diff(a, _init_weights(setup))
    diff = max_diff(a, b)
    print(f"DDP vs 1 process: max |diff| {diff:.3g}, weights moved {moved:.3g}")
    assert moved > 1e-3, "training should have moved the weights"
    assert diff < 2e-5, f"DDP (2 x batch 2) differs from 1 x batch 4 by {diff} (weights moved by {moved})"


def _init_weights(d: Path) -> dict:
    from dataclasses import replace

    from genieworld.config import load_preset
    from genieworld.train.tokenizer_task import TokenizerTask
    from genieworld.utils import seed_everything

    p = load_preset(str(d / "preset.json"))
    seed_everything(PRESET["tokenizer_train"]["seed"])
    t = TokenizerTask(replace(p.tokenizer, max_frames=max(p.tokenizer.max_frames, 4)))
    return {k: v.detach() for k, v in t.tokenizer.state_dict().items()}


# ----------------------------------------------------------------------------- resume under DDP, FSDP2
def test_ddp_resume_and_fsdp2(setup):
    cli(setup, "ddp_full")
    out = cli(setup, "ddp_resumed", "--stop-after", "3")
    assert "stopped at step 3/" in out
    out = cli(setup, "ddp_resumed")
    assert "resumed" in out and "done: 6 steps" in out
    full, resumed = weights(setup, "ddp_full"), weights(setup, "ddp_resumed")
    assert max_diff(full, resumed) == 0.0, "DDP stop + resume must equal the uninterrupted DDP run"
    # a different world size (data order) or --fsdp (checkpoint layout) is refused with a clear message
    p = subprocess.run([sys.executable, "-m", "genieworld.cli", *_train_args(setup, "ddp_resumed")], env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "world_size: 2 there, 1 here" in p.stderr, p.stderr[-2000:]

    # FSDP2 (fully_shard) on gloo/CPU: 3 steps, checkpoint, resume from it, finish, export.
    out = cli(setup, "fsdp", "--fsdp", "--stop-after", "3")
    assert "stopped at step 3/" in out
    ck = setup / "fsdp" / "checkpoints" / "step_00000003"
    sd = load_file(str(ck / "model.safetensors"))  # full, unsharded tensors: loadable without torch.distributed
    ddp_sd = load_file(str(setup / "ddp_resumed" / "checkpoints" / "step_00000003" / "model.safetensors"))
    assert {k: v.shape for k, v in sd.items()} == {k: v.shape for k, v in ddp_sd.items()}
    assert max_diff(sd, ddp_sd) < 1e-6
    out = cli(setup, "fsdp", "--fsdp")
    assert "resumed" in out and "done: 6 steps" in out
    fsdp = weights(setup, "fsdp")
    assert max_diff(fsdp, full) < 1e-6, "FSDP2 should train like DDP"
    assert not torch.equal(fsdp["vq.codebook"], _init_weights(setup)["vq.codebook"]), \
        "the VQ data-dependent init must survive FSDP2 (codebooks are kept replicated)"


# ----------------------------------------------------------------------------- worker entry point
def _main_without_vq_data_init(argv: list[str]) -> int:
    """The real ``genie`` CLI, except the VQ codebook keeps its seeded random init (see module docstring)."""
    from genieworld.cli import main
    from genieworld.nn.quantizer import VectorQuantizer

    def mark_only(self, z_nd):
        self.initialized.fill_(1)

    VectorQuantizer._data_init = mark_only
    return main(argv)


if __name__ == "__main__":
    sys.exit(_main_without_vq_data_init(sys.argv[1:]))
