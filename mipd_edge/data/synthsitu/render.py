"""Drawing a SynthSitu scene: a place, an agent in a pose, an item, a tool, a partner.

A scene is laid out first in *body units* (the agent's height is 1, x points the way the
agent faces, y points up, the agent's feet are at the origin), as a list of shapes each
tagged with the role it belongs to. Only then is it scaled, mirrored and placed in the
image, so the boxes of the annotation are exactly the extents of what was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from .world import NOUN_BY_KEY, NounSpec, VerbSpec

SKIN = (140, 180, 225)
PANTS = (70, 50, 40)


@dataclass
class Shape:
    kind: str  # line | polyline | circle | ellipse | poly | rect
    points: np.ndarray  # (N, 2) in body units
    color: tuple[int, int, int]
    size: float = 0.0  # line thickness, circle radius or ellipse (ax, ay) as points[1]
    role: Optional[str] = None
    filled: bool = True

    def extent(self) -> np.ndarray:
        """[x1, y1, x2, y2] in body units (y up)."""
        p = self.points
        if self.kind == "circle":
            c, r = p[0], self.size
            return np.array([c[0] - r, c[1] - r, c[0] + r, c[1] + r])
        if self.kind == "ellipse":
            c, ax = p[0], p[1]
            return np.array([c[0] - ax[0], c[1] - ax[1], c[0] + ax[0], c[1] + ax[1]])
        pad = self.size / 2 if self.kind in ("line", "polyline") else 0.0
        return np.array([p[:, 0].min() - pad, p[:, 1].min() - pad, p[:, 0].max() + pad, p[:, 1].max() + pad])


def _pt(*xy: float) -> np.ndarray:
    return np.array(xy, dtype=np.float64).reshape(-1, 2)


# --- the agent -------------------------------------------------------------------------

def skeleton(pose: str, moving: bool) -> dict[str, np.ndarray]:
    """Key points of a figure of height 1 facing +x."""
    k = {"foot_b": _pt(-0.1, 0), "foot_f": _pt(0.1, 0), "knee_b": _pt(-0.08, 0.25), "knee_f": _pt(0.08, 0.25),
         "hip": _pt(0, 0.5), "neck": _pt(0, 0.82), "head": _pt(0, 0.91),
         "hand_b": _pt(-0.14, 0.5), "hand_f": _pt(0.14, 0.5)}
    if pose == "raise":
        k.update(hand_b=_pt(-0.13, 1.1), hand_f=_pt(0.13, 1.1))
    elif pose == "reach":
        k.update(hand_b=_pt(0.36, 0.74), hand_f=_pt(0.4, 0.7))
    elif pose == "crouch":
        k.update(foot_b=_pt(-0.12, 0), foot_f=_pt(0.12, 0), knee_b=_pt(0.05, 0.2), knee_f=_pt(0.2, 0.2),
                 hip=_pt(-0.08, 0.3), neck=_pt(0.08, 0.58), head=_pt(0.12, 0.67),
                 hand_b=_pt(0.24, 0.1), hand_f=_pt(0.3, 0.08))
    elif pose == "sit":
        k.update(foot_b=_pt(0.38, 0), foot_f=_pt(0.42, 0), knee_b=_pt(0.18, 0.2), knee_f=_pt(0.22, 0.18),
                 hip=_pt(0, 0.1), neck=_pt(-0.02, 0.42), head=_pt(-0.02, 0.51),
                 hand_b=_pt(0.2, 0.28), hand_f=_pt(0.24, 0.3))
    elif pose == "lie":
        k.update(foot_b=_pt(-0.5, 0.04), foot_f=_pt(-0.48, 0.06), knee_b=_pt(-0.3, 0.05), knee_f=_pt(-0.3, 0.07),
                 hip=_pt(-0.1, 0.07), neck=_pt(0.22, 0.08), head=_pt(0.33, 0.1),
                 hand_b=_pt(0.4, 0.2), hand_f=_pt(0.45, 0.22))
    if moving and pose in ("stand", "raise", "reach"):
        k.update(foot_b=_pt(-0.22, 0), foot_f=_pt(0.22, 0), knee_b=_pt(-0.1, 0.26), knee_f=_pt(0.14, 0.27),
                 neck=k["neck"] + _pt(0.05, 0), head=k["head"] + _pt(0.06, 0))
    return k


def figure(noun: NounSpec, pose: str, moving: bool, role: str, scale: float = 1.0,
           origin: np.ndarray = _pt(0, 0), facing: int = 1) -> list[Shape]:
    """A person (or robot) as shapes; ``scale`` shrinks children, ``facing`` -1 turns it round."""
    s = scale * noun.extra.get("scale", 1.0)
    k = {n: origin + p * _pt(facing * s, s) for n, p in skeleton(pose, moving).items()}
    robot = noun.extra.get("robot", False)
    limb = noun.color if robot else SKIN
    legs = noun.color if robot else PANTS
    t = 0.035 * s
    shapes = [Shape("polyline", np.vstack([k["hip"], k["knee_b"], k["foot_b"]]), legs, t, role),
              Shape("polyline", np.vstack([k["hip"], k["knee_f"], k["foot_f"]]), legs, t, role)]
    torso = np.vstack([k["neck"], k["hip"]])
    if robot:
        d = (k["neck"] - k["hip"])[0]
        n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9) * 0.07 * s
        shapes.append(Shape("poly", np.vstack([k["neck"] + n, k["neck"] - n, k["hip"] - n, k["hip"] + n]),
                            noun.color, role=role))
    elif noun.extra.get("dress"):
        d = (k["hip"] - k["neck"])[0]
        n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
        shapes.append(Shape("poly", np.vstack([k["neck"], k["hip"] + d * 0.25 + n * 0.09 * s,
                                               k["hip"] + d * 0.25 - n * 0.09 * s]), noun.color, role=role))
    else:
        shapes.append(Shape("line", torso, noun.color, 0.1 * s, role))
    axis = (k["neck"] - k["hip"])[0]
    across = np.array([axis[1], -axis[0]]) / (np.linalg.norm(axis) + 1e-9) * 0.05 * s * facing
    shoulder = k["neck"][0] - axis * 0.08
    shapes += [Shape("line", np.vstack([shoulder - across, k["hand_b"][0]]), limb, t, role),
               Shape("line", np.vstack([shoulder + across, k["hand_f"][0]]), limb, t, role)]
    r = 0.09 * s
    if robot:
        c = k["head"][0]
        shapes.append(Shape("rect", _pt(c[0] - r, c[1] - r, c[0] + r, c[1] + r), noun.color, role=role))
        shapes.append(Shape("circle", _pt(c[0] + facing * r * 0.4, c[1] + r * 0.2), (40, 200, 255), r * 0.25, role))
    else:
        if noun.extra.get("hair"):
            c = k["head"][0]
            shapes.append(Shape("poly", _pt(c[0] - facing * r * 1.1, c[1] + r * 0.6, c[0] - facing * r * 1.4,
                                            c[1] - r * 2.2, c[0] + facing * r * 0.2, c[1] - r * 0.5),
                                (30, 50, 90), role=role))
        shapes.append(Shape("circle", k["head"], SKIN, r, role))
    return shapes


# --- objects ---------------------------------------------------------------------------

ITEM_SIZE = {"book": (0.18, 0.13), "bottle": (0.07, 0.2), "cup": (0.1, 0.1), "bag": (0.16, 0.16),
             "hat": (0.2, 0.12), "flower": (0.14, 0.2), "fish": (0.22, 0.09), "kite": (0.16, 0.22),
             "balloon": (0.13, 0.26), "pumpkin": (0.2, 0.15), "apple": (0.13, 0.15)}


ITEM_SCALE = 1.3  # items a little larger than life, so they stay legible in small images


def item_size(key: str, scale: float = 1.0) -> np.ndarray:
    return np.array(ITEM_SIZE.get(key, (0.16, 0.16))) * scale * ITEM_SCALE


def item(noun: NounSpec, center: np.ndarray, role: Optional[str], scale: float = 1.0) -> list[Shape]:
    c = center.reshape(2)
    w, h = item_size(noun.key, scale) / 2
    col = noun.color
    dark = tuple(int(v * 0.55) for v in col)
    shape = noun.extra["shape"]

    def rect(x1, y1, x2, y2, color=col):
        return Shape("rect", _pt(c[0] + x1, c[1] + y1, c[0] + x2, c[1] + y2), color, role=role)

    if shape == "ball":
        return [Shape("circle", _pt(*c), col, w, role),
                Shape("line", _pt(c[0] - w * 0.9, c[1], c[0] + w * 0.9, c[1]), (255, 255, 255), w * 0.3, role)]
    if shape == "apple":
        return [Shape("circle", _pt(c[0], c[1] - h + w), col, w, role),
                Shape("ellipse", _pt(c[0] + w * 0.3, c[1] + h - w * 0.35, w * 0.45, w * 0.3), (40, 160, 40), role=role)]
    if shape == "box":
        return [rect(-w, -h, w, h), rect(-w * 0.15, -h, w * 0.15, h, dark)]
    if shape == "book":
        return [rect(-w, -h, w, h), rect(w * 0.6, -h * 0.85, w, h * 0.85, (245, 245, 245))]
    if shape == "bottle":
        return [rect(-w, -h, w, h * 0.55), rect(-w * 0.45, h * 0.55, w * 0.45, h, dark)]
    if shape == "cup":
        return [Shape("poly", _pt(c[0] - w, c[1] + h, c[0] + w, c[1] + h, c[0] + w * 0.7, c[1] - h,
                                  c[0] - w * 0.7, c[1] - h), col, role=role),
                Shape("ellipse", _pt(c[0] + w, c[1], w * 0.35, h * 0.4), (90, 90, 90), role=role, filled=False,
                      size=0.012 * scale)]
    if shape == "bag":
        return [rect(-w, -h, w, h * 0.4),
                Shape("ellipse", _pt(c[0], c[1] + h * 0.4, w * 0.55, h * 0.6), dark, 0.02 * scale, role, False)]
    if shape == "hat":
        return [rect(-w, -h, w, -h * 0.6), rect(-w * 0.6, -h * 0.6, w * 0.6, h)]
    if shape == "flower":
        stem = Shape("line", _pt(c[0], c[1] - h, c[0], c[1] + h * 0.2), (40, 140, 40), 0.02 * scale, role)
        head = c + np.array([0, h * 0.45])
        r = w * 0.38
        petals = [Shape("circle", _pt(head[0] + np.cos(a) * r, head[1] + np.sin(a) * r), col, r * 0.75, role)
                  for a in np.linspace(0, 2 * np.pi, 6)[:5]]
        return [stem, *petals, Shape("circle", _pt(*head), (0, 215, 255), r * 0.55, role)]
    if shape == "fish":
        return [Shape("ellipse", _pt(c[0] + w * 0.15, c[1], w * 0.8, h), col, role=role),
                Shape("poly", _pt(c[0] - w * 0.55, c[1], c[0] - w, c[1] + h, c[0] - w, c[1] - h), dark, role=role),
                Shape("circle", _pt(c[0] + w * 0.6, c[1] + h * 0.25), (20, 20, 20), h * 0.18, role)]
    if shape == "kite":
        pts = _pt(c[0], c[1] + h, c[0] + w, c[1] + h * 0.2, c[0], c[1] - h, c[0] - w, c[1] + h * 0.2)
        return [
            Shape("poly", pts, col, role=role),
            Shape("line", _pt(c[0], c[1] + h, c[0], c[1] - h), (30, 30, 200), 0.015 * scale, role),
            Shape("line", _pt(c[0] - w, c[1] + h * 0.2, c[0] + w, c[1] + h * 0.2), (30, 30, 200), 0.015 * scale, role),
        ]
    if shape == "balloon":
        return [Shape("ellipse", _pt(c[0], c[1] + h * 0.35, w, h * 0.65), col, role=role),
                Shape("line", _pt(c[0], c[1] - h * 0.3, c[0], c[1] - h), (80, 80, 80), 0.01 * scale, role)]
    if shape == "pumpkin":
        return [
            Shape("ellipse", _pt(c[0], c[1] - h * 0.1, w, h * 0.9), col, role=role),
            Shape("line", _pt(c[0], c[1] - h, c[0], c[1] + h * 0.8), dark, 0.015 * scale, role),
            Shape("rect", _pt(c[0] - w * 0.08, c[1] + h * 0.8, c[0] + w * 0.08, c[1] + h), (40, 120, 40), role=role),
        ]
    raise ValueError(f"no drawing for item shape {shape!r}")


def tool(noun: NounSpec, hand: np.ndarray, tip: np.ndarray, role: str) -> list[Shape]:
    """A tool held at ``hand`` whose working end is at ``tip``."""
    a, b = hand.reshape(2), tip.reshape(2)
    d = b - a
    u = d / (np.linalg.norm(d) + 1e-9)
    n = np.array([-u[1], u[0]])
    shape = noun.extra["shape"]
    handle = Shape("line", np.vstack([a, b]), noun.color, 0.022, role)
    if shape == "stick":
        return [handle]
    if shape == "bat":
        return [
            Shape(
                "poly", np.vstack([a + n * 0.012, b + n * 0.035, b - n * 0.035, a - n * 0.012]), noun.color, role=role
            )
        ]
    if shape == "rod":
        return [Shape("line", np.vstack([a, b]), noun.color, 0.012, role)]
    if shape == "rope":
        t = np.linspace(0, 1, 24)[:, None]
        pts = a + d * t + n * 0.03 * np.sin(t * 6 * np.pi)
        return [Shape("polyline", pts, noun.color, 0.02, role)]
    if shape == "broom":
        return [handle, Shape("poly", np.vstack([b, b + u * 0.12 + n * 0.06, b + u * 0.12 - n * 0.06]),
                              (40, 190, 230), role=role)]
    if shape == "shovel":
        return [handle, Shape("poly", np.vstack([b + n * 0.045, b + u * 0.1 + n * 0.035, b + u * 0.13,
                                                 b + u * 0.1 - n * 0.035, b - n * 0.045]), (150, 150, 160), role=role)]
    if shape == "brush":
        return [handle, Shape("circle", (b + u * 0.025).reshape(1, 2), (200, 40, 200), 0.03, role)]
    if shape == "racket":
        c = b + u * 0.07
        return [handle, Shape("ellipse", np.vstack([c, [0.05, 0.05]]), noun.color, 0.015, role, False),
                Shape("ellipse", np.vstack([c, [0.04, 0.04]]), (220, 220, 220), 0.006, role, False)]
    raise ValueError(f"no drawing for tool shape {shape!r}")


def container(noun: NounSpec, base_x: float, role: str) -> list[Shape]:
    w, h, x = 0.16, 0.22, base_x
    col = noun.color
    shape = noun.extra["shape"]
    if shape == "bucket":
        return [Shape("poly", _pt(x - w, h, x + w, h, x + w * 0.75, 0, x - w * 0.75, 0), col, role=role),
                Shape("ellipse", _pt(x, h, w * 0.8, h * 0.5), (90, 90, 90), 0.015, role, False)]
    if shape == "cart":
        return [Shape("rect", _pt(x - w, 0.06, x + w, h), col, role=role),
                Shape("circle", _pt(x - w * 0.6, 0.05), (30, 30, 30), 0.05, role),
                Shape("circle", _pt(x + w * 0.6, 0.05), (30, 30, 30), 0.05, role)]
    body = [Shape("poly", _pt(x - w, h, x + w, h, x + w * 0.85, 0, x - w * 0.85, 0), col, role=role)]
    dark = tuple(int(v * 0.6) for v in col)
    if shape == "basket":
        return body + [Shape("line", _pt(x - w + i * 0.06, 0, x - w + i * 0.06 + 0.06, h), dark, 0.01, role)
                       for i in range(5)]
    if shape == "crate":
        return body + [Shape("line", _pt(x - w * 0.9, y, x + w * 0.9, y), dark, 0.015, role) for y in (0.07, 0.15)]
    raise ValueError(f"no drawing for container shape {shape!r}")


def speed_lines(extent: np.ndarray, color=(255, 255, 255)) -> list[Shape]:
    """Three short strokes behind the back (the -x side) of an extent: 'this is moving'."""
    x1, y1, _, y2 = extent
    h = y2 - y1
    return [Shape("line", _pt(x1 - 0.05, y1 + h * f, x1 - 0.05 - 0.22 * max(h, 0.3), y1 + h * f), color, 0.018)
            for f in (0.25, 0.5, 0.75)]


def union(shapes: list[Shape]) -> np.ndarray:
    e = np.array([s.extent() for s in shapes])
    return np.array([e[:, 0].min(), e[:, 1].min(), e[:, 2].max(), e[:, 3].max()])


# --- the scene -------------------------------------------------------------------------

def layout(verb: VerbSpec, fillers: dict[str, str], rng: np.random.Generator) -> list[Shape]:
    """Every shape of the scene in body units, tagged with its role."""
    agent = NOUN_BY_KEY[fillers["agent"]]
    moving = verb.motion in ("agent", "both")
    size = agent.extra.get("scale", 1.0)
    k = {n: p * size for n, p in skeleton(verb.pose, moving).items()}
    k["head_top"] = k["head"] + _pt(0, 0.09 * size)
    shapes: list[Shape] = []
    partner_role = verb.roles[-2] if verb.partner != "none" else None
    if verb.partner == "person":
        partner = NOUN_BY_KEY[fillers[partner_role]]
        shapes += figure(partner, "reach" if verb.relation != "none" else "stand", False, partner_role,
                         origin=_pt(1.35, 0), facing=-1)
    elif verb.partner == "container":
        shapes += container(NOUN_BY_KEY[fillers[partner_role]], 1.0, partner_role)
    body = figure(agent, verb.pose, moving, "agent")
    shapes += body
    if verb.relation != "none":
        noun = NOUN_BY_KEY[fillers["item"]]
        size = item_size(noun.key)
        center = _item_center(verb, k, size, rng)
        item_shapes = item(noun, center, "item")
        if verb.tool:
            hand = k["hand_f"][0]
            tip = _tool_tip(hand[0], center, size)
            shapes += tool(NOUN_BY_KEY[fillers["tool"]], hand, tip, "tool")
        shapes += item_shapes
        if verb.motion in ("item", "both"):
            shapes += speed_lines(union(item_shapes))
    if moving:
        shapes += speed_lines(union(body))
    return shapes


def _item_center(verb: VerbSpec, k: dict, size: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    w, h = size
    head, hand, foot = k["head"][0], k["hand_f"][0], k["foot_f"][0]
    head_top = k["head_top"][0][1]
    jitter = rng.uniform(-0.02, 0.02, 2)
    if verb.tool:
        return {"hand": hand + [0.5, 0.08], "feet": np.array([hand[0] + 0.35, h / 2]),
                "far": np.array([1.05, h / 2]), "overhead": hand + [0.12, 0.45 + h / 2]}[verb.relation] + jitter
    if verb.relation == "overhead":
        base = max(head_top, k["hand_f"][0][1] - 0.02 if verb.pose == "raise" else head_top)
        if verb.contact:
            return np.array([head[0], base + h / 2 * (0.7 if verb.pose == "raise" else 1.0)])
        ahead = 0.3 if verb.motion in ("item", "both") else 0.1
        return np.array([head[0] + ahead, base + 0.25 + h / 2]) + jitter
    if verb.relation == "hand":
        return hand + ([0.03 + w * 0.3, 0] if verb.contact else [0.3 + w / 2, 0.05]) + jitter * [1, 0]
    if verb.relation == "feet":
        if verb.contact:
            x = hand[0] + 0.03 if verb.pose == "crouch" else foot[0] + 0.02 + w / 2
            return np.array([x, h / 2])
        lift = 0.12 if verb.pose == "reach" else 0.0
        return np.array([max(hand[0], foot[0]) + 0.25 + w / 2, h / 2 + lift])
    return np.array([1.0 + w / 2, h / 2]) + jitter * [1, 0]


def _tool_tip(hand_x: float, center: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Where a tool from the hand meets the item: the item's edge nearest to the agent."""
    w, h = size
    if center[1] - h / 2 > 0.5:  # item up in the air: touch it from below
        return np.array([center[0], center[1] - h / 2])
    return np.array([center[0] - w / 2, center[1]]) if center[0] > hand_x else np.array([center[0], center[1] + h / 2])


def to_pixels(shape_list: list[Shape], scale: float, origin: tuple[float, float], facing: int) -> list[Shape]:
    """Body units -> image pixels: scale, mirror for facing, flip y (images grow downward)."""
    out = []
    for s in shape_list:
        p = s.points.copy()
        if s.kind == "ellipse":
            p = np.vstack([[origin[0] + facing * p[0, 0] * scale, origin[1] - p[0, 1] * scale], p[1] * scale])
        else:
            p[:, 0] = origin[0] + facing * p[:, 0] * scale
            p[:, 1] = origin[1] - p[:, 1] * scale
            if s.kind == "rect":
                p = np.array([[p[:, 0].min(), p[:, 1].min()], [p[:, 0].max(), p[:, 1].max()]])
        out.append(Shape(s.kind, p, s.color, s.size * scale, s.role, s.filled))
    return out


def draw(canvas: np.ndarray, shapes: list[Shape]) -> None:
    for s in shapes:
        color = tuple(int(c) for c in s.color)
        t = max(1, int(round(s.size)))
        ip = np.round(s.points).astype(np.int32)
        if s.kind == "line":
            cv2.line(canvas, tuple(ip[0]), tuple(ip[1]), color, t, cv2.LINE_AA)
        elif s.kind == "polyline":
            cv2.polylines(canvas, [ip], False, color, t, cv2.LINE_AA)
        elif s.kind == "circle":
            cv2.circle(canvas, tuple(ip[0]), max(1, int(round(s.size))), color, -1, cv2.LINE_AA)
        elif s.kind == "ellipse":
            axes = (max(1, int(round(s.points[1][0]))), max(1, int(round(s.points[1][1]))))
            cv2.ellipse(canvas, tuple(ip[0]), axes, 0, 0, 360, color, -1 if s.filled else t, cv2.LINE_AA)
        elif s.kind == "poly":
            cv2.fillPoly(canvas, [ip], color, cv2.LINE_AA)
        elif s.kind == "rect":
            cv2.rectangle(canvas, tuple(ip[0]), tuple(ip[1]), color, -1)


# --- places ----------------------------------------------------------------------------

def _noise(rng: np.random.Generator, h: int, w: int, cells: int, amp: float) -> np.ndarray:
    small = rng.normal(0, amp, (max(2, h // cells), max(2, w // cells))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]


def background(place: str, h: int, w: int, horizon: int, rng: np.random.Generator) -> np.ndarray:
    """A textured place; ``horizon`` is the row where the ground begins."""
    img = np.zeros((h, w, 3), np.float32)
    sky = np.linspace(0, 1, max(horizon, 1))[:, None, None]
    img[:horizon] = (235, 200, 140) * (1 - sky) + (250, 235, 210) * sky
    ground = img[horizon:]
    if place == "field":
        ground[:] = (50, 150, 70)
        ground += _noise(rng, *ground.shape[:2], 6, 18)
    elif place == "beach":
        sea = max(1, (h - horizon) // 3)
        ground[:sea] = (170, 120, 40)
        ground[sea:] = (140, 200, 230)
        ground += _noise(rng, *ground.shape[:2], 4, 10)
    elif place == "snowfield":
        img[:horizon] = (215, 210, 205)
        ground[:] = (245, 240, 235)
        ground += _noise(rng, *ground.shape[:2], 8, 8)
    elif place == "street":
        ground[:] = (95, 95, 100)
        ground += _noise(rng, *ground.shape[:2], 3, 10)
        lane = int((h - horizon) * rng.uniform(0.25, 0.5))
        for x in range(int(rng.integers(0, 20)), w, 40):
            ground[lane:lane + 3, x:x + 22] = (235, 235, 235)
    elif place == "forest":
        img[:horizon] = (60, 110, 50)
        img[:horizon] += _noise(rng, horizon, w, 5, 25)
        for x in rng.integers(0, w, 6):
            img[:horizon, max(0, x - 4):x + 4] = (40, 70, 100)
        ground[:] = (50, 90, 90)
        ground += _noise(rng, *ground.shape[:2], 5, 14)
    elif place == "kitchen":
        img[:horizon] = (170, 215, 235)
        for x in range(int(rng.integers(0, 30)), w, 60):
            img[horizon // 5:horizon * 3 // 4, x:x + 40] = (60, 100, 150)
        tile = max(8, w // 14)
        yy, xx = np.mgrid[0:h - horizon, 0:w]
        checker = ((yy // tile + xx // tile) % 2).astype(np.float32)[..., None]
        ground[:] = (235, 235, 235) * checker + (60, 60, 60) * (1 - checker)
    elif place == "living room":
        img[:horizon] = (160, 195, 215)
        x = int(rng.integers(w // 8, w // 2))
        img[horizon // 6:horizon * 2 // 3, x:x + w // 4] = (235, 210, 160)
        ground[:] = (40, 90, 150)
        for y in range(0, h - horizon, 9):
            ground[y:y + 1] = (25, 60, 105)
        ground += _noise(rng, *ground.shape[:2], 6, 8)
    else:
        raise ValueError(f"no texture for place {place!r}")
    return img


def render(verb: VerbSpec, fillers: dict[str, str], width: int, height: int, rng: np.random.Generator,
           distractors: list[str]) -> tuple[np.ndarray, dict[str, list[float]]]:
    """The image (BGR uint8) and, per grounded role, its box in pixels."""
    shapes = layout(verb, fillers, rng)
    ext = union(shapes)
    facing = 1 if rng.random() < 0.5 else -1
    body_w, body_h = ext[2] - ext[0], ext[3] - ext[1]
    scale = min(0.9 * width / body_w, 0.62 * height / body_h) * rng.uniform(0.7, 1.0)
    ground_y = rng.uniform(0.8, 0.94) * height
    ground_y = min(ground_y, height - 2 - max(0.0, -ext[1]) * scale)
    horizon = int(max(2, min(ground_y - ext[3] * scale * 0.5, height * 0.55) * rng.uniform(0.6, 0.9)))
    span = body_w * scale
    left = rng.uniform(2, max(3, width - span - 2))
    x0 = left - ext[0] * scale if facing == 1 else left + ext[2] * scale
    canvas = np.clip(background(fillers["place"], height, width, horizon, rng), 0, 255).astype(np.uint8)
    pix = to_pixels(shapes, scale, (x0, ground_y), facing)
    scene = union(pix)
    for key in distractors:  # scattered objects that belong to no role, away from the scene
        c = (rng.uniform(0.05, 0.95) * width, rng.uniform(horizon, height))
        if not (scene[0] - 10 < c[0] < scene[2] + 10 and scene[1] - 10 < c[1] < scene[3] + 10):
            draw(canvas, to_pixels(item(NOUN_BY_KEY[key], _pt(0, 0), None, 0.6), scale, c, 1))
    draw(canvas, pix)
    boxes = {}
    for role in {s.role for s in pix if s.role}:
        e = union([s for s in pix if s.role == role])
        x1, y1, x2, y2 = np.clip(e, 0, [width, height, width, height])
        boxes[role] = [int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2))]
    noise = rng.normal(0, 3.0, canvas.shape) + rng.uniform(-12, 12)
    canvas = np.clip(canvas.astype(np.float32) * rng.uniform(0.9, 1.1) + noise, 0, 255).astype(np.uint8)
    return canvas, boxes
