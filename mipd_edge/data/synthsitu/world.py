"""The SynthSitu world: visual primitives, the verbs built from them, and the nouns.

A verb is a combination of six primitives: the agent's pose, where the item is relative
to the agent, whether the agent touches it, what moves, whether a tool is used, and who or
what is ahead (another person, a container). Its definition is composed from the same
phrases for every verb that shares a primitive, so a text encoder places verbs that share
primitives near each other, and a verb never seen in training can be recognised from its
description by a model that learnt what each phrase looks like.

Verbs that differ in one or two primitives are confusable (throwing / lifting differ only
in contact and motion); they supply the hard negatives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ...situation import Frame, Noun

POSE_TEXT = {
    "stand": "stands upright with the arms down",
    "raise": "stands with both arms raised above the head",
    "reach": "stands with both arms stretched forward",
    "crouch": "crouches low with bent knees",
    "sit": "sits on the ground",
    "lie": "lies flat on the ground",
}
RELATION_TEXT = {
    "overhead": "above the head",
    "hand": "at hand height in front of the body",
    "feet": "on the ground at the feet",
    "far": "on the ground far ahead",
}
MOTION_TEXT = {
    "still": "Nothing moves.",
    "agent": "The person moves forward.",
    "item": "The object flies away from the person.",
    "both": "The person and the object both move forward.",
}
PARTNER_TEXT = {
    "person": "Another person stands ahead, facing them.",
    "container": "A container stands on the ground ahead.",
}


@dataclass(frozen=True)
class VerbSpec:
    name: str
    pose: str
    relation: str = "none"
    contact: bool = False
    motion: str = "still"
    tool: bool = False
    partner: str = "none"
    partner_role: str = ""
    items: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()

    @property
    def primitives(self) -> tuple:
        return (self.pose, self.relation, self.contact, self.motion, self.tool, self.partner)

    @property
    def roles(self) -> tuple[str, ...]:
        roles = ["agent"]
        if self.relation != "none":
            roles.append("item")
        if self.tool:
            roles.append("tool")
        if self.partner != "none":
            roles.append(self.partner_role or ("recipient" if self.partner == "person" else "destination"))
        roles.append("place")
        return tuple(roles)

    def definition(self) -> str:
        text = f"Someone {POSE_TEXT[self.pose]}"
        if self.relation != "none":
            text += f", {'touching' if self.contact and not self.tool else 'not touching'} an object " \
                    f"{RELATION_TEXT[self.relation]}"
        if self.tool:
            text += ", reaching it with a long tool held in the hands"
        text += "."
        if self.partner != "none":
            text += " " + PARTNER_TEXT[self.partner]
        return f"{text} {MOTION_TEXT[self.motion]}"

    def abstract(self) -> str:
        words = ["the AGENT", self.name]
        if "item" in self.roles:
            words.append("the ITEM")
        if self.tool:
            words.append("with the TOOL")
        if self.partner != "none":
            words.append(f"toward the {self.roles[-2].upper()}")
        words.append("at the PLACE")
        return " ".join(words)

    def frame(self) -> Frame:
        defs = {
            "agent": f"the person who is {self.name}",
            "item": f"the object involved in {self.name}",
            "tool": f"the tool used for {self.name}",
            "recipient": "the other person, who receives the object",
            "coagent": "the other person, who takes part",
            "destination": "the container the object goes toward",
            "place": f"where the {self.name} happens",
        }
        return Frame(verb=self.name, roles=self.roles, role_definitions={r: defs[r] for r in self.roles},
                     definition=self.definition(), abstract=self.abstract(), framenet=self.name.capitalize())


_HANDHELD = ("ball", "apple", "box", "book", "bottle", "cup", "bag", "hat", "flower", "fish", "pumpkin")
_THROWN = ("ball", "apple", "hat", "kite", "balloon", "bottle", "pumpkin")
_GROUND = ("ball", "box", "bag", "pumpkin", "bottle", "kite", "fish")
_ANY = _HANDHELD + ("kite", "balloon")

VERBS: tuple[VerbSpec, ...] = (
    # no item
    VerbSpec("standing", "stand"),
    VerbSpec("walking", "stand", motion="agent"),
    VerbSpec("sitting", "sit"),
    VerbSpec("lying", "lie"),
    VerbSpec("crawling", "lie", motion="agent"),
    VerbSpec("squatting", "crouch"),
    VerbSpec("cheering", "raise"),
    VerbSpec("jumping", "raise", motion="agent"),
    VerbSpec("waving", "raise", partner="person", partner_role="coagent"),
    VerbSpec("following", "stand", motion="agent", partner="person", partner_role="coagent"),
    # an item, no tool
    VerbSpec("holding", "stand", "hand", True, items=_HANDHELD),
    VerbSpec("carrying", "stand", "hand", True, "agent", items=_HANDHELD),
    VerbSpec("lifting", "raise", "overhead", True, items=_HANDHELD),
    VerbSpec("balancing", "stand", "overhead", True, items=_HANDHELD),
    VerbSpec("throwing", "raise", "overhead", False, "item", items=_THROWN),
    VerbSpec("kicking", "stand", "feet", True, "item", items=_GROUND),
    VerbSpec("stepping", "stand", "feet", True, items=_GROUND),
    VerbSpec("picking", "crouch", "feet", True, items=_ANY),
    VerbSpec("rolling", "crouch", "feet", True, "item", items=_GROUND),
    VerbSpec("pushing", "reach", "hand", True, "agent", items=_HANDHELD),
    VerbSpec("catching", "reach", "hand", False, "item", items=_THROWN),
    VerbSpec("showing", "reach", "hand", True, items=_ANY),
    VerbSpec("watching", "stand", "far", False, items=_ANY),
    VerbSpec("chasing", "stand", "far", False, "both", items=_THROWN),
    VerbSpec("reading", "sit", "hand", True, items=("book", "bottle", "cup", "box", "flower")),
    VerbSpec("cuddling", "lie", "hand", True, items=_HANDHELD),
    VerbSpec("juggling", "reach", "overhead", False, "item", items=_THROWN),
    VerbSpec("dropping", "reach", "feet", False, "item", items=_ANY),
    VerbSpec("shading", "sit", "overhead", True, items=("hat", "book", "bag", "box", "kite")),
    VerbSpec("dragging", "stand", "feet", True, "both", items=_GROUND),
    VerbSpec("stalking", "crouch", "far", False, items=_ANY),
    VerbSpec("tossing", "sit", "overhead", False, "item", items=_THROWN),
    # an item and a tool
    VerbSpec("batting", "stand", "hand", True, "item", True, items=_THROWN, tools=("bat", "racket", "stick")),
    VerbSpec("sweeping", "stand", "feet", True, "agent", True, items=_GROUND, tools=("broom", "brush")),
    VerbSpec("digging", "crouch", "feet", True, "still", True, items=_GROUND, tools=("shovel", "stick")),
    VerbSpec("fishing", "sit", "far", True, "still", True, items=("fish", "bottle", "hat"), tools=("rod", "stick")),
    VerbSpec("towing", "stand", "far", True, "both", True, items=_GROUND, tools=("rope",)),
    VerbSpec("painting", "stand", "hand", True, "still", True, items=_HANDHELD, tools=("brush", "stick")),
    VerbSpec("poking", "reach", "far", True, "still", True, items=_ANY, tools=("stick", "broom", "racket")),
    VerbSpec("hoisting", "raise", "overhead", True, "still", True, items=_HANDHELD, tools=("stick", "shovel")),
    # another person
    VerbSpec("giving", "reach", "hand", True, partner="person", items=_HANDHELD),
    VerbSpec("passing", "raise", "overhead", False, "item", partner="person", items=_THROWN),
    VerbSpec("serving", "reach", "hand", True, "still", True, "person", items=_HANDHELD, tools=("racket", "shovel")),
    VerbSpec("bowling", "crouch", "feet", False, "item", partner="person", items=_GROUND),
    # a container
    VerbSpec("packing", "crouch", "feet", True, partner="container", items=_ANY),
    VerbSpec("shooting", "raise", "overhead", False, "item", partner="container", items=_THROWN),
    VerbSpec("delivering", "stand", "hand", True, "agent", partner="container", items=_HANDHELD),
    VerbSpec("shoveling", "crouch", "feet", True, "item", True, "container", items=_GROUND, tools=("shovel",)),
)


@dataclass(frozen=True)
class NounSpec:
    key: str
    category: str  # agent | item | tool | container | place | hypernym
    glosses: tuple[str, ...]
    definition: str
    color: tuple[int, int, int] = (128, 128, 128)  # BGR
    hypernym: Optional[str] = None
    extra: dict = field(default_factory=dict)


NOUNS: tuple[NounSpec, ...] = (
    NounSpec("person", "hypernym", ("person", "human"), "a human being"),
    NounSpec("child", "hypernym", ("child", "kid"), "a young person"),
    NounSpec("machine", "hypernym", ("machine",), "a mechanical device"),
    NounSpec("man", "agent", ("man", "adult male"), "an adult male person in a blue shirt", (180, 90, 30), "person"),
    NounSpec("woman", "agent", ("woman", "adult female"), "an adult female person in a red dress with long hair",
             (40, 40, 200), "person", {"dress": True, "hair": True}),
    NounSpec("boy", "agent", ("boy", "young male"), "a young male child in a green shirt", (60, 160, 40), "child",
             {"scale": 0.75}),
    NounSpec("girl", "agent", ("girl", "young female"), "a young female child in a pink dress with long hair",
             (180, 110, 230), "child", {"scale": 0.75, "dress": True, "hair": True}),
    NounSpec("robot", "agent", ("robot", "android"), "a grey metal machine shaped like a person with a square head",
             (150, 150, 150), "machine", {"robot": True}),
    NounSpec("toy", "hypernym", ("toy", "plaything"), "an object children play with"),
    NounSpec("fruit", "hypernym", ("fruit",), "the edible seed-bearing part of a plant"),
    NounSpec("package", "hypernym", ("package", "parcel"), "a wrapped container of goods"),
    NounSpec("clothing", "hypernym", ("clothing", "garment"), "something worn on the body"),
    NounSpec("plant", "hypernym", ("plant", "flora"), "a living thing that grows in the ground"),
    NounSpec("animal", "hypernym", ("animal", "creature"), "a living creature"),
    NounSpec("ball", "item", ("ball",), "a round orange toy with a stripe", (0, 140, 255), "toy", {"shape": "ball"}),
    NounSpec("apple", "item", ("apple",), "a small round red fruit with a green leaf", (30, 30, 210), "fruit",
             {"shape": "apple"}),
    NounSpec("box", "item", ("box", "carton"), "a square brown cardboard box", (50, 100, 150), "package",
             {"shape": "box"}),
    NounSpec("book", "item", ("book",), "a blue rectangular book with white pages", (160, 60, 20), None,
             {"shape": "book"}),
    NounSpec("bottle", "item", ("bottle",), "a tall thin green bottle with a cap", (60, 150, 30), None,
             {"shape": "bottle"}),
    NounSpec("cup", "item", ("cup", "mug"), "a small white cup", (235, 235, 235), None, {"shape": "cup"}),
    NounSpec("bag", "item", ("bag", "handbag"), "a purple bag with a handle", (140, 40, 120), "package",
             {"shape": "bag"}),
    NounSpec("hat", "item", ("hat", "cap"), "a black hat with a brim", (30, 30, 30), "clothing", {"shape": "hat"}),
    NounSpec("flower", "item", ("flower", "blossom"), "a pink flower with a yellow centre", (180, 100, 255), "plant",
             {"shape": "flower"}),
    NounSpec("fish", "item", ("fish",), "a silver fish with a tail fin", (200, 200, 180), "animal",
             {"shape": "fish"}),
    NounSpec("kite", "item", ("kite",), "a yellow and red diamond-shaped kite", (0, 220, 240), "toy",
             {"shape": "kite"}),
    NounSpec("balloon", "item", ("balloon",), "an oval red balloon on a string", (60, 20, 230), "toy",
             {"shape": "balloon"}),
    NounSpec("pumpkin", "item", ("pumpkin", "squash"), "a large orange ribbed pumpkin", (20, 110, 230), "fruit",
             {"shape": "pumpkin"}),
    NounSpec("tool", "hypernym", ("tool", "implement"), "a hand-held object used to do a job"),
    NounSpec("stick", "tool", ("stick", "pole"), "a long thin brown piece of wood", (40, 80, 120), "tool",
             {"shape": "stick"}),
    NounSpec("bat", "tool", ("bat", "club"), "a thick wooden bat used to hit balls", (90, 170, 210), "tool",
             {"shape": "bat"}),
    NounSpec("broom", "tool", ("broom",), "a long stick with yellow bristles for sweeping", (40, 80, 120), "tool",
             {"shape": "broom"}),
    NounSpec("shovel", "tool", ("shovel", "spade"), "a long handle with a grey metal blade for digging",
             (40, 80, 120), "tool", {"shape": "shovel"}),
    NounSpec("rope", "tool", ("rope", "cord"), "a long wavy rope", (120, 170, 200), "tool", {"shape": "rope"}),
    NounSpec("rod", "tool", ("fishing rod", "rod"), "a thin black fishing rod with a line", (20, 20, 20), "tool",
             {"shape": "rod"}),
    NounSpec("brush", "tool", ("brush", "paintbrush"), "a stick with a coloured brush tip", (40, 80, 120), "tool",
             {"shape": "brush"}),
    NounSpec("racket", "tool", ("racket", "racquet"), "a handle with an oval strung head", (200, 80, 40), "tool",
             {"shape": "racket"}),
    NounSpec("container", "hypernym", ("container", "receptacle"), "an object that holds things"),
    NounSpec("basket", "container", ("basket",), "a brown woven basket", (40, 110, 170), "container",
             {"shape": "basket"}),
    NounSpec("bucket", "container", ("bucket", "pail"), "a grey metal bucket", (160, 160, 160), "container",
             {"shape": "bucket"}),
    NounSpec("cart", "container", ("cart", "wagon"), "a red cart on two wheels", (30, 30, 190), "container",
             {"shape": "cart"}),
    NounSpec("crate", "container", ("crate",), "a wooden crate made of slats", (70, 140, 190), "container",
             {"shape": "crate"}),
    NounSpec("outdoors", "hypernym", ("outdoors", "outside"), "a place in the open air"),
    NounSpec("indoors", "hypernym", ("indoors", "room"), "a place inside a building"),
    NounSpec("field", "place", ("field", "meadow"), "an open area of green grass under the sky",
             hypernym="outdoors"),
    NounSpec("beach", "place", ("beach", "seashore"), "yellow sand beside blue sea water", hypernym="outdoors"),
    NounSpec("snowfield", "place", ("snowfield", "snow"), "ground covered in white snow", hypernym="outdoors"),
    NounSpec("street", "place", ("street", "road"), "a grey asphalt road with white lane markings",
             hypernym="outdoors"),
    NounSpec("forest", "place", ("forest", "woods"), "dark green woodland with brown tree trunks",
             hypernym="outdoors"),
    NounSpec("kitchen", "place", ("kitchen",), "a room with a checkered tile floor and cupboards",
             hypernym="indoors"),
    NounSpec("living room", "place", ("living room", "lounge"), "a room with a wooden plank floor and a window",
             hypernym="indoors"),
)

NOUN_BY_KEY = {n.key: n for n in NOUNS}
VERB_BY_NAME = {v.name: v for v in VERBS}


def noun_id(key: str) -> str:
    """WordNet-style ids, stable across versions because they follow the NOUNS order."""
    return f"n{90000001 + [n.key for n in NOUNS].index(key):08d}"


def nouns_of(category: str) -> list[str]:
    return [n.key for n in NOUNS if n.category == category]


def frames() -> dict[str, Frame]:
    return {v.name: v.frame() for v in VERBS}


def nouns() -> dict[str, Noun]:
    return {noun_id(n.key): Noun(noun_id(n.key), n.glosses, n.definition) for n in NOUNS}


def primitive_distance(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(VERB_BY_NAME[a].primitives, VERB_BY_NAME[b].primitives))


def confusable_verbs(verb: str) -> list[str]:
    """The verbs nearest to ``verb`` in primitives (one or two differences)."""
    others = {v.name: primitive_distance(verb, v.name) for v in VERBS if v.name != verb}
    nearest = min(others.values())
    return [v for v, d in others.items() if d == nearest <= 2]


def covered_by_seen(split: dict) -> bool:
    """True when every primitive value of every unseen verb is shown by some seen verb.

    Unseen verbs must be new combinations of things training shows, or no model could
    recognise them; this is SynthSitu's condition on its Ov split.
    """
    seen = [VERB_BY_NAME[v].primitives for v in split["seen"]]
    for verb in split["unseen"]:
        for axis, value in enumerate(VERB_BY_NAME[verb].primitives):
            if not any(p[axis] == value for p in seen):
                return False
    return True
