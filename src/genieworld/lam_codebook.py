"""What every latent action model shares: a VQ codebook of actions, and inference of them from frames.

Both :class:`genieworld.lam.LatentActionModel` (the paper's) and
:class:`genieworld.lam_conv.ConvLatentActionModel` inherit it: a subclass has ``self.cfg``
(a :class:`~genieworld.config.LAMConfig`), ``self.vq`` (a
:class:`~genieworld.nn.quantizer.VectorQuantizer`) and ``encode_latents(frames)`` ->
(B, T-1, code_dim).  Play needs only :meth:`ActionCodebook.action_vectors`.

A LAM may train with more codes than play offers actions (``LAMConfig.merged_actions``): after
training, :func:`merge_by_vectors` (or :func:`merge_by_context`, ``LAMConfig.merge``) groups its
codes and :meth:`ActionCodebook.merge_codes` stores the grouping (buffers ``merge_map`` and
``merged_codebook``), after which ``encode_actions`` and ``action_vectors`` speak the merged
actions only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def merge_by_vectors(codebook_kd, num_actions: int) -> np.ndarray:
    """Group K code vectors (K, D) into ``num_actions`` actions: (K,) group ids, by Ward linkage
    (agglomerative, joining the pair of groups whose merge adds the least squared spread), cut at
    exactly ``num_actions`` groups.  Needs no data and no labels; deterministic.

    Measured against the alternatives in ``bench/bench_lam_merge.py`` (retired; runs at commit f029ad5;
    docs/experiments.md): on CoinRun it kept the most NMI with the true actions of the label-free merges tried, where
    :func:`merge_by_cooccurrence` put 6 of 16 codes into one action.
    """
    from scipy.cluster.hierarchy import cut_tree, linkage

    cb = np.asarray(codebook_kd, dtype=np.float64)
    k = cb.shape[0]
    if cb.ndim != 2 or not 1 <= num_actions <= k:
        raise ValueError(f"cannot merge {k} codes into {num_actions} actions")
    if num_actions == k:
        return np.arange(k, dtype=np.int64)
    raw = cut_tree(linkage(cb, "ward"), n_clusters=num_actions).reshape(-1)
    # number the groups by their lowest code, so the result does not depend on scipy's labels
    order = {g: i for i, g in enumerate(dict.fromkeys(raw.tolist()))}
    return np.array([order[g] for g in raw.tolist()], dtype=np.int64)


def merge_by_cooccurrence(codes: list[np.ndarray], num_codes: int, num_actions: int) -> np.ndarray:
    """Group ``num_codes`` action codes into ``num_actions`` actions, without labels: (num_codes,) group ids.

    ``codes`` holds, per video, the code of each transition in order.  A player keeps a key down
    for several frames while the picture's other changes (the agent rising, then falling, then
    landing) come and go, so two codes that often follow each other are likely one action seen in
    two states.  Agglomerative: start from one group per used code and repeatedly join the two
    groups with the highest normalised association ``C(A, B) / sqrt(d_A d_B)``, where C counts
    consecutive transitions with one code in A and the other in B and d is a group's number of
    such neighbours, until ``num_actions`` groups remain.  Unused codes join the group of the
    code they follow most, or group 0.  Deterministic (ties go to the lowest indices).
    """
    if not 1 <= num_actions <= num_codes:
        raise ValueError(f"cannot merge {num_codes} codes into {num_actions} actions")
    pair = np.zeros((num_codes, num_codes))
    usage = np.zeros(num_codes)
    for seq in codes:
        seq = np.asarray(seq, dtype=np.int64)
        if seq.size and (seq.min() < 0 or seq.max() >= num_codes):
            raise ValueError(f"codes must be in [0, {num_codes})")
        usage += np.bincount(seq, minlength=num_codes)
        if len(seq) > 1:
            np.add.at(pair, (seq[:-1], seq[1:]), 1)
    sym = pair + pair.T
    np.fill_diagonal(sym, 0)
    used = [k for k in range(num_codes) if usage[k] > 0]
    groups = [[k] for k in used] or [[0]]
    while len(groups) > num_actions:
        best, pick = -1.0, (0, 1)
        deg = [sym[g].sum() for g in groups]
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                c = sym[np.ix_(groups[i], groups[j])].sum()
                score = c / np.sqrt(max(deg[i], 1e-9) * max(deg[j], 1e-9))
                if score > best + 1e-12:
                    best, pick = score, (i, j)
        i, j = pick
        groups[i] = sorted(groups[i] + groups[j])
        del groups[j]
    out = np.full(num_codes, -1, dtype=np.int64)
    for g, members in enumerate(groups):
        out[members] = g
    for k in np.flatnonzero(out < 0):  # unused codes (and, with fewer used codes than actions, nothing else)
        row = sym[k] if sym[k].sum() > 0 else usage
        out[k] = out[int(np.argmax(np.where(out >= 0, row, -1)))] if (out >= 0).any() else 0
    return out


def merge_by_context(codes: list[np.ndarray], num_codes: int, num_actions: int) -> np.ndarray:
    """Group codes whose *neighbours in time* look alike: (num_codes,) group ids, without labels.

    Each code's context is the distribution of the codes just before and just after it in the
    videos.  A held key shows as different codes in different states (running, rising, falling),
    and codes of one action share their neighbours.  Agglomerative information bottleneck
    (Slonim & Tishby): repeatedly join the two groups whose merge loses the least information
    about the context, ``(p_a + p_b) * JS_{p_a/(p_a+p_b)}(ctx_a, ctx_b)``, until ``num_actions``
    remain.  Unused codes go to group 0.  Deterministic (ties go to the lowest indices).

    ``LAMConfig.merge = "context"``; measured against :func:`merge_by_vectors` on three CoinRun LAMs in
    the retired ``bench/bench_lam_merge.py`` (commit f029ad5; docs/experiments.md, "The separate LAM
    stage", 5, 9 and 12).
    """
    if not 1 <= num_actions <= num_codes:
        raise ValueError(f"cannot merge {num_codes} codes into {num_actions} actions")
    ctx = np.zeros((num_codes, 2 * num_codes))
    for seq in codes:
        seq = np.asarray(seq, dtype=np.int64)
        if seq.size and (seq.min() < 0 or seq.max() >= num_codes):
            raise ValueError(f"codes must be in [0, {num_codes})")
        if len(seq) > 1:
            np.add.at(ctx, (seq[:-1], seq[1:]), 1)  # what follows
            np.add.at(ctx, (seq[1:], num_codes + seq[:-1]), 1)  # what precedes
    return merge_by_counts(ctx, num_actions)


def merge_by_counts(counts_kf: np.ndarray, num_actions: int) -> np.ndarray:
    """Agglomerative information bottleneck (Slonim & Tishby) on what each code co-occurs with.

    ``counts_kf`` (num_codes, F): row k counts the features seen with code k (its neighbours in time,
    the camera's measured motion, ...). Repeatedly join the two groups whose merge loses the least
    information about the features, ``(p_a + p_b) * JS_{p_a/(p_a+p_b)}(f_a, f_b)``, until
    ``num_actions`` remain. Codes never seen go to group 0. Deterministic (ties go to the lowest
    indices). Returns (num_codes,) group ids.
    """
    ctx = np.asarray(counts_kf, dtype=np.float64)
    num_codes = ctx.shape[0]
    if not 1 <= num_actions <= num_codes:
        raise ValueError(f"cannot merge {num_codes} codes into {num_actions} actions")
    if (ctx < 0).any():
        raise ValueError("counts must be non-negative")
    mass = ctx.sum(1)
    used = [k for k in range(num_codes) if mass[k] > 0]
    groups = [[k] for k in used] or [[0]]
    p = [mass[g].sum() for g in groups]
    dist = [ctx[g].sum(0) / max(mass[g].sum(), 1e-12) for g in groups]

    def kl(a, b):
        nz = a > 0
        return float((a[nz] * np.log(a[nz] / b[nz])).sum())

    total = max(sum(p), 1e-12)
    while len(groups) > num_actions:
        best, pick = np.inf, (0, 1)
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                wi, wj = p[i] / (p[i] + p[j]), p[j] / (p[i] + p[j])
                mix = wi * dist[i] + wj * dist[j]
                cost = (p[i] + p[j]) / total * (wi * kl(dist[i], mix) + wj * kl(dist[j], mix))
                if cost < best - 1e-15:
                    best, pick = cost, (i, j)
        i, j = pick
        wi, wj = p[i] / (p[i] + p[j]), p[j] / (p[i] + p[j])
        dist[i] = wi * dist[i] + wj * dist[j]
        p[i] += p[j]
        groups[i] = sorted(groups[i] + groups[j])
        del groups[j], p[j], dist[j]
    out = np.zeros(num_codes, dtype=np.int64)
    for gi, g in enumerate(sorted(groups)):
        out[g] = gi
    return out


class ActionCodebook:
    """Mixin for ``nn.Module`` LAMs: action count, code size, ``encode_actions`` and ``action_vectors``."""

    @property
    def num_actions(self) -> int:
        """Actions play offers: ``cfg.merged_actions`` when the codes are merged, else the codes."""
        return self.cfg.num_actions

    # ------------------------------------------------------------------ merged codes
    def _init_merge(self) -> None:
        """Buffers of a LAM whose codes are merged into fewer actions (``cfg.merged_actions`` > 0)."""
        if self.cfg.merged_actions:
            k, m = self.cfg.vq.num_codes, self.cfg.merged_actions
            self.register_buffer("merge_map", torch.full((k,), -1, dtype=torch.long))
            self.register_buffer("merged_codebook", torch.zeros(m, self.cfg.vq.code_dim))

    @property
    def is_merged(self) -> bool:
        return bool(self.cfg.merged_actions) and bool((self.merge_map >= 0).all())

    def _check_merged(self) -> None:
        if self.cfg.merged_actions and not self.is_merged:
            raise ValueError(f"this LAM trains {self.cfg.vq.num_codes} codes to be merged into "
                             f"{self.cfg.merged_actions} actions, and has not been merged yet (genie train lam "
                             "merges them when it finishes)")

    @torch.no_grad()
    def merge_codes(self, groups: np.ndarray) -> None:
        """Store a grouping (num_codes,) -> [0, merged_actions): each action's vector is the (normalised)
        mean of its codes' vectors, and ``encode_actions`` returns the group of the nearest code."""
        m = self.cfg.merged_actions
        groups = torch.as_tensor(np.asarray(groups), dtype=torch.long, device=self.merge_map.device)
        if not m or groups.shape != self.merge_map.shape or int(groups.min()) < 0 or int(groups.max()) >= m:
            raise ValueError(f"a merge maps each of {self.cfg.vq.num_codes} codes to one of {m} actions, "
                             f"got {groups.tolist()}")
        cb = self.vq.normalized_codebook().detach()
        vecs = torch.zeros(m, cb.shape[1], dtype=cb.dtype, device=cb.device).index_add_(0, groups, cb)
        if self.cfg.vq.l2_normalize:
            vecs = F.normalize(vecs, dim=-1)
        else:
            vecs = vecs / torch.bincount(groups, minlength=m).clamp_min(1)[:, None].to(vecs.dtype)
        self.merge_map.copy_(groups)
        self.merged_codebook.copy_(vecs)

    @torch.no_grad()
    def encode_codes(self, frames: torch.Tensor) -> torch.Tensor:
        """The trained (unmerged) code of each transition, (B, T-1) long."""
        z = self.encode_latents(frames)
        z_nd = z.reshape(-1, z.shape[-1]).float()
        if self.cfg.vq.l2_normalize:
            z_nd = F.normalize(z_nd, dim=-1)
        return self.vq.nearest(z_nd).reshape(z.shape[:-1])

    @property
    def code_dim(self) -> int:
        return self.cfg.vq.code_dim

    @torch.no_grad()
    def encode_actions(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: (action ids (B, T-1) long, their vectors (B, T-1, code_dim)). No grad, no codebook updates."""
        self._check_merged()
        idx = self.encode_codes(frames)
        if self.cfg.merged_actions:
            idx = self.merge_map[idx]
        return idx, self.action_vectors(idx)

    def action_vectors(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors (..., code_dim) for action ids (...): all that play time needs from the LAM."""
        indices = torch.as_tensor(indices, device=self.vq.codebook.device, dtype=torch.long)
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_actions):
            raise ValueError(f"action ids must be in [0, {self.num_actions}), got {indices.tolist()}")
        if self.cfg.merged_actions:
            self._check_merged()
            return F.embedding(indices, self.merged_codebook)
        return self.vq.lookup(indices)

    @staticmethod
    def training_info(mse: torch.Tensor, vq_info: dict, indices: torch.Tensor, vectors: torch.Tensor) -> dict:
        """The ``info`` of a LAM's ``forward``: ``loss`` (MSE + VQ, differentiable), its parts, codebook
        statistics, ``indices`` (B, T-1) and ``vectors`` (B, T-1, code_dim, straight-through)."""
        return {
            "loss": mse + vq_info["loss"],
            "mse": mse.detach(),
            "vq_loss": vq_info["loss"].detach(),
            "codes_used": vq_info["codes_used"],
            "perplexity": vq_info["perplexity"],
            "indices": indices.detach(),
            "vectors": vectors,
        }
