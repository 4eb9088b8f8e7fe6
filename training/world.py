"""The procedurally generated, captioned world that imagine-shapes draws.

Deterministic from a seed. A *scene* is a plain dict:
  {"bg": "blue" | "night sky" | "sunset" | "stripes",
   "groups": [ {"shape","color","count","size","pos"(single group) } , ... ]   (1 or 2 groups)
   "rel": None | "left of" | "right of" | "above" | "below"   (relation of group 0 to group 1)
   "objects": [ {"shape","color","rgb","cx","cy","r"} ... ]    (concrete placement, fractions of the side)
   "bg_rgb": ..., "seed": ...}
render(scene, size) draws it (rendered at >= 256 px with 2x supersampling, area-downsampled).
caption(scene, rng, split) writes a caption and returns what it mentions.

Held out of training (used only by the evaluation, see HELDOUT_*):
  * (colour, shape) pairs in HELDOUT_PAIRS never appear in training scenes at all;
  * the caption templates marked "eval" below are never used for training captions.
"""
import math
import random

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ["circle", "square", "triangle", "star", "heart", "diamond", "ring", "cross"]
COLORS = {  # CSS named values
    "red": (255, 0, 0), "orange": (255, 165, 0), "yellow": (255, 255, 0), "green": (0, 128, 0),
    "blue": (0, 0, 255), "purple": (128, 0, 128), "pink": (255, 192, 203), "white": (255, 255, 255),
    "black": (0, 0, 0), "brown": (165, 42, 42), "gray": (128, 128, 128), "cyan": (0, 255, 255),
}
COLOR_NAMES = list(COLORS)
SCENES = ["night sky", "sunset", "stripes"]
BACKGROUNDS = COLOR_NAMES + SCENES
# colours of the named scenes (used by the renderer and, as "background" classes, by the checker)
SCENE_RGB = {
    "night sky": [(18, 26, 74), (40, 52, 112)],
    "sunset": [(255, 204, 128), (214, 112, 150)],
    "stripes": [(236, 226, 196), (190, 204, 226)],
}
SCENE_EXCLUDE = {"night sky": {"black", "blue"}, "sunset": {"orange", "pink", "white", "yellow"},
                 "stripes": {"white", "pink", "gray"}}
SIZES = {"small": 0.26, "big": 0.42}
POSITIONS = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75),
             "center": (0.5, 0.5)}
RELATIONS = ["left of", "right of", "above", "below"]
HELDOUT_PAIRS = {("purple", "triangle"), ("cyan", "heart"), ("orange", "ring")}
NUMBERS = ["one", "two", "three", "four"]


def too_close(c1, c2):
    a, b = np.array(COLORS[c1]), np.array(COLORS[c2])
    return float(np.sqrt(((a - b) ** 2).sum())) < 100


def allowed_colors(bg, shape=None, split="train"):
    out = []
    for c in COLOR_NAMES:
        if bg in COLORS and (c == bg or too_close(c, bg)):
            continue
        if bg in SCENE_EXCLUDE and c in SCENE_EXCLUDE[bg]:
            continue
        if split == "train" and shape is not None and (c, shape) in HELDOUT_PAIRS:
            continue
        out.append(c)
    return out


# ---------------------------------------------------------------- scene sampling

def _layout(n, size, region):
    """centres for n objects of a size inside region (x0,y0,x1,y1)."""
    x0, y0, x1, y1 = region
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = x1 - x0, y1 - y0
    if n == 1:
        return [(cx, cy)]
    if n == 2:
        if w >= h:
            return [(x0 + w * 0.27, cy), (x0 + w * 0.73, cy)]
        return [(cx, y0 + h * 0.27), (cx, y0 + h * 0.73)]
    if n == 3:
        return [(x0 + w * 0.27, y0 + h * 0.3), (x0 + w * 0.73, y0 + h * 0.3), (cx, y0 + h * 0.74)]
    return [(x0 + w * 0.27, y0 + h * 0.27), (x0 + w * 0.73, y0 + h * 0.27),
            (x0 + w * 0.27, y0 + h * 0.73), (x0 + w * 0.73, y0 + h * 0.73)]


def sample_scene(rng, kind=None, split="train"):
    """rng: random.Random. kind in single/two/counting/relation (random if None)."""
    if kind is None:
        kind = rng.choices(["single", "counting", "two", "relation"], [0.3, 0.25, 0.2, 0.25])[0]
    bg = rng.choice(BACKGROUNDS) if rng.random() < 0.85 else rng.choice(SCENES)
    groups, rel = [], None
    if kind == "single":
        shape = rng.choice(SHAPES)
        groups.append({"shape": shape, "color": rng.choice(allowed_colors(bg, shape, split)), "count": 1,
                       "size": rng.choice(["small", "big"]), "pos": rng.choice(list(POSITIONS))})
    elif kind == "counting":
        shape = rng.choice(SHAPES)
        n = rng.randint(1, 4)
        groups.append({"shape": shape, "color": rng.choice(allowed_colors(bg, shape, split)), "count": n,
                       "size": "small" if n > 1 else rng.choice(["small", "big"]), "pos": "center"})
    else:
        while True:
            s1, s2 = rng.choice(SHAPES), rng.choice(SHAPES)
            c1, c2 = rng.choice(allowed_colors(bg, s1, split)), rng.choice(allowed_colors(bg, s2, split))
            if (s1, c1) != (s2, c2):
                break
        n1 = n2 = 1
        if kind == "relation" and rng.random() < 0.35:
            n1, n2 = rng.randint(1, 2), rng.randint(1, 2)
        groups.append({"shape": s1, "color": c1, "count": n1, "size": "small" if n1 > 1 else rng.choice(["small", "big"])})
        groups.append({"shape": s2, "color": c2, "count": n2, "size": "small" if n2 > 1 else rng.choice(["small", "big"])})
        rel = rng.choice(RELATIONS)
    scene = {"bg": bg, "groups": groups, "rel": rel, "kind": kind}
    place(scene, rng)
    return scene


def place(scene, rng):
    objs = []
    groups, rel = scene["groups"], scene["rel"]
    j = lambda: rng.uniform(-0.035, 0.035)
    if len(groups) == 1:
        g = groups[0]
        if g["count"] == 1:
            region_c = POSITIONS[g["pos"]]
            centres = [region_c]
        else:
            centres = _layout(g["count"], g["size"], (0, 0, 1, 1))
        for (cx, cy) in centres:
            objs.append((g, cx + j(), cy + j()))
    else:
        half = {"left of": [(0, 0, 0.5, 1), (0.5, 0, 1, 1)], "right of": [(0.5, 0, 1, 1), (0, 0, 0.5, 1)],
                "above": [(0, 0, 1, 0.5), (0, 0.5, 1, 1)], "below": [(0, 0.5, 1, 1), (0, 0, 1, 0.5)]}[rel]
        for g, region in zip(groups, half):
            x0, y0, x1, y1 = region
            if g["count"] == 1:
                centres = [((x0 + x1) / 2, (y0 + y1) / 2)]
            elif x1 - x0 < 1:  # vertical stack in a left/right half
                centres = [((x0 + x1) / 2, 0.28), ((x0 + x1) / 2, 0.72)]
            else:
                centres = [(0.28, (y0 + y1) / 2), (0.72, (y0 + y1) / 2)]
            for (cx, cy) in centres:
                objs.append((g, cx + j(), cy + j()))
    out = []
    for g, cx, cy in objs:
        base = np.array(COLORS[g["color"]], dtype=np.float64)
        rgb = tuple(int(v) for v in np.clip(base + [rng.uniform(-10, 10) for _ in range(3)], 0, 255))
        r = SIZES[g["size"]] * rng.uniform(0.92, 1.08) / 2
        out.append({"shape": g["shape"], "color": g["color"], "rgb": rgb, "cx": cx, "cy": cy, "r": r})
    scene["objects"] = out
    if scene["bg"] in COLORS:
        base = np.array(COLORS[scene["bg"]], dtype=np.float64)
        scene["bg_rgb"] = tuple(int(v) for v in np.clip(base + [rng.uniform(-10, 10) for _ in range(3)], 0, 255))
    scene["bg_seed"] = rng.randrange(1 << 30)


# ---------------------------------------------------------------- rendering

def _star_pts(cx, cy, r):
    pts = []
    for k in range(10):
        a = -math.pi / 2 + k * math.pi / 5
        rr = r if k % 2 == 0 else r * 0.45
        pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a) + r * 0.1))
    return pts


def _heart_pts(cx, cy, r):
    pts = []
    for k in range(60):
        t = 2 * math.pi * k / 60
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((cx + x / 17 * r, cy - (y + 2.5) / 16 * r))
    return pts


def draw_shape(d, shape, cx, cy, r, fill):
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        s = r * 0.86
        d.rectangle([cx - s, cy - s, cx + s, cy + s], fill=fill)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
    elif shape == "diamond":
        d.polygon([(cx, cy - r), (cx + r * 0.75, cy), (cx, cy + r), (cx - r * 0.75, cy)], fill=fill)
    elif shape == "star":
        d.polygon(_star_pts(cx, cy, r * 1.08), fill=fill)
    elif shape == "heart":
        d.polygon(_heart_pts(cx, cy, r), fill=fill)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        ri = r * 0.55
        d.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=0)
    elif shape == "cross":
        a = r * 0.34
        d.rectangle([cx - a, cy - r, cx + a, cy + r], fill=fill)
        d.rectangle([cx - r, cy - a, cx + r, cy + a], fill=fill)
    else:
        raise ValueError(shape)


def _background(scene, S):
    bg = scene["bg"]
    if bg in COLORS:
        return np.broadcast_to(np.array(scene["bg_rgb"], np.float32), (S, S, 3)).copy()
    rng = np.random.RandomState(scene["bg_seed"] % (1 << 31))
    if bg == "night sky":
        top, bot = np.array(SCENE_RGB[bg][0], np.float32), np.array(SCENE_RGB[bg][1], np.float32)
        t = np.linspace(0, 1, S, dtype=np.float32)[:, None, None]
        img = (top * (1 - t) + bot * t) * np.ones((1, S, 1), np.float32)
        n = 40
        ys, xs = rng.randint(0, S, n), rng.randint(0, S, n)
        d = max(1, S // 128)
        for y, x in zip(ys, xs):
            img[y:y + d, x:x + d] = 235
        return img
    if bg == "sunset":
        top, bot = np.array(SCENE_RGB[bg][0], np.float32), np.array(SCENE_RGB[bg][1], np.float32)
        t = np.linspace(0, 1, S, dtype=np.float32)[:, None, None]
        return (top * (1 - t) + bot * t) * np.ones((1, S, 1), np.float32)
    if bg == "stripes":
        a, b = np.array(SCENE_RGB[bg][0], np.float32), np.array(SCENE_RGB[bg][1], np.float32)
        period = S / 8.0
        yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
        phase = ((xx + yy) / period + rng.rand()) % 1.0
        m = (phase < 0.5).astype(np.float32)[..., None]
        return a * m + b * (1 - m)
    raise ValueError(bg)


def render(scene, size=256, hi=256):
    """uint8 HxWx3 at `size` (rendered at max(size, hi) with 2x supersampled edges, area-downsampled)."""
    S = max(size, hi)
    img = _background(scene, S)
    for o in scene["objects"]:
        m = Image.new("L", (2 * S, 2 * S), 0)
        d = ImageDraw.Draw(m)
        draw_shape(d, o["shape"], o["cx"] * 2 * S, o["cy"] * 2 * S, o["r"] * 2 * S, 255)
        a = np.asarray(m.resize((S, S), Image.BOX), np.float32)[..., None] / 255.0
        img = img * (1 - a) + np.array(o["rgb"], np.float32) * a
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if size != S:
        out = np.asarray(Image.fromarray(out).resize((size, size), Image.BOX))
    return out


def downsample(img, size):
    return np.asarray(Image.fromarray(img).resize((size, size), Image.BOX))


def label_maps(scene, cells=8):
    """cells x cells maps: colour class (index into BACKGROUNDS, 0..14) and shape class (0..7, 8 = background)."""
    S = cells * 4
    col = np.full((S, S), BACKGROUNDS.index(scene["bg"]), np.int64)
    shp = np.full((S, S), 8, np.int64)
    for o in scene["objects"]:
        m = Image.new("L", (S, S), 0)
        draw_shape(ImageDraw.Draw(m), o["shape"], o["cx"] * S, o["cy"] * S, o["r"] * S, 255)
        a = np.asarray(m) > 127
        col[a] = COLOR_NAMES.index(o["color"])
        shp[a] = SHAPES.index(o["shape"])

    def pool(x, nclass):
        x = x.reshape(cells, 4, cells, 4).transpose(0, 2, 1, 3).reshape(cells, cells, 16)
        cnt = np.stack([(x == k).sum(-1) for k in range(nclass)], -1)
        return cnt.argmax(-1)
    return pool(col, len(BACKGROUNDS)), pool(shp, 9)


# ---------------------------------------------------------------- captions

COLOR_SYN = {"red": ["red", "red", "crimson", "scarlet"], "orange": ["orange"], "yellow": ["yellow", "yellow", "golden"],
             "green": ["green", "green", "emerald"], "blue": ["blue", "blue", "azure"],
             "purple": ["purple", "purple", "violet"], "pink": ["pink"], "white": ["white", "white", "snow-white"],
             "black": ["black", "black", "jet-black"], "brown": ["brown", "brown", "chocolate"],
             "gray": ["gray", "grey"], "cyan": ["cyan", "cyan", "aqua"]}
SHAPE_SYN = {"circle": ["circle", "circle", "disc", "dot"], "square": ["square"], "triangle": ["triangle"],
             "star": ["star"], "heart": ["heart"], "diamond": ["diamond", "diamond", "rhombus"],
             "ring": ["ring", "ring", "donut", "hoop"], "cross": ["cross", "cross", "plus sign"]}
PLURAL = {"circle": "circles", "disc": "discs", "dot": "dots", "square": "squares", "triangle": "triangles",
          "star": "stars", "heart": "hearts", "diamond": "diamonds", "rhombus": "rhombuses", "ring": "rings",
          "donut": "donuts", "hoop": "hoops", "cross": "crosses", "plus sign": "plus signs"}
SIZE_SYN = {"small": ["small", "small", "little", "tiny"], "big": ["big", "big", "large", "huge"]}
POS_SYN = {"left": ["on the left", "on the left side", "at the left"], "right": ["on the right", "on the right side", "at the right"],
           "top": ["at the top", "on top", "near the top"], "bottom": ["at the bottom", "near the bottom", "on the bottom"],
           "center": ["in the center", "in the middle", "centered"]}
POS_SHORT = {"left": ["left side", "left"], "right": ["right side", "right"], "top": ["top"], "bottom": ["bottom"],
             "center": ["center", "middle"]}
REL_SYN = {"left of": ["to the left of", "left of"], "right of": ["to the right of", "right of"],
           "above": ["above", "over"], "below": ["below", "under", "beneath"]}
INV_REL = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
SCENE_SYN = {"night sky": ["night sky", "starry night sky", "night"], "sunset": ["sunset", "sunset gradient", "sunset sky"],
             "stripes": ["stripes", "striped pattern", "diagonal stripes"]}
# emoji: (colour, shape) -> emoji
EMOJI = {("red", "circle"): "🔴", ("orange", "circle"): "🟠", ("yellow", "circle"): "🟡", ("green", "circle"): "🟢",
         ("blue", "circle"): "🔵", ("purple", "circle"): "🟣", ("brown", "circle"): "🟤", ("black", "circle"): "⚫",
         ("white", "circle"): "⚪", ("red", "square"): "🟥", ("orange", "square"): "🟧", ("yellow", "square"): "🟨",
         ("green", "square"): "🟩", ("blue", "square"): "🟦", ("purple", "square"): "🟪", ("brown", "square"): "🟫",
         ("black", "square"): "⬛", ("white", "square"): "⬜", ("yellow", "star"): "⭐", ("red", "heart"): "❤️",
         ("orange", "heart"): "🧡", ("yellow", "heart"): "💛", ("green", "heart"): "💚", ("blue", "heart"): "💙",
         ("purple", "heart"): "💜", ("black", "heart"): "🖤", ("white", "heart"): "🤍", ("brown", "heart"): "🤎",
         ("blue", "diamond"): "🔷", ("orange", "diamond"): "🔶", ("red", "triangle"): "🔺", ("red", "cross"): "❌",
         ("red", "ring"): "⭕", ("pink", "heart"): "🩷"}
SCENE_EMOJI = {"night sky": "🌃", "sunset": "🌅"}


def _obj_phrase(g, rng, mention_size, mention_color=True, article=True):
    n = g["count"]
    shp = rng.choice(SHAPE_SYN[g["shape"]])
    noun = PLURAL[shp] if n > 1 else shp
    words = []
    if n > 1:
        words.append(NUMBERS[n - 1] if rng.random() < 0.85 else str(n))
    elif article:
        words.append(rng.choice(["a", "a", "one"]))
    if mention_size:
        words.append(rng.choice(SIZE_SYN[g["size"]]))
    if mention_color:
        words.append(rng.choice(COLOR_SYN[g["color"]]))
    words.append(noun)
    s = " ".join(words)
    if s.startswith("a ") and words[1][0] in "aeiou":
        s = "an " + s[2:]
    return s


def _bg_phrase(bg, rng, style):
    if bg in COLORS:
        c = rng.choice(COLOR_SYN[bg])
        opts = {"train": [f"on a {c} background", f"{c} background", f"against a {c} background", f"with a {c} background",
                          f"on {c}", f"{c} backdrop", f"on a {c} backdrop"],
                "eval": [f"over a plain {c} background", f"background colour {c}"]}[style]
    else:
        s = rng.choice(SCENE_SYN[bg])
        opts = {"train": [f"on a {s} background", f"{s} background", f"against a {s}", f"with a {s} behind it", f"{s} backdrop"],
                "eval": [f"over a {s}", f"background: {s}"]}[style]
    return rng.choice(opts)


def caption(scene, rng, split="train", emoji=None):
    """Returns (text, mentioned) where mentioned = {"size":bool,"pos":bool,"bg":bool,"color":bool}.
    split "train" uses training templates only, "eval" the held-out templates only."""
    groups, rel, bg = scene["groups"], scene["rel"], scene["bg"]
    if emoji is None:
        emoji = split == "train" and rng.random() < 0.15 and all((g["color"], g["shape"]) in EMOJI for g in groups)
    if emoji:
        return _emoji_caption(scene, rng)
    ment_size = rng.random() < 0.5
    ment_bg = rng.random() < 0.6
    ment_color = True
    if scene["kind"] in ("single", "counting", "two") and rng.random() < 0.12:
        ment_color = False
    ment_pos = len(groups) == 1 and groups[0]["count"] == 1 and rng.random() < 0.7 and scene["kind"] == "single"
    if len(groups) == 2:
        ment_pos = True  # relation always said for "relation"; for "two" maybe not
        if scene["kind"] == "two" and rng.random() < 0.6:
            ment_pos = False
    bgp = _bg_phrase(bg, rng, "train" if split == "train" else rng.choice(["train", "eval"])) if ment_bg else None
    if len(groups) == 1:
        g = groups[0]
        obj = _obj_phrase(g, rng, ment_size, ment_color)
        pos = rng.choice(POS_SYN[g["pos"]]) if ment_pos else None
        if split == "train":
            t = rng.randrange(4)
            if t == 0:
                parts = [obj] + ([pos] if pos else []) + ([bgp] if bgp else [])
                text = " ".join(parts)
            elif t == 1:
                parts = ([bgp] if bgp else []) + [_obj_phrase(g, rng, ment_size, ment_color, article=False)] + \
                        ([rng.choice(POS_SHORT[g["pos"]]) + (" side" if False else "")] if pos else [])
                text = ", ".join(parts)
            elif t == 2:
                text = obj + (", " + bgp if bgp else "") + (", " + pos if pos else "")
            else:
                text = ("there is " + obj) + (" " + pos if pos else "") + (" " + bgp if bgp else "")
        else:
            t = rng.randrange(2)
            if t == 0:
                text = "a picture of " + obj + (" placed " + pos if pos else "") + (", " + bgp if bgp else "")
            else:
                text = (pos.capitalize() + ": " if pos else "") + obj + (" " + bgp if bgp else "")
    else:
        a, b = groups
        pa = _obj_phrase(a, rng, ment_size, ment_color)
        pb = _obj_phrase(b, rng, ment_size and rng.random() < 0.7, ment_color)
        if ment_pos:
            if rng.random() < 0.5:
                core = f"{pa} {rng.choice(REL_SYN[rel])} {pb}"
            else:
                core = f"{pb} {rng.choice(REL_SYN[INV_REL[rel]])} {pa}"
        else:
            core = f"{pa} and {pb}" if rng.random() < 0.5 else f"{pb} and {pa}"
        if split == "train":
            t = rng.randrange(3)
            if t == 0 or not bgp:
                text = core + (" " + bgp if bgp else "")
            elif t == 1:
                text = bgp + ", " + core
            else:
                text = core + ", " + bgp
        else:
            text = ("a scene with " if rng.random() < 0.5 else "an image showing ") + core + ("; " + bgp if bgp else "")
    return text, {"size": ment_size, "pos": ment_pos, "bg": ment_bg, "color": ment_color}


def _emoji_caption(scene, rng):
    groups, rel, bg = scene["groups"], scene["rel"], scene["bg"]
    ems = [EMOJI[(g["color"], g["shape"])] * g["count"] for g in groups]
    ment_pos = False
    if len(groups) == 1:
        g = groups[0]
        text = ems[0]
        if scene["kind"] == "single" and rng.random() < 0.5:
            text += " " + rng.choice(POS_SYN[g["pos"]])
            ment_pos = True
    else:
        ment_pos = scene["kind"] == "relation" or rng.random() < 0.5
        if ment_pos:
            text = f"{ems[0]} {rng.choice(REL_SYN[rel])} {ems[1]}"
        else:
            text = f"{ems[0]} and {ems[1]}" if rng.random() < 0.5 else ems[0] + ems[1]
    ment_bg = rng.random() < 0.4
    if ment_bg:
        if bg in SCENE_EMOJI and rng.random() < 0.5:
            text += " " + SCENE_EMOJI[bg]
        else:
            text += " " + _bg_phrase(bg, rng, "train")
    return text, {"size": False, "pos": ment_pos, "bg": ment_bg, "color": True}


# ---------------------------------------------------------------- structured targets (aux heads)

REL_IDX = {r: i for i, r in enumerate(RELATIONS)}
POS_IDX = {p: i for i, p in enumerate(POSITIONS)}
IGN = -100


def canonical_groups(scene):
    """group order used by the attribute heads: sorted by (shape, colour); relation re-expressed."""
    g = scene["groups"]
    if len(g) == 1:
        return g, None
    key = lambda x: (SHAPES.index(x["shape"]), COLOR_NAMES.index(x["color"]))
    if key(g[0]) <= key(g[1]):
        return g, scene["rel"]
    return [g[1], g[0]], INV_REL[scene["rel"]]


ATTR_HEADS = {"bg": len(BACKGROUNDS), "shape0": 9, "color0": 12, "count0": 4, "size0": 2, "pos0": 5,
              "shape1": 9, "color1": 12, "count1": 4, "size1": 2, "rel": 4}


def attr_targets(scene, mentioned=None):
    """dict head -> class index (IGN when not known). mentioned=None -> image side (all known)."""
    gs, rel = canonical_groups(scene)
    m = mentioned or {"size": True, "pos": True, "bg": True, "color": True}
    t = {k: IGN for k in ATTR_HEADS}
    t["bg"] = BACKGROUNDS.index(scene["bg"]) if m["bg"] else IGN
    for i, g in enumerate(gs):
        t[f"shape{i}"] = SHAPES.index(g["shape"])
        t[f"color{i}"] = COLOR_NAMES.index(g["color"]) if m["color"] else IGN
        t[f"count{i}"] = g["count"] - 1
        t[f"size{i}"] = ["small", "big"].index(g["size"]) if m["size"] else IGN
    if len(gs) == 1:
        t["shape1"] = 8
        if g["count"] == 1 and scene["kind"] == "single" and m["pos"]:
            t["pos0"] = POS_IDX[g["pos"]]
    else:
        if m["pos"]:
            t["rel"] = REL_IDX[rel]
    return t


def vocabulary_texts():
    """Every word/emoji the captions can use (for the text encoder's reduced vocabulary)."""
    words = set()
    for d in (COLOR_SYN, SHAPE_SYN, SIZE_SYN, POS_SYN, POS_SHORT, REL_SYN, SCENE_SYN):
        for v in d.values():
            words.update(v)
    words.update(PLURAL.values())
    words.update(NUMBERS + [str(i) for i in range(1, 5)])
    words.update(EMOJI.values())
    words.update(SCENE_EMOJI.values())
    words.update(["a", "an", "one", "on", "the", "side", "background", "against", "with", "backdrop", "behind", "it",
                  "there", "is", "and", "a picture of placed", "over a plain background colour", "background:",
                  "a scene with an image showing", ",", ";", ":", "left right top bottom center middle"])
    return sorted(words)
