"""Training throughput of the tokenizer, the latent action model and the dynamics model; prints JSON.

    python bench/bench_train.py --component tokenizer --preset cpu --steps 3
    python bench/bench_train.py --component all --preset tiny --batch-sizes 1,2,4,8
    python bench/bench_train.py --component tokenizer --preset cpu --profile      # where the time goes
    python bench/bench_train.py --component dynamics --preset coinrun-paper --device cuda --precision bf16

Each step is the real ``Trainer._train_step`` (AdamW, grad clip, optional bf16 autocast /
torch.compile / activation checkpointing) on a fixed random uint8 batch, so data loading
is excluded (``bench_data.py`` measures that).  One untimed warm-up step first (VQ
data-dependent init, oneDNN/cuBLAS plans, compilation).

Reported per configuration: seconds per step, frames/s, tokens/s, model FLOPs per step
(analytic, from the config: see ``bench/common.py``) and the same counted by
``torch.utils.flop_counter.FlopCounterMode`` on one extra step, achieved FLOP/s, and that
as a fraction of the fp32 (or bf16) square-matmul peak measured in the same process with
the same thread count, before and after the timed steps (the larger is used: on a shared
machine this keeps the fraction conservative).

``dynamics`` is the full co-training step of ``genieworld.train.dynamics_task``
(frozen tokenizer encode + LAM + MaskGIT dynamics) on a random-init tokenizer.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402  (puts src/ on sys.path)
from common import emit  # noqa: E402

from genieworld.config import load_preset  # noqa: E402
from genieworld.train.task import TrainTask  # noqa: E402

COMPONENTS = ("tokenizer", "lam", "dynamics")


class LAMTask(TrainTask):
    """The LAM trained alone (its loss is MSE + VQ): a bench-only task."""

    component = "lam"

    def __init__(self, cfg):
        super().__init__()
        from genieworld.lam import LatentActionModel

        self.lam = LatentActionModel(cfg)

    def training_step(self, batch, step):
        _, info = self.lam(batch["frames"])
        return info["loss"], {"loss": float(info["loss"].detach())}

    def model_configs(self):
        from dataclasses import asdict

        return {"lam": asdict(self.lam.cfg)}


def build_task(component: str, preset, seq_len: int, tmp: Path):
    """(task, model configs used for the analytic FLOP count, train config)."""
    if component == "tokenizer":
        from genieworld.train.tokenizer_task import TokenizerTask

        tok = replace(preset.tokenizer, max_frames=max(preset.tokenizer.max_frames, seq_len))
        return TokenizerTask(tok), preset.tokenizer_train
    if component == "lam":
        lam = replace(preset.lam, max_frames=max(preset.lam.max_frames, seq_len))
        return LAMTask(lam), preset.dynamics_train
    if component == "dynamics":
        from genieworld.genie import save_component
        from genieworld.tokenizer import VideoTokenizer
        from genieworld.train.dynamics_task import build_dynamics_task

        tok_dir = tmp / "tokenizer"
        if not (tok_dir / "model.safetensors").exists():
            save_component(VideoTokenizer(preset.tokenizer), preset.tokenizer, tok_dir)
        return build_dynamics_task(preset, str(tok_dir), seq_len), preset.dynamics_train
    raise ValueError(component)


def analytic_flops(component: str, task, batch: int, seq_len: int) -> dict:
    if component == "tokenizer":
        return common.tokenizer_train_flops(task.tokenizer.cfg, batch, seq_len)
    if component == "lam":
        return common.lam_train_flops(task.lam.cfg, batch, seq_len)
    # dynamics co-training: frozen tokenizer encode (forward only) + LAM step + dynamics step
    tok = getattr(task, "tokenizer", None)
    lam = getattr(task, "lam", None)
    dyn = getattr(task, "dynamics", None)
    parts = []
    if tok is not None:
        parts.append(common.tokenizer_encode_flops(tok.cfg, batch, seq_len))
    if lam is not None:
        parts.append(common.lam_train_flops(lam.cfg, batch, seq_len))
    if dyn is not None:
        parts.append(common.dynamics_model_train_flops(dyn.cfg, batch, seq_len))
    out = common.combine_flops(*parts)
    if tok is not None:
        out["tokens"] = batch * seq_len * tok.cfg.tokens_per_frame
    return out


def synthetic_batches(batch: int, seq_len: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (batch, seq_len, size, size, 3), dtype=torch.uint8, generator=g)
    actions = torch.full((batch, seq_len - 1), -1, dtype=torch.long)
    while True:
        yield {"frames": frames, "actions": actions}


def profile_step(trainer, data_iter, device, top: int = 25) -> dict:
    """torch.profiler on one step: self time grouped by kind of op, and the top ops."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts, record_shapes=True) as prof:
        trainer._train_step(data_iter)
        common.sync(device)
    use_cuda = device.type == "cuda"
    rows = []
    for e in prof.key_averages(group_by_input_shape=True):
        self_us = e.self_device_time_total if use_cuda else e.self_cpu_time_total
        if self_us > 0:
            rows.append((self_us, e.key, e.count, str(e.input_shapes)[:160]))
    total = sum(r[0] for r in rows) or 1.0
    groups: dict[str, float] = {}
    for us, key, _, _ in rows:
        groups[_op_group(key)] = groups.get(_op_group(key), 0.0) + us
    rows.sort(reverse=True)
    return {
        "total_self_ms": round(total / 1e3, 1),
        "by_group_pct": {k: round(100 * v / total, 1) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "top_ops": [{"op": k, "calls": c, "self_ms": round(us / 1e3, 2), "pct": round(100 * us / total, 1),
                     "shapes": s} for us, k, c, s in rows[:top]],
    }


def _op_group(key: str) -> str:
    k = key.lower()
    if any(x in k for x in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "gemm", "matmul")):
        return "matmul"
    if "attention" in k or "flash" in k or "sdpa" in k:
        return "attention"
    if any(x in k for x in ("copy_", "clone", "contiguous", "aten::cat", "reshape", "_unsafe_view", "as_strided",
                            "permute", "transpose")):
        return "copy/layout"
    if "norm" in k:
        return "norm"
    if "gelu" in k:
        return "gelu"
    if any(x in k for x in ("adam", "_foreach", "optimizer", "clip_grad")):
        return "optimizer"
    if any(x in k for x in ("mul", "add", "sub", "div", "sigmoid", "exp", "log", "pow", "mean", "sum", "where",
                            "neg", "cos", "sin", "fill", "zero", "sqrt", "rsqrt", "sqrt")):
        return "elementwise/reduce"
    return "other"


def run_one(component: str, args, preset, batch: int, seq_len: int, device: torch.device, tmp: Path,
            peak_before: dict) -> dict:
    from genieworld.train import trainer as trainer_mod
    from genieworld.train.trainer import Trainer

    # the Trainer picks CUDA whenever it exists; the bench honours --device (single process here)
    trainer_mod.setup_distributed = lambda: (0, 1, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    task, train_base = build_task(component, preset, seq_len, tmp)
    cfg = replace(train_base, batch_size=batch, seq_len=seq_len, precision=args.precision, compile=args.compile,
                  activation_checkpointing=args.activation_checkpointing, grad_accum=1, warmup_steps=1)
    size = preset.tokenizer.image_size
    trainer = Trainer(task, synthetic_batches(batch, seq_len, size), cfg, tmp / f"run-{component}",
                      {"component": component}, progress=False)
    it = iter(trainer.loader)
    params = sum(p.numel() for p in task.parameters() if p.requires_grad)
    timing = common.time_fn(lambda: trainer._train_step(it), device, warmup=args.warmup, repeat=args.steps)
    flops = analytic_flops(component, task, batch, seq_len)
    counted = None
    if not args.no_flop_counter:
        with common.flop_counter() as fc:
            trainer._train_step(it)
        counted = fc.get_total_flops()
    prof = profile_step(trainer, it, device) if args.profile else None
    peak_after = common.matmul_peak(device, _peak_dtype(device, args.precision))
    peak = max(p for p in (peak_before["gflops"], peak_after["gflops"]) if p)
    step_s = timing["median_s"]
    achieved = flops["train_step"] / step_s / 1e9
    out = {
        "bench": "train", "component": component, "preset": preset.name, "device": common.device_info(device),
        "precision": common.resolve_precision(device, args.precision), "compile": args.compile,
        "tf32": bool(device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32),
        "activation_checkpointing": args.activation_checkpointing, "batch_size": batch, "seq_len": seq_len,
        "params": params, "steps_timed": len(timing["samples_s"]), "step_s": round(step_s, 4),
        "step_s_min": round(timing["min_s"], 4), "step_samples_s": timing["samples_s"],
        "frames_per_s": round(batch * seq_len / step_s, 2), "tokens_per_s": round(flops["tokens"] / step_s, 1),
        "tokens_per_step": flops["tokens"],
        "model_gflop_per_step": round(flops["train_step"] / 1e9, 2),
        "model_gflop_by_part": {k: round(v / 1e9, 2) for k, v in flops["train_step_by_part"].items()},
        "flop_counter_gflop_per_step": round(counted / 1e9, 2) if counted is not None else None,
        "analytic_over_counter": round(flops["train_step"] / counted, 4) if counted else None,
        # FlopCounterMode also counts flash attention's recomputation of QK^T in backward:
        "analytic_incl_flash_recompute_over_counter": (
            round(common.with_flash_recompute(flops) / counted, 4) if counted else None),
        "achieved_gflops": round(achieved, 1),
        "matmul_peak_gflops": {"before": peak_before, "after": peak_after, "used": peak},
        "fraction_of_peak": round(achieved / peak, 3),
    }
    if device.type == "cuda":
        out["cuda_max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    if prof is not None:
        out["profile"] = prof
    return out


def _peak_dtype(device: torch.device, precision: str) -> torch.dtype:
    return torch.bfloat16 if common.resolve_precision(device, precision) == "bf16" else torch.float32


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--component", default="tokenizer", choices=COMPONENTS + ("all",))
    ap.add_argument("--preset", default="cpu", help="tiny | cpu | coinrun-paper or a preset .json")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch-size", type=int, help="sequences per step (default: the preset's)")
    ap.add_argument("--batch-sizes", help="comma list: sweep batch sizes (overrides --batch-size)")
    ap.add_argument("--seq-len", type=int, help="frames per window (default: the preset's)")
    ap.add_argument("--seq-lens", help="comma list: sweep sequence lengths")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--threads", help="torch.set_num_threads; a comma list runs every configuration at each "
                    "(default: torch's). On a shared CPU, threads > free cores is oversubscription: "
                    "OpenMP's spin-waiting makes every small op wait for a descheduled thread")
    ap.add_argument("--profile", action="store_true", help="add a torch.profiler breakdown of one step")
    ap.add_argument("--no-flop-counter", action="store_true", help="skip the FlopCounterMode cross-check step")
    args = ap.parse_args(argv)
    thread_counts = [int(x) for x in args.threads.split(",")] if args.threads else [torch.get_num_threads()]
    device = common.pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    preset = load_preset(args.preset)
    comps = COMPONENTS if args.component == "all" else (args.component,)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        for comp in comps:
            base = preset.tokenizer_train if comp == "tokenizer" else preset.dynamics_train
            batches = [int(x) for x in args.batch_sizes.split(",")] if args.batch_sizes else [
                args.batch_size or base.batch_size]
            seqs = [int(x) for x in args.seq_lens.split(",")] if args.seq_lens else [args.seq_len or base.seq_len]
            for nt in thread_counts:
                torch.set_num_threads(nt)
                for t in seqs:
                    for b in batches:
                        peak_before = common.matmul_peak(device, _peak_dtype(device, args.precision))
                        try:
                            r = run_one(comp, args, preset, b, t, device, Path(tmp), peak_before)
                        except (ImportError, AttributeError) as e:
                            r = {"bench": "train", "component": comp, "preset": preset.name, "skipped": str(e),
                                 "device": common.device_info(device)}
                        emit(r)
                        results.append(r)
    ok = [r for r in results if "fraction_of_peak" in r]
    if len(ok) > 1:
        keys = ("component", "threads", "batch_size", "seq_len", "step_s", "frames_per_s", "achieved_gflops",
                "fraction_of_peak")
        for r in ok:
            r["threads"] = r["device"]["threads"]
        best = max(ok, key=lambda r: r["fraction_of_peak"])
        emit({"bench": "train_summary", "device": common.device_info(device), "preset": preset.name,
              "best": {k: best[k] for k in keys}, "all": [{k: r[k] for k in keys} for r in ok]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
