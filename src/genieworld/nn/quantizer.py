"""Vector quantizer (VQ-VAE bottleneck) used by the tokenizer and the latent action model.

* straight-through estimator: the forward pass uses the nearest code, gradients
  flow to the encoder as if quantisation were the identity;
* loss = ||sg[z] - e||^2 (codebook) + beta * ||z - sg[e]||^2 (commitment);
* optional L2 normalisation of both inputs and codes (nearest code by cosine
  similarity), which keeps small codebooks from collapsing;
* data-dependent init: the first training batch seeds the codebook;
* dead-code restart: a code that has not been selected for ``dead_code_steps``
  training steps is re-initialised to an encoder output of the current batch,
  drawn with probability proportional to its squared quantisation error
  (synchronised across ranks under torch.distributed);
* usage statistics for logging: codes used in the batch and perplexity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from genieworld.config import VQConfig


class VectorQuantizer(nn.Module):
    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.cfg = cfg
        self.num_codes = cfg.num_codes
        self.code_dim = cfg.code_dim
        self.codebook = nn.Parameter(torch.randn(cfg.num_codes, cfg.code_dim))
        if cfg.l2_normalize:
            with torch.no_grad():
                self.codebook.copy_(F.normalize(self.codebook, dim=-1))
        else:
            nn.init.uniform_(self.codebook, -1.0 / cfg.num_codes, 1.0 / cfg.num_codes)
        # steps since each code was last selected (training only); part of the state dict.
        self.register_buffer("steps_unused", torch.zeros(cfg.num_codes, dtype=torch.long))
        # 0 until the first training batch has seeded the codebook (data-dependent init).
        self.register_buffer("initialized", torch.zeros((), dtype=torch.long))
        self.restarts_total = 0

    # ------------------------------------------------------------------ helpers
    def normalized_codebook(self) -> torch.Tensor:
        return F.normalize(self.codebook, dim=-1) if self.cfg.l2_normalize else self.codebook

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Code vectors (..., code_dim) for integer ``indices`` (...)."""
        return F.embedding(indices, self.normalized_codebook())

    def nearest(self, z_nd: torch.Tensor) -> torch.Tensor:
        cb = self.normalized_codebook()
        if self.cfg.l2_normalize:
            return (z_nd @ cb.t()).argmax(dim=-1)
        d = z_nd.pow(2).sum(-1, keepdim=True) - 2 * z_nd @ cb.t() + cb.pow(2).sum(-1)[None]
        return d.argmin(dim=-1)

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Quantise ``z`` (..., code_dim).

        Returns (z_q with straight-through gradient, indices (...), info) where info
        holds ``loss`` (codebook + beta*commitment), ``perplexity``, ``codes_used``.
        """
        if z.shape[-1] != self.code_dim:
            raise ValueError(f"expected last dim {self.code_dim}, got {tuple(z.shape)}")
        lead = z.shape[:-1]
        z_nd = z.reshape(-1, self.code_dim).float()
        if self.cfg.l2_normalize:
            z_nd = F.normalize(z_nd, dim=-1)
        if self.training and torch.is_grad_enabled() and int(self.initialized) == 0:
            self._data_init(z_nd.detach())
        idx = self.nearest(z_nd.detach())
        e = F.embedding(idx, self.normalized_codebook())
        codebook_loss = F.mse_loss(e, z_nd.detach())
        commit_loss = F.mse_loss(z_nd, e.detach())
        loss = codebook_loss + self.cfg.beta * commit_loss
        z_q = z_nd + (e - z_nd).detach()  # straight-through

        counts = torch.bincount(idx, minlength=self.num_codes)
        if self.training and torch.is_grad_enabled():
            self._track_and_restart(counts, z_nd.detach())
        probs = counts.float() / counts.sum().clamp_min(1)
        perplexity = torch.exp(-(probs * (probs + 1e-10).log()).sum())
        info = {
            "loss": loss,
            "codebook_loss": codebook_loss.detach(),
            "commit_loss": commit_loss.detach(),
            "perplexity": perplexity.detach(),
            "codes_used": (counts > 0).sum().detach(),
        }
        return z_q.reshape(*lead, self.code_dim).to(z.dtype), idx.reshape(lead), info

    @torch.no_grad()
    def _data_init(self, z_nd: torch.Tensor) -> None:
        """Seed the codebook with random encoder outputs of the first batch, so that no code starts dead."""
        n = z_nd.shape[0]
        if n >= self.num_codes:
            pick = torch.randperm(n, device=z_nd.device)[: self.num_codes]
        else:
            pick = torch.randint(0, n, (self.num_codes,), device=z_nd.device)
        new = z_nd[pick] + 0.01 * torch.randn_like(z_nd[pick])
        if self.cfg.l2_normalize:
            new = F.normalize(new, dim=-1)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(new, src=0)
        self.codebook.data.copy_(new.to(self.codebook.dtype))
        self.initialized.fill_(1)

    @torch.no_grad()
    def _track_and_restart(self, counts: torch.Tensor, z_nd: torch.Tensor) -> None:
        if self.cfg.dead_code_steps <= 0:
            return
        if dist.is_available() and dist.is_initialized():
            counts = counts.clone()
            dist.all_reduce(counts)
        used = counts > 0
        self.steps_unused.add_(1)
        self.steps_unused[used] = 0
        dead = (self.steps_unused >= self.cfg.dead_code_steps).nonzero().flatten()
        if dead.numel() == 0:
            return
        # Re-seed dead codes from encoder outputs the codebook serves worst: sample inputs with
        # probability proportional to their squared quantisation error (k-means++ style), so new
        # codes go where they reduce distortion instead of piling onto the common background.
        err = (z_nd - F.embedding(self.nearest(z_nd), self.normalized_codebook())).pow(2).sum(-1)
        probs = err + 1e-12
        pick = torch.multinomial(probs / probs.sum(), dead.numel(), replacement=dead.numel() > z_nd.shape[0])
        new = z_nd[pick] + 0.01 * torch.randn_like(z_nd[pick])
        if self.cfg.l2_normalize:
            new = F.normalize(new, dim=-1)
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(new, src=0)
        self.codebook.data[dead] = new.to(self.codebook.dtype)
        self.steps_unused[dead] = 0
        self.restarts_total += int(dead.numel())
