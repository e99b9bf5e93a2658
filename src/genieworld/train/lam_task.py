"""Latent action model training on its own (``genie train lam``): MSE reconstruction + VQ loss on short windows.

The LAM is trained before the dynamics model and then frozen (``genie train dynamics --lam``):
its job only needs a few frames at a time, so it trains on short windows (the ``cpu`` preset:
3 frames) at a large batch, where co-training with the dynamics model gave it 16-frame windows
at batch 2.  Logs the reconstruction MSE against copying x_t (``copy_mse``): a LAM that is not
clearly below copying has learned nothing for its actions to carry.

With ``LAMConfig.merged_actions`` the LAM trains more codes than play offers actions; the export
merges the codebook into that many actions before it writes ``RUN/lam``: by its code vectors
(:func:`genieworld.lam_codebook.merge_by_vectors`, ``LAMConfig.merge = "vectors"``), by the codes
that come before and after each code in the training videos (``"context"``,
:func:`genieworld.lam_codebook.merge_by_context`; the first ``MERGE_TRANSITIONS`` transitions of
the training store, in order), or by how the picture moved during each code's transitions
(``"camera"``: the whole-pixel shift between x_t and x_{t+1}, :func:`genieworld.eval.motion.frame_shifts`,
as the signs of dx and dy, on the first ``CAMERA_TRANSITIONS``; information bottleneck,
:func:`genieworld.lam_codebook.merge_by_counts`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genieworld.config import LAMConfig
from genieworld.lam import build_lam
from genieworld.lam_codebook import merge_by_context, merge_by_counts, merge_by_vectors
from genieworld.tokenizer import to_float_video
from genieworld.train.task import TrainTask
from genieworld.train.token_cache import encode_episode_actions

MERGE_TRANSITIONS = 60_000  # training transitions whose codes the "context" merge reads
CAMERA_TRANSITIONS = 20_000  # training transitions whose codes and picture motion the "camera" merge reads
CAMERA_MAX_SHIFT = (6, 10)  # the (dx, dy) pixel range the "camera" merge searches (CoinRun at frame skip 4)


def _episode_codes(lam, store, max_transitions: int, full_window: bool, desc: str, progress: bool):
    """Yield (frames, trained codes) per episode in store order until ``max_transitions`` codes are read.
    With ``full_window`` only transitions with a frame x_{t-1} before them count: the codes then start
    at x_1 -> x_2 (episodes of fewer than 3 frames are skipped), else at x_0 -> x_1 (fewer than 2)."""
    from tqdm.auto import tqdm

    skip = 1 if full_window else 0
    total = min(max_transitions, int(np.clip(store.episode_lengths.astype(np.int64) - 1 - skip, 0, None).sum())) \
        if hasattr(store, "episode_lengths") else max_transitions
    n = 0
    with tqdm(total=total, desc=desc, unit="transition", dynamic_ncols=True, disable=not progress) as bar:
        for i in range(store.num_episodes):
            if n >= max_transitions:
                break
            frames = store.read_frames(i)
            if len(frames) < 2 + skip:
                continue
            codes = encode_episode_actions(lam, frames, trained_codes=True)[skip:][: max_transitions - n]
            n += len(codes)
            bar.update(len(codes))
            yield frames, codes


def store_codes(lam, store, max_transitions: int = MERGE_TRANSITIONS, progress: bool = True) -> list:
    """The trained (unmerged) codes of the store's transitions, one array per episode in store order,
    until ``max_transitions`` are read."""
    return [codes.astype(np.int64) for _, codes in
            _episode_codes(lam, store, max_transitions, False, "lam: codes for the merge", progress)]


def camera_counts(lam, store, num_codes: int, max_transitions: int = CAMERA_TRANSITIONS,
                  progress: bool = False) -> np.ndarray:
    """(num_codes, 9): how often each trained code went with each motion of the picture, over the first
    ``max_transitions`` transitions x_t -> x_{t+1} of the store with a frame x_{t-1} before them (the
    LAM's full window), in store order. Motion class: 3 * (sign dx + 1) + (sign dy + 1) of the best
    whole-pixel shift (:func:`genieworld.eval.motion.frame_shifts`)."""
    from genieworld.eval.motion import frame_shifts

    counts = np.zeros((num_codes, 9))
    for frames, codes in _episode_codes(lam, store, max_transitions, True,
                                        "lam: codes and picture motion for the merge", progress):
        shift, _ = frame_shifts(frames[1: 1 + len(codes)], frames[2: 2 + len(codes)], *CAMERA_MAX_SHIFT)
        sign = np.sign(shift).astype(np.int64)
        np.add.at(counts, (codes.astype(np.int64), 3 * (sign[:, 0] + 1) + sign[:, 1] + 1), 1)
    return counts


def merge_groups(lam, store=None, progress: bool = True):
    """How ``lam``'s trained codes join into ``lam.cfg.merged_actions`` actions, as ``lam.cfg.merge`` says:
    (num_codes,) group ids.  ``"context"`` and ``"camera"`` read the training ``store`` in order (the LAM is
    left in eval mode)."""
    cfg = lam.cfg
    if cfg.merge in ("context", "camera"):
        if store is None:
            raise ValueError(f'lam.merge = "{cfg.merge}" needs the training episode store')
        lam.eval()
        with torch.no_grad():
            if cfg.merge == "camera":
                counts = camera_counts(lam, store, cfg.vq.num_codes, progress=progress)
                return merge_by_counts(counts, cfg.merged_actions)
            seqs = store_codes(lam, store, progress=progress)
        return merge_by_context(seqs, cfg.vq.num_codes, cfg.merged_actions)
    return merge_by_vectors(lam.vq.normalized_codebook().detach().cpu().numpy(), cfg.merged_actions)


class LAMTask(TrainTask):
    component = "lam"

    def __init__(self, cfg: LAMConfig):
        super().__init__()
        self.lam = build_lam(cfg)
        self.data_provenance: dict = {}
        self.merge_store = None  # the training EpisodeStore, read by the "context" and "camera" merges at export
        self.progress = True  # a progress bar while those merges read the store

    def training_step(self, batch: dict, step: int):
        frames = batch["frames"]  # (B, T, H, W, C) uint8
        _, info = self.lam(frames)
        x = to_float_video(frames)
        logs = {
            "loss": float(info["loss"].detach()),
            "mse": float(info["mse"]),
            "copy_mse": float(F.mse_loss(x[:, :-1], x[:, 1:])),
            "vq_loss": float(info["vq_loss"]),
            "codes_used": float(info["codes_used"]),
            "perplexity": float(info["perplexity"]),
        }
        return info["loss"], logs

    def model_configs(self) -> dict:
        return {"lam": asdict(self.lam.cfg)}

    def export(self, run_dir: Path) -> None:
        from genieworld.genie import save_component

        cfg = self.lam.cfg
        if cfg.merged_actions and not self.lam.is_merged:
            groups = merge_groups(self.lam, self.merge_store, self.progress)
            self.lam.merge_codes(groups)
            print(f"[lam] merged {cfg.vq.num_codes} codes into {cfg.merged_actions} actions by {cfg.merge}: "
                  f"{groups.tolist()}", flush=True)
        save_component(self.lam, self.lam.cfg, Path(run_dir) / "lam")
