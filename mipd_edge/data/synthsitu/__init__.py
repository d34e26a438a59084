"""SynthSitu: a procedural grounded-situation dataset in the SWiG format (DESIGN section 6)."""

from .generate import SynthConfig, generate, make_image, space
from .world import NOUNS, VERBS, confusable_verbs, covered_by_seen

__all__ = ["SynthConfig", "generate", "make_image", "space", "VERBS", "NOUNS", "confusable_verbs", "covered_by_seen"]
