"""Configuration dataclasses and presets.

Every model and training run is described by plain dataclasses that are saved as
JSON beside the weights. Presets live in the repository's ``configs/`` folder
(``tiny``, ``cpu``, ``coinrun-paper``); a preset file holds one section per
component::

    {"tokenizer": {...}, "lam": {...}, "dynamics": {...},
     "tokenizer_train": {...}, "dynamics_train": {...}}

``load_preset("tiny")`` returns a :class:`Preset`. Unknown keys in a JSON file are
an error that names the key, so a typo never silently falls back to a default. A setting since
removed (:data:`RETIRED_SETTINGS`) is dropped while it holds its old off value and refused, naming
the last commit that runs it, at any other.

Every config read from a file (a preset, a model directory's ``config.json`` and ``genie.json``)
is validated by :func:`from_dict` before anything is built from it: each field's type (from the
dataclass annotations), its range and a sane upper bound (:data:`FIELD_BOUNDS`, one table for all
dataclasses), and the rules that tie fields together (:data:`CONSISTENCY_RULES`).  A
:class:`ConfigError` names the file, the field and the limit.  ``docs/security.md`` lists them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

from genieworld.errors import UserError

T = TypeVar("T")

PRESET_NAMES = ("tiny", "cpu", "coinrun-paper")


@dataclass
class STConfig:
    """Shape of one ST-transformer stack (spatial attn -> causal temporal attn -> FFW)."""

    num_layers: int = 2
    d_model: int = 64
    num_heads: int = 4
    head_dim: int = 16  # q/k/v width per head; heads*head_dim need not equal d_model (paper tables)
    ffn_mult: float = 4.0
    qk_norm: bool = False
    dropout: float = 0.0


@dataclass
class VQConfig:
    num_codes: int = 1024
    code_dim: int = 32
    beta: float = 0.25  # commitment weight
    l2_normalize: bool = True  # cosine-similarity codebook (stabilises small codebooks)
    dead_code_steps: int = 200  # restart a code unused for this many training steps (0 = never)


@dataclass
class TokenizerConfig:
    image_size: int = 64
    channels: int = 3
    patch_size: int = 4
    max_frames: int = 16  # temporal window (training sequence length)
    encoder: STConfig = field(default_factory=STConfig)
    decoder: STConfig = field(default_factory=STConfig)
    # Plain (Euclidean) codes: on CoinRun they kept ~230 of 256 codes alive and reached 29.8 dB on a
    # small batch in 400 steps, where L2-normalised codes stalled near 21 dB with fewer live codes.
    vq: VQConfig = field(default_factory=lambda: VQConfig(l2_normalize=False))

    @property
    def tokens_per_frame(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class ConvLAMConfig:
    """Settings of the convolutional LAM (``LAMConfig.arch == "conv"``); ignored by the transformer LAM.
    The research options measured on CoinRun and taken out are listed in :data:`RETIRED_SETTINGS`."""

    channels: int = 32  # inverse dynamics: width of the first conv level (doubled per level, capped at 4x)
    hidden: int = 256  # width of the inverse-dynamics MLP head
    fdm_channels: int = 16  # forward dynamics (decoder): width of its first U-Net level
    # Weight of a contrastive (InfoNCE) loss in a learned embedding instead of pixels: from an embedding
    # of (x_{t-1}, x_t) and the quantised action, a head predicts an embedding of x_{t+1}, which must pick
    # the true x_{t+1} out of the batch's other next frames and every transition's x_t (128-d, cosine,
    # temperature 0.1). What the embedding keeps is learned, not the pixel count. 0 = off.
    nce_weight: float = 0.0
    # Side in pixels of the square at the frame centre that the InfoNCE embeddings see (context and
    # target alike): where a camera that follows the agent keeps it, so the embedding is about the
    # agent (its facing, pose, footing) and the scenery right around it. A power of two >= 16 and
    # < image_size; 0 = the whole frame.
    nce_crop: int = 0
    # Which latent the InfoNCE head reads: "quantized" (the action code, as the forward model does) or
    # "continuous" (the encoder's latent before the codebook). With "continuous" the action the embedding
    # needs can live in the latent without taking over the few codes, which stay free for what the
    # forward model needs most (on CoinRun, how the view moved).
    nce_latent: str = "quantized"


@dataclass
class LAMConfig:
    image_size: int = 64
    channels: int = 3
    patch_size: int = 16
    max_frames: int = 16
    encoder: STConfig = field(default_factory=STConfig)
    decoder: STConfig = field(default_factory=STConfig)
    vq: VQConfig = field(default_factory=lambda: VQConfig(num_codes=8, code_dim=32, dead_code_steps=50))
    # Training only: each decoder context frame after the first is replaced by a learned mask
    # embedding with this probability, so the decoder must carry motion through the actions
    # (TinyWorlds-style guard against a LAM that copies x_t and ignores its action). 0 = paper.
    context_mask_rate: float = 0.0
    # The latent action of x_t -> x_{t+1} is the *change* of the per-frame action readout between
    # frames t and t+1 instead of the readout at t+1 alone, so what a whole clip shares (the
    # level's look) cancels and cannot become the "action". False = paper.
    latent_difference: bool = False
    # The decoder predicts the change x_{t+1} - x_t (added to x_t) instead of x_{t+1} itself, so
    # "copy the last frame" costs nothing and the loss is all about what moved. False = paper.
    residual_decoder: bool = False
    # "transformer" (the paper's ST-transformer VQ-VAE, genieworld.lam) or "conv" (a convolutional
    # inverse/forward-dynamics pair on 3-frame windows, genieworld.lam_conv; see its docstring).
    arch: str = "transformer"
    conv: ConvLAMConfig = field(default_factory=lambda: ConvLAMConfig())
    # 0: play's actions are the vq.num_codes codes.  M > 0 (conv LAM, `genie train lam`): train with
    # vq.num_codes codes, then merge them into M actions (how: ``merge`` below).
    # With 8 codes the CoinRun LAM spent every code on vertical motion; 16 training codes also
    # carry which way the agent went, and the merge keeps most of it (docs/experiments.md).
    merged_actions: int = 0
    # How the trained codes are merged into ``merged_actions``: "vectors" (Ward linkage of the code
    # vectors; needs no data), "context" (agglomerative information bottleneck on which codes come
    # just before and after each code in the training videos, lam_codebook.merge_by_context) or
    # "camera" (the same bottleneck on how the picture moved during each code's transitions: codes
    # that draw the same scroll become one action; train.lam_task.merge_groups).
    merge: str = "vectors"

    @property
    def num_actions(self) -> int:
        return self.merged_actions or self.vq.num_codes


@dataclass
class DynamicsConfig:
    num_codes: int = 1024  # tokenizer vocabulary; the mask token is id ``num_codes`` (never a real code)
    tokens_per_frame: int = 256
    action_dim: int = 32  # dimension of the latent action vectors (LAM code_dim)
    max_frames: int = 16
    transformer: STConfig = field(default_factory=lambda: STConfig(qk_norm=True))
    action_injection: str = "add"  # "add" (paper) or "prepend" (one action token per frame)
    mask_rate_min: float = 0.5
    mask_rate_max: float = 1.0
    # Training only: per sample a random number of leading frames (1..T-1) stays unmasked, so the
    # model also learns the play-time situation (a fully clean past, the next frame masked).
    # False = paper (only frame 1 is clean; every later frame is masked at the sample's rate).
    train_clean_prefix: bool = False
    # The output layer reuses the token embedding (logits = h @ E^T + b, as MaskGIT's BERT-style
    # head does), so "the token I attended to" maps straight back to its own id. False = a separate
    # linear head (the paper does not say which).
    tie_embeddings: bool = False
    # Not in the paper: each frame's input also gets a local copy of the *previous* frame, shifted by
    # an offset the frame's action chooses (softmax weights over a (2r+1) x (2r+1) window of token
    # offsets, r = this radius; :class:`~genieworld.dynamics.PrevFrameWarp`). A camera scroll is a
    # shifted copy, which the factorised ST attention otherwise has to assemble over two layers.
    # Needs a square token grid. 0 = off (the paper).
    prev_frame_warp: int = 0
    # Not in the paper (GameNGen's noise augmentation, for tokens): in training, per sample a level
    # u ~ U(0, context_noise_max) and each token of the clean context frames is replaced by a random
    # code with probability u; the model is told u (one of CONTEXT_NOISE_BUCKETS learned embeddings
    # added to every frame's action embedding). Play and eval feed their own frames, announced as
    # level ``context_noise_play``. The world learns to repair a context that has errors instead of
    # copying them forward. 0 = off.
    context_noise_max: float = 0.0
    context_noise_play: float = 0.0
    # Not in the paper (classifier-free guidance on actions, as MUSE guides on text): in training,
    # each frame's action (frames 2..T) is replaced by the learned "no action" embedding with this
    # probability, so the model also learns the unconditional next frame; sampling can then push
    # the logits away from it by ``SamplingConfig.action_guidance``. 0 = off.
    action_dropout: float = 0.0


@dataclass
class SamplingConfig:
    maskgit_steps: int = 25
    temperature: float = 1.0
    schedule: str = "cosine"  # "cosine" | "linear"
    # which masked tokens MaskGIT reveals at each step: "confidence" (MaskGIT's rule: the most
    # confident sampled tokens) or "random" (a uniformly random subset, the kind of visible subset
    # the dynamics saw in training). See genieworld/sampling.py.
    order: str = "confidence"
    context_frames: int = 16  # sliding window; defaults to the training length
    # MaskGIT steps for interactive play (`genie play`, GenieEnv); None = maskgit_steps.
    # Evaluation always uses maskgit_steps (the paper's 25). See bench/bench_generate.py.
    play_maskgit_steps: int | None = None
    # Temperature for interactive play (`genie play`, GenieEnv, the play-quality bench); None = temperature.
    # The shipped CoinRun model plays at 0.3: the judge then reads Left / Right at 91 / 90 % of the game's
    # rate against 82 / 87 % at 0 (docs/experiments.md, twenty-fourth session).
    play_temperature: float | None = None
    # Classifier-free guidance on the action (needs a dynamics trained with ``action_dropout``):
    # logits = uncond + w * (cond - uncond), the unconditional pass giving the current frame the
    # "no action" embedding. 1 = off (one pass per MaskGIT step); w > 1 costs a second pass.
    action_guidance: float = 1.0


@dataclass
class TrainConfig:
    steps: int = 1000
    batch_size: int = 8
    seq_len: int = 16
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 100
    beta1: float = 0.9
    beta2: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    checkpoint_every: int = 500
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    grad_accum: int = 1
    # every N steps (and at the end), a task's quick check (dynamics: Delta_t PSNR on a few held-out
    # clips, given --eval-data) is logged to TensorBoard under control/ and to RUN/control.jsonl; 0 = never
    eval_every: int = 0
    # train on an evenly spread share of the store's episodes (every level keeps some); with a token
    # cache only those are encoded. 1.0 = all of them
    data_fraction: float = 1.0
    # speed options (issue 7); all off by default on CPU
    precision: str = "auto"  # "auto" (bf16 autocast on GPU, fp32 on CPU) | "fp32" | "bf16"
    compile: bool = False
    activation_checkpointing: bool = False
    fsdp: bool = False


@dataclass
class Preset:
    name: str = "custom"
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    lam: LAMConfig = field(default_factory=LAMConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    tokenizer_train: TrainConfig = field(default_factory=TrainConfig)
    # ``genie train lam`` (the LAM on its own, before the dynamics): short windows, a large batch
    lam_train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=2000, batch_size=32, seq_len=3, lr=1e-3,
                                                                       warmup_steps=100, beta2=0.99))
    dynamics_train: TrainConfig = field(default_factory=TrainConfig)


class ConfigError(UserError, ValueError):
    """A config file or dict does not match the dataclass it should describe, or a field is out of bounds."""


# ============================================================================= validation
@dataclass(frozen=True)
class Bound:
    """What one config field may hold: a number in [lo, hi] (lo itself excluded with ``open_lo``),
    or one of ``choices``.  The field's type comes from its annotation."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False
    choices: tuple = ()


_BIG = 10**9  # steps and step counts
#: fields without an entry below: ints and floats within +-DEFAULT_LIMIT, strings of at most MAX_STR chars
DEFAULT_LIMIT = 2**31 - 1
MAX_STR = 256
#: at most this many tokens per frame (spatial attention is quadratic in it): 128 x 128 patches
MAX_TOKENS_PER_FRAME = 16384
#: at most this many parameters in one ST-transformer stack (8e10 bytes in fp32)
MAX_STACK_PARAMS = 20 * 10**9
_UNIT = Bound(0.0, 1.0)

#: Per dataclass, the bounds of its fields (checked by :func:`validate_config`).
FIELD_BOUNDS: dict[type, dict[str, Bound]] = {
    STConfig: {"num_layers": Bound(1, 128), "d_model": Bound(1, 16384), "num_heads": Bound(1, 256),
               "head_dim": Bound(1, 1024), "ffn_mult": Bound(0, 64, open_lo=True), "dropout": Bound(0.0, 0.99)},
    VQConfig: {"num_codes": Bound(1, 1 << 20), "code_dim": Bound(1, 4096), "beta": Bound(0, 1000),
               "dead_code_steps": Bound(0, _BIG)},
    TokenizerConfig: {"image_size": Bound(1, 1024), "channels": Bound(1, 4), "patch_size": Bound(1, 1024),
                      "max_frames": Bound(1, 1024)},
    ConvLAMConfig: {"channels": Bound(1, 1024), "hidden": Bound(1, 65536), "fdm_channels": Bound(1, 1024),
                    "nce_weight": Bound(0, 10**6), "nce_crop": Bound(0, 4096),
                    "nce_latent": Bound(choices=("quantized", "continuous"))},
    LAMConfig: {"image_size": Bound(1, 1024), "channels": Bound(1, 4), "patch_size": Bound(1, 1024),
                "max_frames": Bound(1, 1024), "context_mask_rate": _UNIT,
                "arch": Bound(choices=("transformer", "conv")), "merged_actions": Bound(0, 1 << 20),
                "merge": Bound(choices=("vectors", "context", "camera"))},
    DynamicsConfig: {"num_codes": Bound(1, 1 << 20), "tokens_per_frame": Bound(1, MAX_TOKENS_PER_FRAME),
                     "action_dim": Bound(1, 4096), "max_frames": Bound(1, 1024),
                     "action_injection": Bound(choices=("add", "prepend")),
                     "mask_rate_min": _UNIT, "mask_rate_max": _UNIT, "prev_frame_warp": Bound(0, 64),
                     "context_noise_max": _UNIT, "context_noise_play": _UNIT,
                     "action_dropout": Bound(0.0, 0.99)},
    SamplingConfig: {"maskgit_steps": Bound(1, 256), "temperature": Bound(0, 100),
                     "schedule": Bound(choices=("cosine", "linear")), "order": Bound(choices=("confidence", "random")),
                     "context_frames": Bound(1, 1024), "play_maskgit_steps": Bound(1, 256),
                     "play_temperature": Bound(0, 100), "action_guidance": Bound(0, 100)},
    TrainConfig: {"steps": Bound(0, _BIG), "batch_size": Bound(1, 1 << 16), "seq_len": Bound(1, 1024),
                  "lr": Bound(0, 10, open_lo=True), "min_lr": Bound(0, 10), "warmup_steps": Bound(0, _BIG),
                  "beta1": Bound(0, 0.9999), "beta2": Bound(0, 0.9999), "weight_decay": Bound(0, 100),
                  "grad_clip": Bound(0, 10**6), "checkpoint_every": Bound(1, _BIG), "log_every": Bound(1, _BIG),
                  "seed": Bound(0, 2**32 - 1), "num_workers": Bound(0, 256), "grad_accum": Bound(1, 1 << 16),
                  "eval_every": Bound(0, _BIG), "precision": Bound(choices=("auto", "fp32", "bf16")),
                  "data_fraction": Bound(0.0, 1.0, open_lo=True)},
    Preset: {},
}


def _stack_params(c: STConfig) -> int:
    """Parameters of an ST-transformer stack (two attentions and one FFW per block), roughly."""
    inner = c.num_heads * c.head_dim
    return int(c.num_layers * (2 * 4 * c.d_model * inner + 2 * c.ffn_mult * c.d_model * c.d_model))


def _rules_st(c: STConfig) -> Iterator[tuple[str, str]]:
    if c.ffn_mult * c.d_model < 1:
        yield "ffn_mult", f"ffn_mult x d_model = {c.ffn_mult * c.d_model:g} leaves no hidden units"
    n = _stack_params(c)
    if n > MAX_STACK_PARAMS:
        yield "num_layers", (f"{c.num_layers} layers of d_model {c.d_model} make about {n / 1e9:.3g}B parameters, "
                             f"above the limit {MAX_STACK_PARAMS / 1e9:g}B")


def _rules_patches(c) -> Iterator[tuple[str, str]]:
    if c.image_size % c.patch_size:
        yield "patch_size", f"image_size {c.image_size} is not a multiple of patch_size {c.patch_size}"
    elif (c.image_size // c.patch_size) ** 2 > MAX_TOKENS_PER_FRAME:
        yield "patch_size", (f"{c.image_size}x{c.image_size} images in {c.patch_size}x{c.patch_size} patches make "
                             f"{(c.image_size // c.patch_size) ** 2} tokens per frame, above the limit "
                             f"{MAX_TOKENS_PER_FRAME}")


def _rules_lam(c: LAMConfig) -> Iterator[tuple[str, str]]:
    if c.arch == "conv":
        if c.image_size < 16 or c.image_size & (c.image_size - 1):
            yield "image_size", f"the conv LAM needs a power-of-two image_size >= 16, got {c.image_size}"
        crop = c.conv.nce_crop
        if crop and not (16 <= crop < c.image_size and crop & (crop - 1) == 0):
            yield "conv.nce_crop", f"must be 0 or a power of two >= 16 below image_size {c.image_size}, got {crop}"
    else:
        yield from _rules_patches(c)
        if c.merged_actions:
            yield "merged_actions", "merging action codes needs the conv LAM (arch = conv)"
    if c.merged_actions >= c.vq.num_codes:
        yield "merged_actions", (f"merged_actions {c.merged_actions} must be below vq.num_codes {c.vq.num_codes} "
                                 "(the codes trained, merged into fewer actions), or 0")


def _rules_dynamics(c: DynamicsConfig) -> Iterator[tuple[str, str]]:
    if c.mask_rate_min > c.mask_rate_max:
        yield "mask_rate_min", f"mask_rate_min {c.mask_rate_min} is above mask_rate_max {c.mask_rate_max}"
    side = math.isqrt(c.tokens_per_frame)
    if c.prev_frame_warp and side * side != c.tokens_per_frame:
        yield "prev_frame_warp", f"prev_frame_warp needs a square token grid; tokens_per_frame is {c.tokens_per_frame}"


def _rules_train(c: TrainConfig) -> Iterator[tuple[str, str]]:
    if c.min_lr > c.lr:
        yield "min_lr", f"min_lr {c.min_lr} is above lr {c.lr}"


#: Per dataclass, the rules between its fields: each yields (field, problem) pairs.
CONSISTENCY_RULES: dict[type, Callable[[Any], Iterator[tuple[str, str]]]] = {
    STConfig: _rules_st, TokenizerConfig: _rules_patches, LAMConfig: _rules_lam, DynamicsConfig: _rules_dynamics,
    TrainConfig: _rules_train,
}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _short_repr(value: Any) -> str:
    r = repr(value)
    return r if len(r) <= 40 else r[:37] + "..."


def _field_problem(typ: Any, value: Any, bound: Bound | None) -> str | None:
    """Why ``value`` does not fit annotation ``typ`` and ``bound``, or None when it does."""
    if isinstance(typ, types.UnionType) or typing.get_origin(typ) is typing.Union:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(typ)):
            return None
        typ = args[0] if len(args) == 1 else typ
    if typ is bool:
        return None if isinstance(value, bool) else f"must be true or false, got {type(value).__name__}"
    if typ is str:
        if not isinstance(value, str):
            return f"must be a string, got {type(value).__name__}"
        if len(value) > MAX_STR:
            return f"is {len(value)} characters long, above the limit {MAX_STR}"
        if bound is not None and bound.choices and value not in bound.choices:
            return f"must be one of {list(bound.choices)}"
        return None
    if typ is int or typ is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"must be {'an integer' if typ is int else 'a number'}, got {type(value).__name__}"
        if typ is int and not isinstance(value, numbers.Integral):
            return "must be an integer"
        if not math.isfinite(value):
            return "must be a finite number"
        lo, hi = (bound.lo, bound.hi) if bound is not None else (-DEFAULT_LIMIT, DEFAULT_LIMIT)
        if lo is not None and (value < lo or (bound is not None and bound.open_lo and value <= lo)):
            return f"must be {'above' if bound is not None and bound.open_lo else 'at least'} {_num(lo)}"
        if hi is not None and value > hi:
            return f"is above the limit {_num(hi)}"
        return None
    return None  # nested dataclasses are checked field by field; other annotations are not constrained


def validate_config(obj: Any, where: str = "", _prefix: str = "") -> None:
    """Check every field of config dataclass ``obj`` (recursively) against its annotation,
    :data:`FIELD_BOUNDS` and :data:`CONSISTENCY_RULES`; raise :class:`ConfigError` naming the first bad one."""
    cls = type(obj)
    where = where or cls.__name__
    hints = _type_hints(cls)
    bounds = FIELD_BOUNDS.get(cls, {})
    for f in fields(obj):
        value = getattr(obj, f.name)
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, typ):
                raise ConfigError(f"{where}: {_prefix}{f.name} must be an object ({typ.__name__}), "
                                  f"got {type(value).__name__}")
            validate_config(value, where, f"{_prefix}{f.name}.")
            continue
        problem = _field_problem(typ, value, bounds.get(f.name))
        if problem:
            raise ConfigError(f"{where}: {_prefix}{f.name}={_short_repr(value)} {problem}")
    rule = CONSISTENCY_RULES.get(cls)
    for name, problem in (rule(obj) if rule else ()):
        raise ConfigError(f"{where}: {_prefix}{name}: {problem}")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


#: Settings added after configs were first digested (token caches, run.json's ``lam_digest``), each
#: with the value that reproduces the behaviour from before it.  :func:`digest_dict` leaves them out
#: while they hold that value, so adding a setting does not invalidate every cache and resumable run.
#: Add every new model setting here, with its default.
ADDED_SETTINGS: dict[str, Any] = {"ConvLAMConfig.nce_weight": 0.0, "ConvLAMConfig.nce_crop": 0,
                                  "ConvLAMConfig.nce_latent": "quantized", "LAMConfig.merge": "vectors",
                                  "DynamicsConfig.action_dropout": 0.0}


class Retired(NamedTuple):
    """A setting taken out of the code (:data:`RETIRED_SETTINGS`)."""

    off: Any  # its old default, the value that meant "off"
    commit: str  # the last commit whose code still runs it
    digested: bool = True  # configs were digested with it at ``off`` (False: it was one of ADDED_SETTINGS)


#: The last commit with the options that issue 35 removed.
_ISSUE_35 = "df31d9c"

#: Settings removed because a measurement rejected them and no preset used them (docs/experiments.md,
#: "Options removed"): "Class.field" -> :class:`Retired`.  A config file that holds one at its off value
#: (shipped models' config.json list every field they had) loads as before, the key dropped; any other
#: value is refused by :func:`from_dict` with one line that names the commit where it still runs.
#: :func:`digest_dict` writes the digested ones back at their off value, so token caches and resumable
#: runs made before the removal stay valid.
RETIRED_SETTINGS: dict[str, Retired] = {
    "ConvLAMConfig.fdm_frames": Retired(2, _ISSUE_35),
    "ConvLAMConfig.global_motion": Retired(False, _ISSUE_35),
    "ConvLAMConfig.max_shift": Retired(0.25, _ISSUE_35),
    "ConvLAMConfig.camera_shift": Retired("off", _ISSUE_35),
    "ConvLAMConfig.fdm_hide_centre": Retired(0, _ISSUE_35),
    "ConvLAMConfig.fdm_next_outside": Retired(0, _ISSUE_35, digested=False),
    "ConvLAMConfig.persist_weight": Retired(0.0, _ISSUE_35),
    "ConvLAMConfig.camera_dx": Retired(6, _ISSUE_35),
    "ConvLAMConfig.camera_dy": Retired(12, _ISSUE_35),
    "ConvLAMConfig.centre_weight": Retired(0.0, _ISSUE_35),
    "ConvLAMConfig.change_weight": Retired(0.0, _ISSUE_35),
    "ConvLAMConfig.shift_rank_weight": Retired(0.0, _ISSUE_35, digested=False),
    "ConvLAMConfig.best_code_weight": Retired(0.0, _ISSUE_35, digested=False),
    "ConvLAMConfig.best_code_samples": Retired(16, _ISSUE_35, digested=False),
    "ConvLAMConfig.slow_weight": Retired(0.0, _ISSUE_35, digested=False),
    "DynamicsConfig.train_clean_context": Retired(False, _ISSUE_35),
    "DynamicsConfig.warp_motion": Retired(False, _ISSUE_35, digested=False),
    # scheduled sampling on the model's own rollouts: measured worse (docs/experiments.md, "A world that
    # holds together", self-forcing); never in a preset or a shipped model
    "DynamicsConfig.self_forcing": Retired(0.0, "cb49040", digested=False),
    "DynamicsConfig.self_forcing_steps": Retired(4, "cb49040", digested=False),
    # the InfoNCE square placed where the frame moved: better than the centre on Jumper, worse on Ninja
    # (docs/experiments.md, "Where the InfoNCE square should sit"); never in a preset
    "ConvLAMConfig.nce_crop_at": Retired("centre", "3a3df19", digested=False),
    # each decoded frame encoded again before it enters the context: drift lower, 16-frame FVD higher, in
    # one run (docs/experiments.md, "Re-encoding each frame"); never in a preset or a shipped model
    "SamplingConfig.reencode_frames": Retired(0, "ecc4e3a", digested=False),
}


def _is_off(value: Any, off: Any) -> bool:
    """``value`` is the retired setting's off value (a JSON ``false`` is not the number 0, nor ``true`` 1)."""
    return isinstance(value, bool) == isinstance(off, bool) and value == off


def digest_dict(cfg: Any) -> dict:
    """``to_dict(cfg)`` for hashing: the :data:`ADDED_SETTINGS` that hold their old value are left out, and
    the digested :data:`RETIRED_SETTINGS` are written back at their off value."""
    out = {}
    cls = type(cfg).__name__
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{cls}.{f.name}"
        if key in ADDED_SETTINGS and value == ADDED_SETTINGS[key]:
            continue
        out[f.name] = digest_dict(value) if dataclasses.is_dataclass(value) else value
    for key, retired in RETIRED_SETTINGS.items():
        owner, name = key.split(".")
        if owner == cls and retired.digested:
            out[name] = retired.off
    return out


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from a dict, recursing into nested dataclasses, and validate it
    (:func:`validate_config`) before returning.

    Raises :class:`ConfigError` naming any unknown key, and any field of the wrong type or out of bounds.
    """
    obj = _build(cls, data, where or cls.__name__, "")
    validate_config(obj, where or cls.__name__)
    return obj


def _build(cls: type[T], data: Any, where: str, prefix: str) -> T:
    if not isinstance(data, dict):
        what = prefix[:-1] or cls.__name__
        raise ConfigError(f"{where}: {what} must be an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    data = _drop_retired(cls, data, where, prefix)
    unknown = sorted(str(k) for k in set(data) - set(known))
    if unknown:
        at = f" in {prefix[:-1]}" if prefix else ""
        shown = ", ".join(repr(k[:40]) for k in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ConfigError(f"{where}: unknown key(s) [{shown}]{at}; known keys are {sorted(known)}")
    kwargs = {}
    hints = _type_hints(cls)
    for name, value in data.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, value, where, f"{prefix}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _drop_retired(cls: type, data: dict, where: str, prefix: str) -> dict:
    """``data`` without the :data:`RETIRED_SETTINGS` of ``cls`` that hold their off value; one that holds
    any other value raises :class:`ConfigError` naming the last commit that runs it."""
    out = dict(data)
    for key in data:
        retired = RETIRED_SETTINGS.get(f"{cls.__name__}.{key}")
        if retired is None:
            continue
        if not _is_off(data[key], retired.off):
            raise ConfigError(f"{where}: {prefix}{key}={_short_repr(data[key])}: this option was removed "
                              f"(docs/experiments.md, \"Options removed\"); it runs at commit {retired.commit}")
        del out[key]
    return out


def _type_hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def save_json(cfg: Any, path: str | Path) -> None:
    import json

    from genieworld.utils import atomic_write_text

    atomic_write_text(Path(path), json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")


def load_json(cls: type[T], path: str | Path) -> T:
    from genieworld.utils import read_json

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    return from_dict(cls, read_json(path, ConfigError), where=str(path))


def configs_dir() -> Path:
    """The presets folder: ``<repo>/configs`` (editable install) or the packaged copy."""
    repo = Path(__file__).resolve().parents[2] / "configs"
    if repo.is_dir():
        return repo
    return Path(__file__).resolve().parent / "configs"


def load_preset(name_or_path: str) -> Preset:
    """Load a preset by name (``tiny``, ``cpu``, ``coinrun-paper``) or from a JSON path."""
    p = Path(name_or_path)
    if p.suffix == ".json" and p.exists():
        preset = load_json(Preset, p)
        return preset
    path = configs_dir() / f"{name_or_path}.json"
    if not path.exists():
        available = sorted(x.stem for x in configs_dir().glob("*.json"))
        raise ConfigError(f"unknown preset {name_or_path!r}; available presets: {available} (or pass a .json path)")
    preset = load_json(Preset, path)
    preset.name = name_or_path
    return preset
