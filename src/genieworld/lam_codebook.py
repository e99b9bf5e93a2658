"""What every latent action model shares: a VQ codebook of actions, and inference of them from frames.

Both :class:`genieworld.lam.LatentActionModel` (the paper's) and
:class:`genieworld.lam_conv.ConvLatentActionModel` inherit it: a subclass has ``self.cfg``
(a :class:`~genieworld.config.LAMConfig`), ``self.vq`` (a
:class:`~genieworld.nn.quantizer.VectorQuantizer`) and ``encode_latents(frames)`` ->
(B, T-1, code_dim).  Play needs only :meth:`ActionCodebook.action_vectors`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class ActionCodebook:
    """Mixin for ``nn.Module`` LAMs: action count, code size, ``encode_actions`` and ``action_vectors``."""

    @property
    def num_actions(self) -> int:
        return self.cfg.vq.num_codes

    @property
    def code_dim(self) -> int:
        return self.cfg.vq.code_dim

    @torch.no_grad()
    def encode_actions(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference: (indices (B, T-1) long, code vectors (B, T-1, code_dim)). No grad, no codebook updates."""
        z = self.encode_latents(frames)
        z_nd = z.reshape(-1, z.shape[-1]).float()
        if self.cfg.vq.l2_normalize:
            z_nd = F.normalize(z_nd, dim=-1)
        idx = self.vq.nearest(z_nd).reshape(z.shape[:-1])
        return idx, self.action_vectors(idx)

    def action_vectors(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors (..., code_dim) for action ids (...): all that play time needs from the LAM."""
        indices = torch.as_tensor(indices, device=self.vq.codebook.device, dtype=torch.long)
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_actions):
            raise ValueError(f"action ids must be in [0, {self.num_actions}), got {indices.tolist()}")
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
