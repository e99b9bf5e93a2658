"""Latent action model (LAM, paper section 2.1 / App. C.1): a VQ-VAE whose latent is the *action*.

Shapes (H = W = image_size, P = patch_size, N = (H/P)^2 patches per frame)::

    frames x_1..x_T (B, T, H, W, C) in [0, 1]  (uint8 is accepted and scaled)
    encoder:  centre to [-1, 1] -> patchify -> linear        (B, T, N, d_enc)
              prepend a learned action-query token per frame  (B, T, N+1, d_enc)
              ST-transformer (causal in time)
              read the action token of frames 2..T            (B, T-1, d_enc)
              linear -> code_dim -> VQ (num_codes = number of actions)
                  -> actions a_1..a_{T-1}: indices (B, T-1), vectors (B, T-1, code_dim)
    decoder:  patch embeddings of x_1..x_{T-1}                (B, T-1, N, d_dec)
              + linear(a_t) added to every token of frame t
              ST-transformer (causal in time) -> linear -> sigmoid -> unpatchify
                  -> predictions of x_2..x_T                  (B, T-1, H, W, C)

Alignment (the same convention as :func:`genieworld.dynamics.align_actions_to_frames`):
``a_t`` (index ``t-1`` in the tensors, 1-based frame numbers) is the latent action of the
transition x_t -> x_{t+1}.  It is read at the action token of frame t+1, which has seen
x_1..x_{t+1} through causal temporal attention and nothing later, and it conditions the
decoder's prediction of x_{t+1}.  So actions and predictions at index k depend only on
frames 1..k+2 and actions 1..k+1.

Residual decoder (``residual_decoder``, not in the paper): the decoder predicts x_{t+1} - x_t and
adds it to x_t (the last frame it may see).  With the paper's decoder (sigmoid of a linear map
of one d_model vector per 16x16 patch) our CPU-sized LAM reconstructed x_{t+1} worse than
copying x_t did (MSE 0.015-0.02 against 0.008 on CoinRun), so a few pixels of camera motion,
which is what an action changes, never showed in its loss.

Loss: MSE(prediction, x_{2:T}) + VQ loss (codebook + beta * commitment).  ``codes_used`` and
``perplexity`` are reported for logging.  The decoder also sees x_t, so it may ignore the
action when nothing moves (as in the paper).

Difference readout (``latent_difference``, not in the paper).  With a small batch the pre-VQ
standardisation sees few clips, and the largest variation between latents is *which clip*
they come from (the level's colours), not what happened: in our first CoinRun run the LAM
gave every transition of a clip the same code (perplexity exactly 2.0 on batches of 2 clips).
Reading the action as readout(t+1) - readout(t) cancels what consecutive frames share.

Context masking (``context_mask_rate`` > 0, training only, not in the paper).  A decoder that
sees x_t can predict x_{t+1} by copying it and learn to ignore the action (the collapse that
peers report, and that our first CoinRun run showed: 3 of 6 codes used, NMI 0.02 against the
true actions).  With this option every decoder context frame after the first is replaced, with
that probability, by a learned mask embedding, so the actions must carry the motion across the
hidden frames (TinyWorlds masks all frames but the first).  Play never runs the decoder, so
this changes training only.  (In 600-step LAM-only tests on CoinRun, rates 0.5-1.0 did not
make the actions track the camera's motion; it is kept as an option, not a cure.)

Collapse.  At initialisation the action token's output is dominated by what every frame
shares (its learned query and spatial position embedding), so all latent actions point the
same way (cosine similarity > 0.999), all map to one code, the decoder learns to ignore it
and the codebook never recovers -- data-dependent init and dead-code restarts (in
:class:`~genieworld.nn.quantizer.VectorQuantizer`) cannot help, because restarted codes are
copies of the same vector.  The latents are therefore standardised per dimension
(``pre_vq_norm``: BatchNorm without affine parameters; batch statistics in training, running
statistics at inference) before the L2-normalised VQ, which removes the shared component and
lets the codes spread from the first step.  (In training the batch statistics pool all
transitions of the batch, a shared mean/variance and no per-sample information; at inference
the running statistics make every action depend only on its own frames 1..t+1.)  On a toy task (the next frame's colour is set by
the action) the LAM without it used 1 of 4 codes after 200 steps; with it, 4 codes that
matched the true actions one to one.

At play time only the VQ codebook is needed: :meth:`LatentActionModel.action_vectors`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genieworld.config import LAMConfig
from genieworld.lam_codebook import ActionCodebook
from genieworld.nn.quantizer import VectorQuantizer
from genieworld.nn.st_transformer import STTransformer, init_weights
from genieworld.tokenizer import check_video_shape, patchify, to_float_video, unpatchify


LAM_ARCHS = ("transformer", "conv")


def build_lam(cfg: LAMConfig) -> nn.Module:
    """The latent action model ``cfg.arch`` names: this ST-transformer LAM (the paper's) or the
    convolutional one of :mod:`genieworld.lam_conv`.  Both share one interface."""
    if cfg.arch == "transformer":
        return LatentActionModel(cfg)
    if cfg.arch == "conv":
        from genieworld.lam_conv import ConvLatentActionModel

        return ConvLatentActionModel(cfg)
    raise ValueError(f"LAM arch must be one of {LAM_ARCHS}, got {cfg.arch!r}")


class LatentActionModel(ActionCodebook, nn.Module):
    def __init__(self, cfg: LAMConfig):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"LAM image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        if cfg.vq.num_codes < 1:
            raise ValueError("LAM needs at least one action code")
        self.cfg = cfg
        n = (cfg.image_size // cfg.patch_size) ** 2
        self.num_patches = n
        patch_dim = cfg.patch_size**2 * cfg.channels
        # encoder
        self.enc_in = nn.Linear(patch_dim, cfg.encoder.d_model)
        self.action_query = nn.Parameter(torch.zeros(cfg.encoder.d_model))
        self.encoder = STTransformer(cfg.encoder, n + 1, cfg.max_frames)
        self.enc_out = nn.Linear(cfg.encoder.d_model, cfg.vq.code_dim)
        # Per-dimension standardisation of the latent actions before the VQ (batch statistics in
        # training, running statistics at inference); see "Collapse" in the module docstring.
        self.pre_vq_norm = nn.BatchNorm1d(cfg.vq.code_dim, affine=False)
        self.vq = VectorQuantizer(cfg.vq)
        # decoder
        self.dec_in = nn.Linear(patch_dim, cfg.decoder.d_model)
        if not 0.0 <= cfg.context_mask_rate <= 1.0:
            raise ValueError(f"LAM context_mask_rate must be in [0, 1], got {cfg.context_mask_rate}")
        # Learned stand-in for a hidden decoder context frame (used only when context_mask_rate > 0).
        self.dec_mask = nn.Parameter(torch.zeros(cfg.decoder.d_model)) if cfg.context_mask_rate > 0 else None
        self.dec_action = nn.Linear(cfg.vq.code_dim, cfg.decoder.d_model)
        self.decoder = STTransformer(cfg.decoder, n, cfg.max_frames)
        self.dec_out = nn.Linear(cfg.decoder.d_model, patch_dim)
        init_weights(self)  # linears and embeddings only: the VQ codebook keeps its own init
        with torch.no_grad():
            self.action_query.normal_(0.0, 0.02)

    # ------------------------------------------------------------------ shapes
    def _check_frames(self, frames: torch.Tensor) -> None:
        check_video_shape(frames, self.cfg.image_size, self.cfg.channels, who="the LAM expects frames")
        if frames.shape[1] < 2:
            raise ValueError(f"LAM needs at least 2 frames to infer an action, got {frames.shape[1]}")

    def _patches(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, N, P*P*C) patches of frames centred to [-1, 1] (un-centred inputs collapse the codebook)."""
        return patchify(to_float_video(frames) * 2.0 - 1.0, self.cfg.patch_size)

    # ------------------------------------------------------------------ encoder
    def encode_latents(self, frames: torch.Tensor) -> torch.Tensor:
        """Continuous (pre-VQ) latent actions (B, T-1, code_dim); index k is the transition x_{k+1} -> x_{k+2}."""
        self._check_frames(frames)
        x = self.enc_in(self._patches(frames))  # (B, T, N, d)
        b, t = x.shape[:2]
        q = self.action_query.to(x.dtype).expand(b, t, 1, -1)
        h = self.encoder(torch.cat([q, x], dim=2))  # (B, T, N+1, d)
        # The action token of frame t+1 has seen x_1..x_{t+1}: it carries the action x_t -> x_{t+1}.
        r = self.enc_out(h[:, :, 0])  # (B, T, code_dim): per-frame readout
        # latent_difference: subtract frame t's readout (it has seen x_1..x_t only, so causality holds)
        z = r[:, 1:] - r[:, :-1] if self.cfg.latent_difference else r[:, 1:]  # (B, T-1, code_dim)
        return self._standardize(z)

    def _standardize(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(-1, z.shape[-1])
        bn = self.pre_vq_norm
        use_batch = bn.training and flat.shape[0] > 1  # one vector has no batch statistics
        flat = F.batch_norm(flat, bn.running_mean, bn.running_var, training=use_batch, momentum=bn.momentum,
                            eps=bn.eps)
        if use_batch:
            bn.num_batches_tracked.add_(1)
        return flat.reshape(z.shape)

    # ------------------------------------------------------------------ decoder
    def decode(self, frames: torch.Tensor, action_vectors: torch.Tensor) -> torch.Tensor:
        """Predict x_2..x_T from x_1..x_{T-1} and a_1..a_{T-1}: (B, T-1, H, W, C) in [0, 1].

        ``frames`` may hold T or T-1 frames; only the first T-1 = action_vectors.shape[1] are used.
        Prediction k (0-based) sees frames 1..k+1 and actions 1..k+1, and ``a_{k+1}`` (index k)
        is added to every token of frame k+1, whose output predicts frame k+2.
        """
        c = self.cfg
        n_act = action_vectors.shape[1]
        if frames.shape[1] < n_act:
            raise ValueError(f"{n_act} actions need at least {n_act} context frames, got {frames.shape[1]}")
        x = self.dec_in(self._patches(frames[:, :n_act]))  # (B, T-1, N, d)
        hide_bt = None
        if self.training and self.dec_mask is not None and n_act > 1:
            # Hide context frames 2..T-1 (never frame 1) independently: the prediction of x_{k+2}
            # must then bridge the gap from the last visible frame with the actions in between.
            hide_bt = torch.rand(x.shape[0], n_act, device=x.device) < c.context_mask_rate
            hide_bt[:, 0] = False
            x = torch.where(hide_bt[:, :, None, None], self.dec_mask.to(x.dtype), x)
        x = x + self.dec_action(action_vectors.to(x.dtype))[:, :, None, :]
        y = unpatchify(self.dec_out(self.decoder(x)), c.patch_size, c.image_size, c.image_size, c.channels)
        if not c.residual_decoder:
            return torch.sigmoid(y)
        # residual: the last frame the decoder may see, plus the predicted change (unbounded, so
        # "nothing moved" is exact at initialisation)
        base = to_float_video(frames[:, :n_act])  # (B, T-1, H, W, C)
        if hide_bt is not None:
            k = torch.arange(n_act, device=x.device)[None, :].expand_as(hide_bt)
            last_seen = torch.where(hide_bt, torch.zeros_like(k), k).cummax(dim=1).values  # (B, T-1)
            base = base[torch.arange(base.shape[0], device=x.device)[:, None], last_seen]
        return base + y

    # ------------------------------------------------------------------ training
    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Returns (predictions of x_2..x_T (B, T-1, H, W, C), info).

        info: ``loss`` (MSE + VQ, differentiable), ``mse``, ``vq_loss``, ``codes_used``,
        ``perplexity``, ``indices`` (B, T-1) and ``vectors`` (B, T-1, code_dim, quantised with
        straight-through gradient).
        """
        z = self.encode_latents(frames)
        zq, idx, vq_info = self.vq(z)
        pred = self.decode(frames, zq)
        target = to_float_video(frames[:, 1:])
        mse = F.mse_loss(pred.float(), target)
        return pred, self.training_info(mse, vq_info, idx, zq)
