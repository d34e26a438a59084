"""Training configuration: one dataclass, optionally read from YAML, overridden from the CLI.

The research rows that compare MIPD's parts (``benchmarks/mipd_lab/variants.py``) are named
sets of ``MipdConfig``'s switches; the package itself names none of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from ..config import config_from, read_config
from ..errors import MipdEdgeError
from ..files import PathLike
from ..methods import method_info
from ..text import DEFAULT_TEXT_ENCODER


@dataclass(frozen=True)
class LossWeights:
    """The weights of the task losses (``train/losses.py``)."""

    verb: float = 1.0
    noun: float = 1.0
    box_l1: float = 5.0
    box_giou: float = 2.0
    exists: float = 1.0
    verb_smoothing: float = 0.0  # label smoothing over the training verbs (never an unseen one)
    noun_smoothing: float = 0.0


NEGATIVES = ("judged", "random", "none")
KNOWLEDGE = ("mapped", "anchored")
PAIRS = ("labelled", "all")
LOSS_SHAPES = ("ours", "authors")


@dataclass(frozen=True)
class MipdConfig:
    """Which parts of MIPD a student distils (``mipd:`` in a training config file).

    * ``scene`` / ``instance``: distil the glimpse (scene) knowledge into the glance, the gaze
      (instance) knowledge into the role features; at least one.
    * ``negatives``: what NMPA pushes the knowledge away from: the negatives the teacher
      judged most plausible (``judged``, JRG), random candidates with equal weights
      (``random``; needs rationales made with ``mipd-edge rationales --judgment random``),
      or ``none`` (the positive rationale only).
    * ``scene_prompt`` / ``instance_prompt``: learnable, image-conditioned context tokens in
      NMPA's prompts; without them NMPA maps the teacher's features to knowledge directly.
    * ``knowledge``: ``mapped`` into the student's text space, or ``anchored`` in the
      teacher's (its features corrected by the prompts; ``train/prompts.py``).
    * ``teacher_features``: also plain KD's feature terms (the teacher's global and region
      features through projections) beside the knowledge.
    * ``scene_head``: the scene knowledge meets a projection of the glance instead of the
      glance itself (which is what verb descriptions are matched against).
    * ``instance_head``: the instance knowledge meets a projection of the role features (the
      default) or, off, the student's noun embeddings themselves.
    * ``pairs`` (interactions only): distil at the ``labelled`` pairs of a training image, or
      at ``all`` its human-object pairs, the unlabelled ones through the teacher's judgment of
      their crops (``data/hoi_pairs.py``; needs ``mipd-edge hoi-pairs --unlabelled``).
    * ``losses``: ``ours`` (NMPA's weighted InfoNCE, distillation by 1 - cos) or ``authors``
      (the loss shapes of the authors' code, GitHub caicch/Ov-GSR, on our knowledge: NMPA
      pulls to the positive by 1 - cos and pushes the negatives by a margin-0 cosine hinge,
      weight 5 for scene and 1 for instance knowledge; distillation by L1).

    The defaults are the method as the SDK trains it; what each switch did to accuracy is in
    the documentation's MIPD page."""

    scene: bool = True
    instance: bool = True
    negatives: str = "judged"
    scene_prompt: bool = True
    instance_prompt: bool = True
    knowledge: str = "mapped"
    teacher_features: bool = False
    scene_head: bool = False
    instance_head: bool = True
    pairs: str = "labelled"
    losses: str = "ours"

    def __post_init__(self) -> None:
        if self.negatives not in NEGATIVES:
            raise MipdEdgeError(f"mipd negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if self.knowledge not in KNOWLEDGE:
            raise MipdEdgeError(f"mipd knowledge must be one of {KNOWLEDGE}, got {self.knowledge!r}")
        if self.losses not in LOSS_SHAPES:
            raise MipdEdgeError(f"mipd losses must be one of {LOSS_SHAPES}, got {self.losses!r}")
        if self.pairs not in PAIRS:
            raise MipdEdgeError(f"mipd pairs must be one of {PAIRS}, got {self.pairs!r}")
        if not self.instance_head and self.knowledge != "mapped":
            raise MipdEdgeError("mipd instance knowledge can meet the noun embeddings only when it is mapped into "
                                "the student's text space (knowledge 'mapped')")
        if not (self.scene or self.instance):
            raise MipdEdgeError("mipd needs scene or instance knowledge (or both); for neither, use method kd or none")

    @property
    def distance(self) -> str:
        """The shape of the distillation's distance to the knowledge (``losses.knowledge_distance``)."""
        return "l1" if self.losses == "authors" else "cosine"

    @property
    def judgment(self) -> str:
        """How the rationales' negatives must have been chosen: by the teacher, or at random."""
        return "random" if self.negatives == "random" else "teacher"


CPU_AUTOCAST = ("off", "bf16", "auto")
UNLABELED_GLANCE = ("auto", "head")


@dataclass(frozen=True)
class TrainConfig:
    """How a student (or the SynthSitu teacher) trains: ``mipd-edge distill`` / ``train-teacher``
    flags and ``--config`` keys, the ``loss`` and ``mipd`` sections in the file only."""

    method: str = "mipd"  # the distillation method: none, kd or mipd
    student: str = "edge-s"  # the student's size: edge-xs, edge-s or reference
    model: dict = field(default_factory=dict)  # overrides of the student configuration
    image_size: int = 128  # network input, pixels
    epochs: int = 12  # training epochs
    batch_size: int = 32  # images per step (per process under torchrun)
    lr: float = 1e-3  # AdamW's peak learning rate
    weight_decay: float = 0.05  # AdamW's weight decay
    warmup_epochs: float = 0.5  # linear warm-up, then a cosine schedule
    grad_clip: float = 1.0  # gradient norm clipping
    seed: int = 0  # initialisation and batch order
    flip: bool = True  # horizontal flips (boxes mirrored)
    text_encoder: str = DEFAULT_TEXT_ENCODER  # what embeds verbs, roles and nouns
    loss: LossWeights = field(default_factory=LossWeights)
    mipd: MipdConfig = field(default_factory=MipdConfig)
    align_weight: float = 2.0  # glance -> scene knowledge (mipd) or teacher global feature (kd)
    gaze_align_weight: float = 0.5  # role features -> instance knowledge (mipd) or teacher region features (kd)
    soft_weight: float = 1.0  # KL to the teacher's distribution over the training verbs
    temperature: float = 2.0  # of that KL's softened distributions
    # the distillation terms count from this fraction of training on, rising linearly to full
    # weight at ``distill_full`` (0 and 0: from the first step)
    distill_from: float = 0.0  # distillation starts at this fraction of training
    distill_full: float = 0.0  # and has full weight from this fraction on
    unlabeled_batch: int = 32  # distill --unlabeled: unlabeled images per step, beside the labeled batch
    unlabeled_weight: float = 1.0  # distill --unlabeled: the weight of the terms on unlabeled images
    # distill --unlabeled: the glance meets the teacher's feature directly where the teacher's space is
    # the student's text space (auto), or through a projection head always (head)
    unlabeled_glance: str = "auto"
    # distill --unlabeled: the teacher's distribution over the training verbs on unlabeled images too,
    # where the method distils soft labels (kd, mipd)
    unlabeled_soft: bool = True
    eval_batch_size: int = 64  # images per batch of the dev evaluation
    # speed only (the same model and losses): NHWC convolutions and a fused AdamW
    # (benchmarks/training_speed.py measures what they gain)
    channels_last: bool = True  # NHWC convolutions (speed only)
    fused_optimizer: bool = True  # one fused AdamW kernel (speed only)
    cpu_autocast: str = "auto"  # CPU training arithmetic: auto (bf16 where the CPU has bf16 units), bf16 or off (FP32)

    def __post_init__(self) -> None:
        method_info(self.method)
        if self.cpu_autocast not in CPU_AUTOCAST:
            raise MipdEdgeError(f"cpu_autocast must be one of {', '.join(CPU_AUTOCAST)}, got {self.cpu_autocast!r}")
        if self.unlabeled_glance not in UNLABELED_GLANCE:
            raise MipdEdgeError(f"unlabeled_glance must be one of {', '.join(UNLABELED_GLANCE)}, "
                                f"got {self.unlabeled_glance!r}")
        if self.unlabeled_batch < 1 or self.unlabeled_weight < 0:
            raise MipdEdgeError(f"unlabeled_batch must be at least 1 and unlabeled_weight at least 0, got "
                                f"{self.unlabeled_batch} and {self.unlabeled_weight}")
        if not 0.0 <= self.distill_from <= self.distill_full <= 1.0:
            raise MipdEdgeError(f"distill_from and distill_full are fractions of training, 0 <= from <= full <= 1, "
                                f"got {self.distill_from} and {self.distill_full}")

    def distillation_weight(self, trained: float) -> float:
        """How much the distillation terms count once a fraction ``trained`` of training is done."""
        if trained >= self.distill_full:
            return 1.0
        if trained < self.distill_from:
            return 0.0
        return (trained - self.distill_from) / (self.distill_full - self.distill_from)

    def to_json(self) -> dict[str, Any]:
        """Every field, as the student's ``config.json`` and ``--config`` files hold them."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "TrainConfig":
        return config_from(cls, obj, "training config")


def load_config(path: Optional[PathLike] = None, **overrides: Any) -> TrainConfig:
    """Defaults, then the YAML file, then explicit overrides (None means 'not given'); the
    ``model``, ``loss`` and ``mipd`` sections merge key by key."""
    return read_config(TrainConfig, path, overrides)
