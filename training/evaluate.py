"""GenEval-style evaluation of imagine-shapes, judged by an independent pixel checker.

  # generate with the torch checkpoints (same sampler/steps/guidance as the manifest) and judge:
  /usr/bin/python3 -m training.evaluate --run training/runs/default --json eval.json
  # write the held-out prompt list for another generator (e.g. the TypeScript engine):
  /usr/bin/python3 -m training.evaluate --write-prompts prompts.json
  # judge a folder of PNGs named <id>.png with that prompts.json (grid tiles / final images):
  /usr/bin/python3 -m training.evaluate --images DIR --prompts DIR/prompts.json

The checker knows nothing about the model: it classifies every pixel to the nearest CSS colour of the world's
palette (or a background-scene colour), removes the 1-pixel anti-aliased rim (erosion), labels connected
components, and classifies each component's shape by nearest neighbours on a geometric descriptor (row/column
fill profiles, extent, hole ratio, aspect) against reference renders of the world's shapes.

Categories (as GenEval): single_object, two_object, counting, colors, position, color_attr, plus emoji.
Prompts come from the held-out caption templates of world.caption(split="eval") and include the held-out
(colour, shape) pairs world.HELDOUT_PAIRS, which never appear in training.
"""
import argparse
import json
import math
import os
import random
import time
from collections import Counter, deque

import numpy as np
from PIL import Image

from . import world as W

JUDGE = 128
CATEGORIES = ["single_object", "two_object", "counting", "colors", "position", "color_attr", "emoji"]
GENEVAL6 = CATEGORIES[:6]

# ------------------------------------------------------------------ prompts


def make_prompts(seed=1234, n=32):
    rng = random.Random(seed)
    out = []
    for cat in CATEGORIES:
        k = 0
        while k < n:
            if cat == "single_object":
                s = W.sample_scene(rng, "single", "eval")
                text, m = W.caption(s, rng, "eval", emoji=False)
                spec = {"objects": [{"shape": s["groups"][0]["shape"]}], "count_exact": False}
            elif cat == "two_object":
                s = W.sample_scene(rng, "two", "eval")
                if s["groups"][0]["shape"] == s["groups"][1]["shape"]:
                    continue
                text, m = W.caption(s, rng, "eval", emoji=False)
                spec = {"objects": [{"shape": g["shape"]} for g in s["groups"]], "count_exact": False}
            elif cat == "counting":
                s = W.sample_scene(rng, "counting", "eval")
                if s["groups"][0]["count"] < 2:
                    continue
                text, m = W.caption(s, rng, "eval", emoji=False)
                g = s["groups"][0]
                spec = {"objects": [{"shape": g["shape"], "count": g["count"]}], "count_exact": True}
            elif cat == "colors":
                s = W.sample_scene(rng, "single", "eval")
                text, m = W.caption(s, rng, "eval", emoji=False)
                if not m["color"]:
                    continue
                g = s["groups"][0]
                spec = {"objects": [{"shape": g["shape"], "color": g["color"]}], "count_exact": False}
            elif cat == "position":
                s = W.sample_scene(rng, "relation" if rng.random() < 0.6 else "single", "eval")
                text, m = W.caption(s, rng, "eval", emoji=False)
                if not m["pos"] or any(g["count"] > 1 for g in s["groups"]):
                    continue
                spec = {"objects": [{"shape": g["shape"], **({"color": g["color"]} if m["color"] else {})}
                                    for g in s["groups"]], "count_exact": False}
                if len(s["groups"]) == 2:
                    spec["rel"] = s["rel"]
                else:
                    spec["pos"] = s["groups"][0]["pos"]
            elif cat == "color_attr":
                s = W.sample_scene(rng, "two", "eval")
                text, m = W.caption(s, rng, "eval", emoji=False)
                if not m["color"] or s["groups"][0]["shape"] == s["groups"][1]["shape"]:
                    continue
                spec = {"objects": [{"shape": g["shape"], "color": g["color"]} for g in s["groups"]], "count_exact": False}
            else:  # emoji
                s = W.sample_scene(rng, None, "eval")
                if not all((g["color"], g["shape"]) in W.EMOJI for g in s["groups"]):
                    continue
                text, m = W.caption(s, rng, "eval", emoji=True)
                spec = {"objects": [{"shape": g["shape"], "color": g["color"], "count": g["count"]} for g in s["groups"]],
                        "count_exact": True}
                if m["pos"]:
                    if len(s["groups"]) == 2:
                        spec["rel"] = s["rel"]
                    else:
                        spec["pos"] = s["groups"][0]["pos"]
            out.append({"id": f"{cat}_{k:03d}", "category": cat, "prompt": text, "spec": spec, "scene": s})
            k += 1
    return out


# ------------------------------------------------------------------ checker

def _ref_colors():
    names, rgbs = [], []
    for c, v in W.COLORS.items():
        names.append(c)
        rgbs.append(v)
    for sc, (a, b) in W.SCENE_RGB.items():
        for t in np.linspace(0, 1, 5):
            names.append("bg:" + sc)
            rgbs.append(tuple(np.array(a) * (1 - t) + np.array(b) * t))
    return names, np.array(rgbs, np.float32)


REF_NAMES, REF_RGB = _ref_colors()


def _components(mask):
    H, Wd = mask.shape
    lab = np.zeros((H, Wd), np.int32)
    comps = []
    n = 0
    for y0, x0 in zip(*np.nonzero(mask)):
        if lab[y0, x0]:
            continue
        n += 1
        q = deque([(y0, x0)])
        lab[y0, x0] = n
        pts = []
        while q:
            y, x = q.popleft()
            pts.append((y, x))
            for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                yy, xx = y + dy, x + dx
                if 0 <= yy < H and 0 <= xx < Wd and mask[yy, xx] and not lab[yy, xx]:
                    lab[yy, xx] = n
                    q.append((yy, xx))
        comps.append(np.array(pts))
    return comps


def _fill_holes(m):
    """m: bool HxW (component in its padded box). Returns filled mask."""
    H, Wd = m.shape
    outside = np.zeros_like(m)
    q = deque()
    for y in range(H):
        for x in (0, Wd - 1):
            if not m[y, x] and not outside[y, x]:
                outside[y, x] = True
                q.append((y, x))
    for x in range(Wd):
        for y in (0, H - 1):
            if not m[y, x] and not outside[y, x]:
                outside[y, x] = True
                q.append((y, x))
    while q:
        y, x = q.popleft()
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            yy, xx = y + dy, x + dx
            if 0 <= yy < H and 0 <= xx < Wd and not m[yy, xx] and not outside[yy, xx]:
                outside[yy, xx] = True
                q.append((yy, xx))
    return ~outside


def shape_features(pts):
    ys, xs = pts[:, 0], pts[:, 1]
    y0, x0 = ys.min(), xs.min()
    h, w = ys.max() - y0 + 1, xs.max() - x0 + 1
    m = np.zeros((h + 2, w + 2), bool)
    m[ys - y0 + 1, xs - x0 + 1] = True
    filled = _fill_holes(m)
    area, farea = m.sum(), filled.sum()
    core = filled[1:-1, 1:-1].astype(np.float32)
    # fill profiles at 7 relative rows / columns (of the hole-filled shape)
    rows = [b.mean() if b.size else 0.0 for b in np.array_split(core, 7, axis=0)]
    cols = [b.mean() if b.size else 0.0 for b in np.array_split(core, 7, axis=1)]
    cy = (ys.mean() - y0 + 0.5) / h - 0.5
    f = rows + cols + [area / (h * w) * 2, (farea - area) / farea * 3, math.log(w / h), cy * 3]
    return np.array(f, np.float32)


_BANK = None


def shape_bank():
    global _BANK
    if _BANK is None:
        rng = random.Random(99)
        X, Y = [], []
        for shape in W.SHAPES:
            for k in range(40):
                bg = rng.choice(W.COLOR_NAMES)
                col = rng.choice([c for c in W.allowed_colors(bg, None, "eval")])
                size = ["small", "big"][k % 2]
                s = {"bg": bg, "groups": [{"shape": shape, "color": col, "count": 1, "size": size, "pos": "center"}],
                     "rel": None, "kind": "single"}
                W.place(s, rng)
                o = s["objects"][0]
                o["cx"], o["cy"] = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
                img = W.render(s, JUDGE, hi=256)
                objs = detect(img, classify=False)
                if len(objs) == 1:
                    X.append(objs[0]["features"])
                    Y.append(shape)
        _BANK = (np.stack(X), np.array(Y))
    return _BANK


def classify_shape(f):
    X, Y = shape_bank()
    d = ((X - f[None]) ** 2).sum(1)
    idx = np.argsort(d)[:3]
    return Counter(Y[idx]).most_common(1)[0][0]


def detect(img, classify=True, min_area=40):
    """img uint8 HxWx3 (any size). Returns list of objects {color, shape, cx, cy, area} and the bg label."""
    if img.shape[0] != JUDGE or img.shape[1] != JUDGE:
        img = np.asarray(Image.fromarray(img).resize((JUDGE, JUDGE), Image.BOX))
    px = img.reshape(-1, 3).astype(np.float32)
    d = ((px[:, None, :] - REF_RGB[None]) ** 2).sum(-1)
    lab = d.argmin(1)
    far = np.sqrt(d.min(1)) > 70
    names = np.array(REF_NAMES)[lab]
    names[far] = "?"
    names = names.reshape(JUDGE, JUDGE)
    border = np.concatenate([names[0], names[-1], names[:, 0], names[:, -1]])
    bg = Counter(border).most_common(1)[0][0]
    objs = []
    for c in W.COLOR_NAMES:
        if c == bg:
            continue
        m = names == c
        if m.sum() < min_area:
            continue
        e = m.copy()  # erode by one pixel (removes anti-aliased rims between two other colours)
        e[1:] &= m[:-1]
        e[:-1] &= m[1:]
        e[:, 1:] &= m[:, :-1]
        e[:, :-1] &= m[:, 1:]
        for pts in _components(e):
            if len(pts) < min_area:
                continue
            o = {"color": c, "cx": float(pts[:, 1].mean() + 0.5) / JUDGE, "cy": float(pts[:, 0].mean() + 0.5) / JUDGE,
                 "area": int(len(pts))}
            f = shape_features(pts)
            if classify:
                o["shape"] = classify_shape(f)
            else:
                o["features"] = f
            objs.append(o)
    return objs if not classify else (objs, bg)


def _match(o, want):
    return o["shape"] == want["shape"] and ("color" not in want or o["color"] == want["color"])


def judge(img, spec):
    objs, bg = detect(img)
    ok = True
    found = []
    for want in spec["objects"]:
        ms = [o for o in objs if _match(o, want)]
        if "count" in want and spec.get("count_exact"):
            ok &= len(ms) == want["count"]
        else:
            ok &= len(ms) >= 1
        found.append(ms)
    if ok and "rel" in spec and len(found) == 2:
        a = np.mean([o["cx"] for o in found[0]]), np.mean([o["cy"] for o in found[0]])
        b = np.mean([o["cx"] for o in found[1]]), np.mean([o["cy"] for o in found[1]])
        r = spec["rel"]
        ok &= {"left of": a[0] < b[0] - 0.1, "right of": a[0] > b[0] + 0.1,
               "above": a[1] < b[1] - 0.1, "below": a[1] > b[1] + 0.1}[r]
    if ok and "pos" in spec and found:
        o = max(found[0], key=lambda z: z["area"])
        p = spec["pos"]
        ok &= {"left": o["cx"] < 0.4, "right": o["cx"] > 0.6, "top": o["cy"] < 0.4, "bottom": o["cy"] > 0.6,
               "center": abs(o["cx"] - 0.5) < 0.15 and abs(o["cy"] - 0.5) < 0.15}[p]
    return bool(ok), {"objects": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in o.items()} for o in objs], "bg": bg}


def attributes(img):
    objs, bg = detect(img)
    return sorted(Counter((o["color"], o["shape"]) for o in objs).items()), bg


def score(results):
    cats = {}
    for c in CATEGORIES:
        r = [x["pass"] for x in results if x["category"] == c]
        if r:
            cats[c] = round(float(np.mean(r)), 4)
    g6 = [cats[c] for c in GENEVAL6 if c in cats]
    return {"categories": cats, "overall": round(float(np.mean(g6)), 4) if g6 else None,
            "overall_with_emoji": round(float(np.mean(list(cats.values()))), 4) if cats else None}


# ------------------------------------------------------------------ torch pipeline (mirrors the engine)

class Pipeline:
    def __init__(self, run, defaults=None):
        import torch
        from .export import DEFAULTS, load_models
        self.torch = torch
        cfg = json.load(open(os.path.join(run, "config.json")))
        for k, v in cfg.items():
            if isinstance(v, list):
                cfg[k] = tuple(v)
        self.cfg = cfg
        self.m = load_models(run, cfg)
        self.d = dict(DEFAULTS)
        if os.path.exists(os.path.join(run, "defaults.json")):
            self.d.update(json.load(open(os.path.join(run, "defaults.json"))))
        if defaults:
            self.d.update(defaults)
        from .diffusion import Schedule
        from .train import SCHED
        self.S = {k: Schedule(v) for k, v in SCHED.items()}
        from .tokenizer import get_tokenizer
        self.tok = get_tokenizer()
        self.E = cfg["embed_dim"]

    def text(self, prompts):
        ids = self.torch.tensor([self.tok(p) for p in prompts])
        with self.torch.no_grad():
            return self.m["clip"].text(ids)

    def prior(self, prompts, gen, guidance=None, steps=None, samples=None):
        """As DALL·E 2 samples its prior: `samples` candidates per prompt, keeping the one whose embedding has
        the largest dot product with the text embedding."""
        from .diffusion import sample
        torch = self.torch
        g = self.d["prior_guidance"] if guidance is None else guidance
        steps = steps or self.d["prior_steps"]
        K = int(samples or 1)
        te0, th0 = self.text(prompts)
        te, th = te0.repeat(K, 1), th0.repeat(K, 1, 1)
        ue, uh = self.text([""])
        B = len(prompts) * K
        k = math.sqrt(self.E)
        cte = torch.cat([ue.expand(B, -1), te])
        cth = torch.cat([uh.expand(B, -1, -1), th])
        fn = lambda x, t, dbl: self.m["prior"](x, t, cte, cth) if dbl else self.m["prior"](x, t, te, th)
        x = sample(fn, (B, self.E), self.S["prior"], steps, g, 0.0, gen)
        x = torch.nn.functional.normalize(x / k, dim=-1).reshape(K, len(prompts), self.E)
        best = (x * te0[None]).sum(-1).argmax(0)
        return x[best, torch.arange(len(prompts))]

    def decode(self, emb, gen, guidance=None, steps=None, eta=0.0, size=32, samples=None):
        """`samples` candidates per embedding; the one whose image embedding (CLIP's image encoder on the
        decoded picture) is nearest the embedding it was drawn from is kept."""
        from .diffusion import sample
        torch = self.torch
        g = self.d["decoder_guidance"] if guidance is None else guidance
        steps = steps or self.d["decoder_steps"]
        M = int(samples or 1)
        n = emb.shape[0]
        emb = emb.repeat(M, 1)
        B = emb.shape[0]
        c2 = torch.cat([torch.zeros_like(emb), emb])
        fn = lambda x, t, dbl: self.m["decoder"](x, t, c2) if dbl else self.m["decoder"](x, t, emb)
        x = sample(fn, (B, 3, size, size), self.S["decoder"], steps, g, eta, gen).clamp(-1, 1)
        if M == 1:
            return x
        score = (self.image_embed(x) * emb).sum(-1).reshape(M, n)
        return x.reshape(M, n, *x.shape[1:])[score.argmax(0), torch.arange(n)]

    def upsample(self, x, which, gen, steps=None):
        from .diffusion import sample
        torch = self.torch
        f = 4 if which == "up1" else 2
        steps = steps or self.d[which + "_steps"]
        lo = torch.nn.functional.interpolate(x, scale_factor=f, mode="bilinear", align_corners=False)
        fn = lambda xx, t, dbl: self.m[which](xx, t, None, lo)
        return sample(fn, lo.shape, self.S[which], steps, None, 0.0, gen).clamp(-1, 1)

    def generate(self, prompts, seed=0, final=True, **kw):
        gen = self.torch.Generator().manual_seed(seed)
        emb = self.prior(prompts, gen, kw.get("prior_guidance"), samples=kw.get("prior_samples"))
        x = self.decode(emb, gen, kw.get("decoder_guidance"), samples=kw.get("decoder_samples"))
        if final:
            x = self.upsample(x, "up1", gen)
        return x, emb

    def image_embed(self, x):
        torch = self.torch
        x = torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
        with torch.no_grad():
            return self.m["clip"].image(x)


def to_u8(x):
    return ((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * math.log10(255 ** 2 / max(mse, 1e-10)))


def evaluate_pipeline(pipe, prompts, batch=32, seed=0, save_dir=None, variations=8, upsampler_n=24, **kw):
    torch = pipe.torch
    results = []
    images = {}
    t0 = time.time()
    for i in range(0, len(prompts), batch):
        chunk = prompts[i:i + batch]
        x, _ = pipe.generate([p["prompt"] for p in chunk], seed=seed + i, **kw)
        for p, im in zip(chunk, to_u8(x)):
            ok, det = judge(im, p["spec"])
            images[p["id"]] = im
            results.append({"id": p["id"], "category": p["category"], "prompt": p["prompt"], "pass": ok, "detected": det})
            if save_dir:
                Image.fromarray(im).save(os.path.join(save_dir, p["id"] + ".png"))
    gen_s = time.time() - t0
    out = score(results)
    out["n_prompts"] = len(prompts)
    out["generation_seconds"] = round(gen_s, 1)
    # variation consistency (V, subtle): re-encode the image, perturb the embedding, decode with fresh noise
    if variations:
        vs = [p for c in CATEGORIES for p in [q for q in prompts if q["category"] == c][:variations]]
        gen = torch.Generator().manual_seed(seed + 777)
        src = torch.from_numpy(np.stack([images[p["id"]] for p in vs])).permute(0, 3, 1, 2).float() / 127.5 - 1
        e = pipe.image_embed(src)
        z = torch.randn(e.shape, generator=gen) / math.sqrt(e.shape[1])
        e2 = torch.nn.functional.normalize(e + 0.1 * z, dim=-1)
        # variation_guidance: an experiment's override; the decoder's default otherwise
        xv = to_u8(pipe.upsample(pipe.decode(e2, gen, kw.get("variation_guidance"), eta=0.0, samples=kw.get("decoder_samples")),
                                 "up1", gen))
        if save_dir:
            for p, b in zip(vs, xv):
                Image.fromarray(b).save(os.path.join(save_dir, p["id"] + "_V.png"))
        out["variation"] = {**variation_consistency(zip([images[p["id"]] for p in vs], xv)), "embeddingNoise": 0.1, "eta": 0.0}
    if upsampler_n:
        out["upsampler"] = upsampler_quality(pipe, upsampler_n, seed)
    return out, results


def variation_consistency(pairs):
    """(source, variation) images -> how often a variation keeps the judged attributes of its source and differs
    from it; sources in which nothing is judged have nothing to keep and are skipped."""
    keep, differ = [], []
    for a, b in pairs:
        attrs_a = attributes(a)
        if not attrs_a[0]:
            continue
        keep.append(attrs_a == attributes(b))
        differ.append(float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()) > 1.0)
    return {"n": len(keep), "keeps_attributes": round(float(np.mean(keep)), 4) if keep else None,
            "differs_from_source": round(float(np.mean(differ)), 4) if differ else None}


def upsampler_quality(pipe, n=24, seed=0):
    torch = pipe.torch
    rng = random.Random(seed + 4242)
    scenes = [W.sample_scene(rng, None, "eval") for _ in range(n)]
    hi = np.stack([W.render(s, 256, hi=256) for s in scenes])
    x256 = torch.from_numpy(hi).permute(0, 3, 1, 2).float() / 127.5 - 1
    x128 = torch.nn.functional.avg_pool2d(x256, 2)
    x32 = torch.nn.functional.avg_pool2d(x256, 8)
    gen = torch.Generator().manual_seed(seed + 5)
    res = {}
    for which, lo, tgt, f in (("upsampler_1", x32, x128, 4), ("upsampler_2", x128, x256, 2)):
        up = to_u8(pipe.upsample(lo, "up1" if f == 4 else "up2", gen))
        lo_u8, tgt_u8 = to_u8(lo), to_u8(tgt)
        S = tgt_u8.shape[1]
        bic = np.stack([np.asarray(Image.fromarray(l).resize((S, S), Image.BICUBIC)) for l in lo_u8])
        pm = float(np.mean([psnr(a, b) for a, b in zip(up, tgt_u8)]))
        pb = float(np.mean([psnr(a, b) for a, b in zip(bic, tgt_u8)]))
        res[which] = {"factor": f, "psnr_model": round(pm, 2), "psnr_bicubic": round(pb, 2), "gain_db": round(pm - pb, 2)}
    return res


def sweep(pipe, run, n=6, seed=0, prior_guidances=(1.0, 2.0, 4.0), decoder_guidances=(1.0, 1.5),
          up_steps=(1, 2, 4)):
    """Pick the engine defaults on a small prompt set (a different seed from the evaluation's prompts):
    guidance pair by overall score, upsampler-1 steps by overall score then PSNR, upsampler-2 steps by PSNR.
    Writes <run>/defaults.json (read by the export and by Pipeline)."""
    prompts = make_prompts(seed=99, n=n)
    log = []

    def overall(**kw):
        out, _ = evaluate_pipeline(pipe, prompts, seed=seed, variations=0, upsampler_n=0, **kw)
        log.append({**kw, "overall": out["overall"]})
        print(json.dumps(log[-1]), flush=True)
        return out["overall"]

    best = max(((pg, dg) for pg in prior_guidances for dg in decoder_guidances),
               key=lambda g: overall(prior_guidance=g[0], decoder_guidance=g[1]))
    pipe.d.update(prior_guidance=best[0], decoder_guidance=best[1])
    scores, gains1 = {}, {}
    for k in up_steps:
        pipe.d["up1_steps"] = k
        scores[k] = overall(up1_steps=k)
        gains1[k] = upsampler_quality(pipe, 12, seed)["upsampler_1"]["gain_db"]
        log.append({"up1_steps": k, "gain_db": gains1[k]})
        print(json.dumps(log[-1]), flush=True)
    # the checker often cannot tell the step counts apart; then fidelity to the true render decides
    pipe.d["up1_steps"] = max(up_steps, key=lambda k: (scores[k], gains1[k], -k))
    gains = {}
    for k in up_steps:
        pipe.d["up2_steps"] = k
        gains[k] = upsampler_quality(pipe, 12, seed)["upsampler_2"]["gain_db"]
        log.append({"up2_steps": k, "gain_db": gains[k]})
        print(json.dumps(log[-1]), flush=True)
    pipe.d["up2_steps"] = max(up_steps, key=lambda k: (gains[k], -k))
    chosen = {k: pipe.d[k] for k in ("prior_steps", "prior_guidance", "decoder_steps", "decoder_guidance",
                                     "up1_steps", "up2_steps")}
    with open(os.path.join(run, "defaults.json"), "w") as f:
        json.dump(chosen, f, indent=1)
    return {"chosen": chosen, "tried": log}


def checker_on_ground_truth(prompts):
    res = []
    for p in prompts:
        img = W.render(p["scene"], 128, hi=256)
        ok, _ = judge(img, p["spec"])
        res.append({"category": p["category"], "pass": ok})
    return score(res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="training/runs/default", help="training run folder with checkpoints")
    ap.add_argument("--n", type=int, default=32, help="prompts per category")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--save", default=None, help="save generated PNGs here")
    ap.add_argument("--write-prompts", default=None)
    ap.add_argument("--images", default=None, help="judge PNGs <id>.png in this folder")
    ap.add_argument("--prompts", default=None, help="prompts.json for --images")
    ap.add_argument("--variations", type=int, default=8)
    ap.add_argument("--upsampler-n", type=int, default=24)
    ap.add_argument("--prior-guidance", type=float, default=None)
    ap.add_argument("--decoder-guidance", type=float, default=None)
    ap.add_argument("--decoder-samples", type=int, default=None, help="experiment, not in the engine: decoder candidates per image, the one whose image embedding is nearest kept")
    ap.add_argument("--prior-samples", type=int, default=None, help="experiment, not in the engine: prior candidates per image, the one nearest the text kept")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checker-only", action="store_true", help="judge the ground-truth renders only")
    ap.add_argument("--sweep", action="store_true", help="choose the engine defaults into <run>/defaults.json")
    ap.add_argument("--sweep-n", type=int, default=6, help="prompts per category for --sweep")
    args = ap.parse_args()
    prompts = make_prompts(n=args.n)
    if args.write_prompts:
        with open(args.write_prompts, "w") as f:
            json.dump([{k: p[k] for k in ("id", "category", "prompt", "spec")} for p in prompts], f, indent=1, ensure_ascii=False)
        print(f"wrote {len(prompts)} prompts to {args.write_prompts}")
        return
    if args.checker_only:
        print(json.dumps({"checker_on_ground_truth": checker_on_ground_truth(prompts)}, indent=1))
        return
    if args.images:
        ps = json.load(open(args.prompts or os.path.join(args.images, "prompts.json")))
        results, pairs = [], []
        for p in ps:
            fn = os.path.join(args.images, p.get("file", p["id"] + ".png"))
            if not os.path.exists(fn):
                continue
            src = np.asarray(Image.open(fn).convert("RGB"))
            ok, det = judge(src, p["spec"])
            results.append({"id": p["id"], "category": p["category"], "pass": ok})
            varied = fn[:-len(".png")] + "_V.png"  # a variation of this image, where the generator drew one
            if os.path.exists(varied):
                pairs.append((src, np.asarray(Image.open(varied).convert("RGB"))))
        out = score(results)
        out["n_judged"] = len(results)
        if pairs:
            out["variation"] = variation_consistency(pairs)
    else:
        import torch
        torch.set_num_threads(args.threads)
        pipe = Pipeline(args.run)
        if args.sweep:
            print(json.dumps(sweep(pipe, args.run, args.sweep_n, args.seed), indent=1))
            return
        kw = {}
        if args.prior_guidance is not None:
            kw["prior_guidance"] = args.prior_guidance
        if args.decoder_guidance is not None:
            kw["decoder_guidance"] = args.decoder_guidance
        if args.prior_samples is not None:
            kw["prior_samples"] = args.prior_samples
        if args.decoder_samples is not None:
            kw["decoder_samples"] = args.decoder_samples
        if args.save:
            os.makedirs(args.save, exist_ok=True)
        out, results = evaluate_pipeline(pipe, prompts, seed=args.seed, save_dir=args.save, variations=args.variations,
                                         upsampler_n=args.upsampler_n, **kw)
        out["settings"] = {**pipe.d, **{k: v for k, v in kw.items()}, "sampler": "DDIM eta=0",
                           "judged_at": "upsampler_1 output (grid tile), judged at 128 px"}
        out["checker_on_ground_truth"] = checker_on_ground_truth(prompts)
        if args.save:
            with open(os.path.join(args.save, "results.json"), "w") as f:
                json.dump(results, f, indent=1, ensure_ascii=False)
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
