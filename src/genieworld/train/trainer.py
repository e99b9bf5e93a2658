"""One trainer for every component.

A *task* is an ``nn.Module`` with::

    task.training_step(batch, step) -> (loss tensor, {name: float})   # the model-specific logic
    task.model_configs() -> dict                                      # JSON-able configs saved beside weights
    task.export(out_dir)                                              # write the finished model(s)

The trainer owns everything else: AdamW with linear warm-up and cosine decay,
gradient clipping and accumulation, optional bf16 autocast / torch.compile /
activation checkpointing, DistributedDataParallel (or FSDP2) under torchrun, a
progress bar, TensorBoard scalars, atomic periodic checkpoints, and resume.

Exact resume: a checkpoint stores weights, optimizer, scheduler, every RNG the
step uses and the data loader's position, so a run killed at any moment and
restarted on the same RUN folder continues bit-for-bit like an uninterrupted run
on CPU (tested in ``tests/test_trainer_resume.py``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from genieworld.config import TrainConfig
from genieworld.errors import UserError
from genieworld.train.checkpoint import (CheckpointError, checkpoint_candidates, checkpoint_dir, load_checkpoint,
                                         save_checkpoint, set_aside)
from genieworld.utils import atomic_write_text, bf16_supported, read_json


class RunMismatchError(UserError, RuntimeError):
    """RUN already holds a different run (another component, preset or data)."""


# ----------------------------------------------------------------------------- distributed
def dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


_OWN_PROCESS_GROUP = False  # True when setup_distributed() created the process group (so fit() tears it down)


def setup_distributed() -> tuple[int, int, torch.device]:
    rank, world, local = dist_info()
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        global _OWN_PROCESS_GROUP
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        _OWN_PROCESS_GROUP = True
    return rank, world, device


def teardown_distributed() -> None:
    """Destroy the process group this module created; leaving gloo's threads alive at interpreter
    exit made ranks abort ("terminate called without an active exception") after a finished run."""
    global _OWN_PROCESS_GROUP
    if _OWN_PROCESS_GROUP and dist.is_initialized():
        dist.destroy_process_group()
    _OWN_PROCESS_GROUP = False


def lr_lambda_factory(cfg: TrainConfig):
    """Multiplier on cfg.lr: linear warm-up to 1, then cosine decay to min_lr/lr at ``steps``."""
    floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0

    def f(step: int) -> float:
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def build_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, embeddings of positions and codebooks (1-D or named so)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "pos_" in name or "codebook" in name or "embed" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


#: run.json entries that must match for a run to resume (the frozen LAM by the digest of its weights)
RUN_KEYS = ("component", "preset", "model_configs", "world_size", "fsdp", "lam_digest")


def check_run_info(run: Path, run_info: dict) -> None:
    """Raise :class:`RunMismatchError` when ``run`` already holds a run that differs in one of ``RUN_KEYS``."""
    path = Path(run) / "run.json"
    if not path.exists():
        return
    old = read_json(path, RunMismatchError)
    if not isinstance(old, dict):
        raise RunMismatchError(f"{path}: not a JSON object; use another --out folder")
    for key in RUN_KEYS:
        if key in old and key in run_info and old[key] != run_info[key]:
            diffs = _diff_paths(_with_defaults(old[key]) if key == "model_configs" else old[key], run_info[key], key)
            if not diffs:
                continue
            what = "; ".join(f"{p}: {_short(a)} there, {_short(b)} here" for p, a, b in diffs[:4])
            more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
            raise RunMismatchError(
                f"{run} already holds a run with other {key}: {what}{more}. "
                "Use another --out folder, or the same settings to resume."
            )


class Trainer:
    def __init__(
        self,
        task: nn.Module,
        loader,
        cfg: TrainConfig,
        run_dir: str | Path,
        run_info: dict,
        progress: bool = True,
        stop_after: int | None = None,
    ):
        """``run_info`` (component, preset, data, ...) is written to RUN/run.json and checked on resume.

        ``stop_after``: stop (with a checkpoint) after this many optimizer steps in this process;
        used by tests and by users who train in slices.
        """
        self.rank, self.world, self.device = setup_distributed()
        self.cfg = cfg
        self.run = Path(run_dir)
        self.loader = loader
        self.progress = progress and self.rank == 0
        self.stop_after = stop_after
        # world_size and fsdp are checked on resume: the data order and the checkpoint layout depend on them
        self.run_info = dict(run_info, world_size=self.world, fsdp=bool(cfg.fsdp and self.world > 1))
        self.task = task.to(self.device)
        if cfg.activation_checkpointing:
            for m in self.task.modules():
                if hasattr(m, "activation_checkpointing"):
                    m.activation_checkpointing = True
        self._fsdp = bool(cfg.fsdp and self.world > 1)
        self._replicated: list[nn.Parameter] = []
        self.model = self._wrap(self.task)
        self.optimizer = build_optimizer(self.task, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda_factory(cfg))
        self.step = 0
        self.writer = None
        self.last_logs: dict = {}
        self._skipped: set[str] = set()  # checkpoint folders resume could not load (kept, never overwritten)

    # ------------------------------------------------------------------ setup
    def _wrap(self, task: nn.Module) -> nn.Module:
        model = task
        if self.world > 1:
            if self.cfg.fsdp:
                from torch.distributed.fsdp import fully_shard

                # An unsharded copy of the task whose parameters/buffers are meta tensors (no memory;
                # deepcopy's memo substitutes them): the export at the end of training fills it with the
                # gathered full weights (see _export_fsdp). Non-module state (e.g. a frozen tokenizer
                # held outside the module tree) is copied as is.
                import copy

                memo = {id(t): (nn.Parameter(torch.empty_like(t, device="meta"), requires_grad=t.requires_grad)
                                if isinstance(t, nn.Parameter) else torch.empty_like(t, device="meta"))
                        for t in [*task.parameters(), *task.buffers()]}
                self._export_template = copy.deepcopy(task, memo)
                for m in task.modules():
                    if type(m).__name__ == "STBlock":
                        fully_shard(m)
                # VQ codebooks stay replicated plain tensors: the quantizer rewrites them in place during
                # forward (data-dependent init, dead-code restarts), and FSDP2 would silently drop writes
                # to its temporary unsharded copy. Their gradients are averaged by hand in _train_step.
                self._replicated = [m.codebook for m in task.modules() if type(m).__name__ == "VectorQuantizer"
                                    and isinstance(getattr(m, "codebook", None), nn.Parameter)]
                fully_shard(task, ignored_params=set(self._replicated))
            else:
                model = nn.parallel.DistributedDataParallel(
                    task, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                    find_unused_parameters=False,
                )
        if self.cfg.compile:
            model = torch.compile(model)
        return model

    def _autocast(self):
        p = self.cfg.precision
        use_bf16 = p == "bf16" or (p == "auto" and self.device.type == "cuda")
        if use_bf16 and not bf16_supported(self.device):  # a clean fallback, said once
            if not getattr(self, "_said_no_bf16", False):
                print(f"[train] precision {p}: no native bf16 on {self.device.type}; training in fp32", flush=True)
                self._said_no_bf16 = True
            use_bf16 = False
        if use_bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _check_run_info(self) -> None:
        check_run_info(self.run, self.run_info)
        if self.rank == 0:
            self.run.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run / "run.json", json.dumps(self.run_info, indent=2, sort_keys=True, default=str) + "\n")

    def resume(self) -> bool:
        """Continue from the newest checkpoint that loads (:func:`checkpoint_candidates` order); one that
        does not is skipped with a message saying why and left in place (see :meth:`save`)."""
        candidates = checkpoint_candidates(self.run)
        if not candidates:
            return False
        skipped = []
        for ck in candidates:
            try:
                state = self._load_checkpoint(ck)
            except CheckpointError as e:
                skipped.append(f"{ck.name}: {e}")
                self._skipped.add(ck.name)
                if self.rank == 0:
                    print(f"warning: skipping checkpoint {ck.name}, it cannot be loaded: {e} (left in place)",
                          file=sys.stderr, flush=True)
                continue
            break
        else:
            raise CheckpointError(f"{self.run}: no checkpoint could be loaded ({'; '.join(skipped)[:2000]}); "
                                  "use another --out folder to start afresh")
        self.step = int(state["step"])
        self.wall_time = float(state.get("wall_time_s", 0.0) or 0.0)
        if state.get("data") is not None and hasattr(self.loader, "load_state_dict"):
            try:
                self.loader.load_state_dict(state["data"])
            except (ValueError, KeyError, TypeError) as e:
                raise RunMismatchError(
                    f"{self.run}: cannot resume from {ck.name}: {e}. Resume with the --data, --batch-size, "
                    "--seq-len and --seed of the run being resumed, or use another --out folder") from None
        if self.rank == 0:
            print(f"resumed {self.run} from {ck.name} (step {self.step})", flush=True)
        return True

    def _load_checkpoint(self, ck: Path) -> dict:
        if self._fsdp:
            # Checkpoints hold full (unsharded) tensors; checkpoint.py validates and reads them into
            # these stand-ins, then every rank keeps its shard via set_state_dict.
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_state_dict

            module = _StateDictView(get_model_state_dict(self.task, options=StateDictOptions(full_state_dict=True)))
            optim = _StateDictView({})
            state = load_checkpoint(ck, module, optim, self.scheduler, map_location=self.device)
            set_state_dict(self.task, self.optimizer, model_state_dict=module.loaded, optim_state_dict=optim.loaded,
                           options=StateDictOptions(full_state_dict=True))
        else:
            state = load_checkpoint(ck, self.task, self.optimizer, self.scheduler, map_location=self.device)
        return state

    # ------------------------------------------------------------------ checkpointing
    def save(self) -> None:
        module, optim = self.task, self.optimizer
        if self._fsdp:  # gather full weights + optimizer state onto rank 0 (a collective: every rank calls save)
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

            msd, osd = get_state_dict(self.task, self.optimizer,
                                      options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            module, optim = _StateDictView(msd), _StateDictView(osd)
        if self.rank != 0:
            return
        name = f"step_{self.step:08d}"
        if name in self._skipped:  # a checkpoint resume skipped: renamed, never overwritten or deleted
            kept = set_aside(checkpoint_dir(self.run) / name)
            self._skipped.discard(name)
            print(f"warning: the checkpoint {name} that could not be loaded is kept as {kept}", file=sys.stderr,
                  flush=True)
        state = {
            "data": self.loader.state_dict() if hasattr(self.loader, "state_dict") else None,
            "logs": self.last_logs,
            "train_config": asdict(self.cfg),
            "wall_time_s": self.wall_time,
        }
        save_checkpoint(self.run, self.step, module, self.task.model_configs(), optim, self.scheduler, state)

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict:
        self._check_run_info()
        self.wall_time = 0.0
        resumed = self.resume()
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run / "tb"), purge_step=self.step if resumed else None)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.cfg.steps, initial=self.step, desc=self.run_info.get("component", "train"),
                       dynamic_ncols=True, mininterval=1.0)
        data_iter = iter(self.loader)
        steps_this_process = 0
        t_last = t_said = time.perf_counter()
        said_at = 0
        try:
            while self.step < self.cfg.steps:
                logs = self._train_step(data_iter)
                self.step += 1
                steps_this_process += 1
                now = time.perf_counter()
                self.wall_time += now - t_last
                t_last = now
                self.last_logs = logs
                if self.rank == 0 and (self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps):
                    for k, v in logs.items():
                        self.writer.add_scalar(f"train/{k}", v, self.step)
                    self.writer.add_scalar("train/lr", self.scheduler.get_last_lr()[0], self.step)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(logs.items())[:4]}, refresh=False)
                if self.cfg.eval_every > 0 and (self.step % self.cfg.eval_every == 0 or self.step == self.cfg.steps):
                    self._periodic_eval()
                if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                    self.save()
                    if bar is None and self.rank == 0:  # without a progress bar, one line per checkpoint
                        rate = (now - t_said) / max(steps_this_process - said_at, 1)
                        print(f"step {self.step}/{self.cfg.steps} ({rate:.2f} s/step): "
                              + ", ".join(f"{k}={v:.4g}" for k, v in list(logs.items())[:4]), flush=True)
                        t_said, said_at = time.perf_counter(), steps_this_process
                if self.stop_after is not None and steps_this_process >= self.stop_after:
                    if self.step % self.cfg.checkpoint_every != 0:
                        self.save()
                    break
        except KeyboardInterrupt:
            if self.rank == 0:
                print(f"\ninterrupted at step {self.step}: saving a checkpoint so the run can resume", flush=True)
            self.save()
            raise
        finally:
            if bar is not None:
                bar.close()
            if self.writer is not None:
                self.writer.flush()
                self.writer.close()
        if self.step >= self.cfg.steps:
            if self._fsdp:
                self._export_fsdp()
            elif self.rank == 0:
                self.task.export(self.run)
        if self.world > 1:
            dist.barrier()
            teardown_distributed()
        return self.last_logs

    def _periodic_eval(self) -> None:
        """The task's quick check (``periodic_eval``), on rank 0, with every RNG left as it was."""
        fn = getattr(self.task, "periodic_eval", None)
        if fn is None or self.rank != 0:
            return
        with torch.random.fork_rng(devices=[]):
            scalars = fn(self.step)
        if not scalars:
            return
        for k, v in scalars.items():
            self.writer.add_scalar(f"control/{k}", v, self.step)
        with open(self.run / "control.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, **scalars}) + "\n")

    def _clip_grad_norm(self, max_norm: float):
        if not self._replicated:
            return torch.nn.utils.clip_grad_norm_(self.task.parameters(), max_norm)
        # FSDP2 with replicated codebooks: torch's clip cannot mix DTensor and plain gradients in one call.
        rep = {id(p) for p in self._replicated}
        params = [p for p in self.task.parameters() if p.grad is not None]
        grads = [p.grad for p in params]
        sq = torch.zeros((), device=self.device)
        for group in ([p.grad for p in params if id(p) not in rep], [p.grad for p in params if id(p) in rep]):
            if group:
                n = torch.nn.utils.get_total_norm(group)
                n = n.full_tensor() if hasattr(n, "full_tensor") else n
                sq = sq + n.float() ** 2
        total = sq.sqrt()
        coef = min(1.0, max_norm / (float(total) + 1e-6))
        if coef < 1.0:
            for g in grads:
                g.mul_(coef)
        return total

    def _export_fsdp(self) -> None:
        """Export under FSDP2: gather full weights (collective), load them into the unsharded skeleton on rank 0."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.task, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.rank != 0:
            return
        plain = self._export_template
        live = dict(self.task.named_buffers())  # buffers are never sharded: take them (persistent or not) as they are
        for prefix, m in plain.named_modules():
            prefix = prefix + "." if prefix else ""
            for n, p in list(m._parameters.items()):
                if p is not None:
                    m._parameters[n] = nn.Parameter(full[prefix + n].to("cpu"), requires_grad=False)
            for n, b in list(m._buffers.items()):
                if b is not None:
                    m._buffers[n] = live[prefix + n].detach().to("cpu").clone()
        plain.export(self.run)

    def _train_step(self, data_iter) -> dict:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        accum = max(1, self.cfg.grad_accum)
        agg: dict[str, float] = {}
        for micro in range(accum):
            batch = next(data_iter)
            sync = micro == accum - 1 or not isinstance(self.model, nn.parallel.DistributedDataParallel)
            ctx = contextlib.nullcontext() if sync else self.model.no_sync()
            with ctx, self._autocast():
                loss, logs = self._forward(batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"non-finite loss at step {self.step} ({logs}); the last good checkpoint is intact, "
                        "lower the learning rate or check the data"
                    )
                (loss / accum).backward()
            for k, v in logs.items():
                agg[k] = agg.get(k, 0.0) + float(v) / accum
        for p in self._replicated:  # FSDP-ignored parameters: average their gradients like DDP would
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(self.world)
        if self.cfg.grad_clip > 0:
            gn = self._clip_grad_norm(self.cfg.grad_clip)
            agg["grad_norm"] = float(gn)
        self.optimizer.step()
        self.scheduler.step()
        return agg

    def _forward(self, batch):
        batch = _to_device(batch, self.device)
        # DDP, torch.compile and FSDP2 all act through the module's __call__ (FSDP2's root
        # pre-forward hook all-gathers the parameters that live outside the sharded blocks).
        if isinstance(self.model, nn.parallel.DistributedDataParallel) or self.cfg.compile or self._fsdp:
            return self.model(batch, self.step)
        return self.task.training_step(batch, self.step)


class _StateDictView:
    """Stand-in for a module/optimizer in checkpoint.py's save/load: hands out a given state dict
    and keeps the one it is asked to load (FSDP2 needs full state dicts gathered/scattered by the
    torch.distributed.checkpoint.state_dict API instead of module.state_dict())."""

    def __init__(self, sd: dict):
        self.sd = sd
        self.loaded: dict | None = None

    def state_dict(self) -> dict:
        return self.sd

    def load_state_dict(self, sd: dict, strict: bool = True) -> None:
        self.loaded = sd


def _to_device(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


_ABSENT = "(absent)"


def _with_defaults(model_configs):
    """``model_configs`` of an older run.json with the settings added since then filled in at their
    defaults (every new setting defaults to the old behaviour), so that it still resumes."""
    from genieworld.config import ConfigError, DynamicsConfig, LAMConfig, TokenizerConfig, from_dict

    if not isinstance(model_configs, dict):
        return model_configs
    out = dict(model_configs)
    for name, cls in (("tokenizer", TokenizerConfig), ("lam", LAMConfig), ("dynamics", DynamicsConfig)):
        if isinstance(out.get(name), dict):
            try:
                out[name] = asdict(from_dict(cls, out[name]))
            except ConfigError:  # a setting since removed or renamed: compare as written
                pass
    return out


def _diff_paths(a, b, prefix: str) -> list[tuple[str, object, object]]:
    """The dotted paths where two JSON values differ, with both values (``(absent)`` where a key is missing)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff_paths(a.get(k, _ABSENT), b.get(k, _ABSENT), f"{prefix}.{k}")
        return out
    return [] if a == b else [(prefix, a, b)]


def _short(x) -> str:
    s = json.dumps(x, sort_keys=True, default=str)
    return s if len(s) < 120 else s[:117] + "..."
