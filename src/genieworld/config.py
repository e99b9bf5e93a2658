"""Configuration dataclasses and presets.

Every model and training run is described by plain dataclasses that are saved as
JSON beside the weights. Presets live in the repository's ``configs/`` folder
(``tiny``, ``cpu``, ``coinrun-paper``); a preset file holds one section per
component::

    {"tokenizer": {...}, "lam": {...}, "dynamics": {...},
     "tokenizer_train": {...}, "dynamics_train": {...}}

``load_preset("tiny")`` returns a :class:`Preset`. Unknown keys in a JSON file are
an error that names the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

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
    """Settings of the convolutional LAM (``LAMConfig.arch == "conv"``); ignored by the transformer LAM."""

    channels: int = 32  # inverse dynamics: width of the first conv level (doubled per level, capped at 4x)
    hidden: int = 256  # width of the inverse-dynamics MLP head
    fdm_channels: int = 16  # forward dynamics (decoder): width of its first U-Net level
    # Frames the forward model sees: 2 = (x_{t-1}, x_t); 1 = x_t alone, so the motion it could
    # extrapolate from x_{t-1} -> x_t (which, when actions are held, gives the action away) must
    # come through the latent action instead.
    fdm_frames: int = 2
    # The forward model first moves x_t by a predicted global shift (dx, dy) -- the camera's motion,
    # which in a side-scroller that follows the agent is most of what an action does -- then adds
    # its U-Net's residual.  Rendering "the picture moved 3 px left" then costs the action one number.
    global_motion: bool = False
    max_shift: float = 0.25  # largest global shift, as a fraction of the frame size
    # Extra loss weight of a Gaussian bump (sigma = image_size / 8) at the frame centre, where
    # CoinRun's camera keeps the agent: 0 = a plain MSE.
    centre_weight: float = 0.0
    # Extra loss weight on pixels that changed between x_t and x_{t+1} (weight 1 + k * |change| /
    # mean |change|), so the loss is about what moved rather than the static background.
    change_weight: float = 0.0


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

    @property
    def num_actions(self) -> int:
        return self.vq.num_codes


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


@dataclass
class SamplingConfig:
    maskgit_steps: int = 25
    temperature: float = 1.0
    schedule: str = "cosine"  # "cosine" | "linear"
    context_frames: int = 16  # sliding window; defaults to the training length
    # MaskGIT steps for interactive play (`genie play`, GenieEnv); None = maskgit_steps.
    # Evaluation always uses maskgit_steps (the paper's 25). See bench/bench_generate.py.
    play_maskgit_steps: int | None = None


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


class ConfigError(ValueError):
    """A config file or dict does not match the dataclass it should describe."""


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from a dict, recursing into nested dataclasses.

    Raises :class:`ConfigError` naming any unknown key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    kwargs = {}
    hints = _type_hints(cls)
    for name, value in data.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            kwargs[name] = from_dict(typ, value, f"{where}.{name}" if where else name)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _type_hints(cls: type) -> dict:
    import typing

    return typing.get_type_hints(cls)


def save_json(cfg: Any, path: str | Path) -> None:
    from genieworld.utils import atomic_write_text

    atomic_write_text(Path(path), json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")


def load_json(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    return from_dict(cls, data, where=path.name)


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
