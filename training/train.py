"""Rebuild imagine-shapes from a seed: data -> clip -> embed -> prior -> decoder -> up1 -> up2 -> export.

  /usr/bin/python3 -m training.train --out training/runs/default --seed 0            # everything, resumable
  /usr/bin/python3 -m training.train --out /tmp/tiny --tiny                          # CI smoke test
  /usr/bin/python3 -m training.train --out training/runs/default --stages decoder    # one stage

Every stage checkpoints to <out>/<stage>.pt (model, EMA, optimiser, step, RNG) every few minutes and at the
end, writes <out>/<stage>.done when finished; a rerun skips finished stages and resumes unfinished ones.
"""
import argparse
import copy
import json
import math
import os
import pickle
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import world as W
from .diffusion import Schedule, scheduler_config
from .nets import CLIP, Prior, Sketch, UNet, count_params
from .tokenizer import get_tokenizer

CONFIGS = {
    "default": dict(
        n_data=60000, embed_dim=128, text_width=64, text_layers=2, img_ch=(16, 32, 64, 64),
        clip_steps=1500, clip_batch=128, clip_lr=2e-3,
        prior_steps=2500, prior_batch=128, prior_lr=5e-4, prior_width=256, prior_depth=4,
        dec_steps=5000, dec_batch=32, dec_lr=1e-3, dec_ch=(32, 64, 128),
        up1_steps=2500, up1_batch=8, up1_lr=1e-3, up1_ch=(16, 32, 64),
        up2_steps=2000, up2_batch=4, up2_lr=1e-3, up2_ch=(16, 32, 48),
        crop=64, ckpt_seconds=120,
        # optional wall-clock caps in minutes per stage (0 = none): a stage ends at its step count or its cap,
        # whichever comes first; the learning-rate schedule follows whichever is further along.
        clip_minutes=0.0, prior_minutes=0.0, dec_minutes=0.0, up1_minutes=0.0, up2_minutes=0.0,
        cliptext_steps=3000, cliptext_batch=256, cliptext_lr=1e-3, cliptext_minutes=0.0,
        dec_sketch=1, clip_map_weight=1.0, up_cache=6000, prior_captions=4,
    ),
    "tiny": dict(
        n_data=512, embed_dim=128, text_width=32, text_layers=1, img_ch=(8, 8, 16, 16),
        clip_steps=3, clip_batch=16, clip_lr=1e-3,
        prior_steps=3, prior_batch=16, prior_lr=1e-3, prior_width=64, prior_depth=1,
        dec_steps=3, dec_batch=4, dec_lr=1e-3, dec_ch=(8, 16, 16),
        up1_steps=2, up1_batch=2, up1_lr=1e-3, up1_ch=(8, 8, 16),
        up2_steps=2, up2_batch=2, up2_lr=1e-3, up2_ch=(8, 8, 16),
        crop=32, ckpt_seconds=1e9, cliptext_steps=3, cliptext_batch=16, cliptext_lr=1e-3,
        clip_minutes=0.0, prior_minutes=0.0, dec_minutes=0.0, up1_minutes=0.0, up2_minutes=0.0,
        cliptext_minutes=0.0, dec_sketch=1, clip_map_weight=1.0, up_cache=16, prior_captions=2,
    ),
}
STAGES = ["data", "up_data", "clip", "embed", "clip_text", "text_embed", "prior", "decoder", "up1", "up2", "export"]
SCHED = {"prior": scheduler_config("sample", False), "decoder": scheduler_config("v_prediction", True),
         "up1": scheduler_config("v_prediction", True), "up2": scheduler_config("v_prediction", True)}
DEC_SIZE, UP1_FACTOR, UP2_FACTOR = 32, 4, 2


def log(out, stage, msg):
    line = f"[{time.strftime('%H:%M:%S')}] {stage}: {msg}"
    print(line, flush=True)
    with open(os.path.join(out, "train.log"), "a") as f:
        f.write(line + "\n")


def done(out, stage):
    return os.path.exists(os.path.join(out, stage + ".done"))


def mark_done(out, stage, info):
    with open(os.path.join(out, stage + ".done"), "w") as f:
        json.dump(info, f)


# ------------------------------------------------------------------ data

def stage_data(args, cfg):
    rng = random.Random(args.seed * 1000 + 1)
    N = cfg["n_data"]
    imgs = np.zeros((N, 64, 64, 3), np.uint8)
    maps = np.zeros((N, 8, 8, 2), np.int64)
    scenes = []
    t0 = time.time()
    for i in range(N):
        s = W.sample_scene(rng, split="train")
        imgs[i] = W.render(s, 64, hi=128)
        a, b = W.label_maps(s)
        maps[i, ..., 0], maps[i, ..., 1] = a, b
        scenes.append(s)
        if i % 10000 == 0:
            log(args.out, "data", f"{i}/{N}")
    np.save(os.path.join(args.out, "data_imgs.npy"), imgs)
    np.save(os.path.join(args.out, "data_maps.npy"), maps)
    with open(os.path.join(args.out, "data_scenes.pkl"), "wb") as f:
        pickle.dump(scenes, f)
    vocab_ids(args, scenes)
    return {"n": N, "seconds": time.time() - t0}


def vocab_ids(args, scenes):
    tok = get_tokenizer()
    ids = set([0, 49406, 49407])
    rng = random.Random(args.seed * 1000 + 2)
    for t in W.vocabulary_texts():
        ids.update(tok.ids(t))
    for i in range(min(len(scenes), 20000)):
        for split in ("train", "eval"):
            ids.update(tok.ids(W.caption(scenes[i], rng, split)[0]))
            ids.update(tok.ids(W.caption(scenes[i], rng, split, emoji=all(
                (g["color"], g["shape"]) in W.EMOJI for g in scenes[i]["groups"]))[0]))
    with open(os.path.join(args.out, "vocab_ids.json"), "w") as f:
        json.dump(sorted(ids), f)


def load_data(out):
    imgs = np.load(os.path.join(out, "data_imgs.npy"), mmap_mode="r")
    maps = np.load(os.path.join(out, "data_maps.npy"))
    with open(os.path.join(out, "data_scenes.pkl"), "rb") as f:
        scenes = pickle.load(f)
    return imgs, maps, scenes


def to_tensor(imgs_u8):
    return torch.from_numpy(np.ascontiguousarray(imgs_u8)).permute(0, 3, 1, 2).float() / 127.5 - 1


def text_batch(scenes, rng, split="train"):
    tok = get_tokenizer()
    ids, targets = [], {k: [] for k in W.ATTR_HEADS}
    for s in scenes:
        text, ment = W.caption(s, rng, split)
        ids.append(tok(text))
        for k, v in W.attr_targets(s, ment).items():
            targets[k].append(v)
    return torch.tensor(ids), {k: torch.tensor(v) for k, v in targets.items()}


def image_targets(scenes):
    targets = {k: [] for k in W.ATTR_HEADS}
    for s in scenes:
        for k, v in W.attr_targets(s).items():
            targets[k].append(v)
    return {k: torch.tensor(v) for k, v in targets.items()}


def build_clip(out, cfg):
    with open(os.path.join(out, "vocab_ids.json")) as f:
        used = json.load(f)
    return CLIP(used, cfg["embed_dim"], cfg["text_width"], cfg["text_layers"], 4, cfg["img_ch"], W.ATTR_HEADS)


def encode_text(clip, ids, full=False):
    """full=False: slice to the longest caption (identical results thanks to the causal mask)."""
    if not full:
        L = int(ids.argmax(-1).max()) + 1
        ids = ids[:, :L]
    return clip.text(ids)


def layout_loss(clip, image_embeds, maps):
    """CLIP's 8x8 colour/shape layout head on the image embeddings against the label maps [B, 8, 8, 2]."""
    colours, shapes = clip.map_logits(image_embeds)
    return F.cross_entropy(colours.reshape(-1, colours.shape[-1]), maps[..., 0].reshape(-1)) + \
        F.cross_entropy(shapes.reshape(-1, shapes.shape[-1]), maps[..., 1].reshape(-1))


def unlock_text_tower(clip):
    """CLIP's text phase (LiT): only the text tower and the temperature train; the image tower, whose
    embeddings the decoder and prior are trained on, and the heads stay as they are."""
    clip.train()
    for p in clip.parameters():
        p.requires_grad_(False)
    for p in clip.text.parameters():
        p.requires_grad_(True)
    clip.logit_scale.requires_grad_(True)


def heldout_text_check(clip, device="cpu"):
    """The text tower on 256 held-out scenes with evaluation-template captions: accuracy of the attribute
    head per attribute (unknown targets count as right), and image retrieval top-1 among the 256."""
    with torch.no_grad():
        rng = random.Random(5)
        scenes = [W.sample_scene(rng, split="eval") for _ in range(256)]
        ids, targets = text_batch(scenes, rng, "eval")
        te, _ = encode_text(clip, ids.to(device))
        ie = clip.image(to_tensor(np.stack([W.render(s, 64, hi=128) for s in scenes])).to(device))
        logits = clip.attr_logits(te)
        accuracy = {k: round(((logits[k].argmax(1) == v.to(device)) | (v.to(device) == W.IGN)).float().mean().item(), 3)
                    for k, v in targets.items()}
        retrieval = ((ie @ te.t()).argmax(1) == torch.arange(256, device=device)).float().mean().item()
    return accuracy, retrieval


# ------------------------------------------------------------------ generic training loop

class Trainer:
    def __init__(self, args, stage, model, lr, steps, ema=True, warmup=100, minutes=0.0):
        self.args, self.stage, self.model, self.steps = args, stage, model, steps
        self.budget = minutes * 60.0
        self.opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
        self.lr, self.warmup = lr, warmup
        self.ema = copy.deepcopy(model).eval() if ema else None
        self.step = 0
        self.elapsed = 0.0
        self.path = os.path.join(args.out, stage + ".pt")
        if os.path.exists(self.path):
            ck = torch.load(self.path)
            model.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["opt"])
            if self.ema is not None:
                self.ema.load_state_dict(ck["ema"])
            self.step, self.elapsed = ck["step"], ck.get("elapsed", 0.0)
            random.setstate(ck["py_rng"])
            torch.set_rng_state(ck["torch_rng"])
            np.random.set_state(ck["np_rng"])
            log(args.out, stage, f"resumed at step {self.step}")
        self.last_save = time.time()
        self.t0 = time.time()

    def save(self):
        ck = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "step": self.step,
              "elapsed": self.elapsed + time.time() - self.t0, "py_rng": random.getstate(),
              "torch_rng": torch.get_rng_state(), "np_rng": np.random.get_state()}
        if self.ema is not None:
            ck["ema"] = self.ema.state_dict()
        torch.save(ck, self.path + ".tmp")
        os.replace(self.path + ".tmp", self.path)
        self.last_save = time.time()

    def progress(self):
        p = self.step / max(1, self.steps)
        if self.budget > 0:
            p = max(p, self.total_seconds() / self.budget)
        return min(1.0, p)

    def running(self):
        return self.progress() < 1.0

    def update(self, loss):
        lr = self.lr * min(1.0, (self.step + 1) / self.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * self.progress())))
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        if self.ema is not None:
            d = min(0.999, (1 + self.step) / (10 + self.step))
            with torch.no_grad():
                for pe, p in zip(self.ema.parameters(), self.model.parameters()):
                    pe.mul_(d).add_(p.detach(), alpha=1 - d)
                for be, b in zip(self.ema.buffers(), self.model.buffers()):
                    be.copy_(b)
        self.step += 1
        if self.step % 50 == 0:  # optional live thread-count change: echo N > <out>/threads.<stage>
            tf = os.path.join(self.args.out, "threads." + self.stage)
            if os.path.exists(tf):
                try:
                    n = int(open(tf).read().strip())
                    if n != torch.get_num_threads():
                        torch.set_num_threads(n)
                        log(self.args.out, self.stage, f"threads -> {n}")
                except ValueError:
                    pass
        if time.time() - self.last_save > self.args.cfg["ckpt_seconds"]:
            self.save()

    def total_seconds(self):
        return self.elapsed + time.time() - self.t0


def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed % (1 << 31))
    torch.manual_seed(seed)


# ------------------------------------------------------------------ CLIP

def stage_clip(args, cfg):
    seed_all(args.seed * 1000 + 10)
    imgs, maps, scenes = load_data(args.out)
    clip = build_clip(args.out, cfg)
    log(args.out, "clip", f"params text {count_params(clip.text)} image {count_params(clip.image)}")
    tr = Trainer(args, "clip", clip, cfg["clip_lr"], cfg["clip_steps"], ema=False, warmup=50, minutes=cfg["clip_minutes"])
    rng = random.Random(args.seed * 1000 + 11 + tr.step)
    N, B = len(scenes), cfg["clip_batch"]
    maps_t = torch.from_numpy(maps)
    while tr.running():
        idx = np.sort(np.random.choice(N, B, replace=False))
        sc = [scenes[i] for i in idx]
        x = to_tensor(imgs[idx])
        ids, ttgt = text_batch(sc, rng)
        itgt = image_targets(sc)
        ie = clip.image(x)
        te, _ = encode_text(clip, ids)
        scale = clip.logit_scale.exp().clamp(max=100)
        logits = scale * ie @ te.t()
        lab = torch.arange(B)
        l_nce = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab)) / 2
        ai, at = clip.attr_logits(ie), clip.attr_logits(te)
        l_ai = sum(F.cross_entropy(ai[k], itgt[k], ignore_index=W.IGN) for k in W.ATTR_HEADS
                   if (itgt[k] != W.IGN).any()) / len(W.ATTR_HEADS)
        l_at = sum(F.cross_entropy(at[k], ttgt[k], ignore_index=W.IGN) for k in W.ATTR_HEADS
                   if (ttgt[k] != W.IGN).any()) / len(W.ATTR_HEADS)
        l_map = layout_loss(clip, ie, maps_t[idx])
        loss = l_nce + l_ai + l_at + cfg["clip_map_weight"] * l_map
        tr.update(loss)
        if tr.step % 25 == 0 or not tr.running():
            acc = (logits.argmax(1) == lab).float().mean().item()
            log(args.out, "clip", f"step {tr.step} loss {loss.item():.3f} nce {l_nce.item():.3f} attr_img {l_ai.item():.3f} "
                f"attr_txt {l_at.item():.3f} map {l_map.item():.3f} acc {acc:.2f} scale {scale.item():.1f} "
                f"{tr.total_seconds():.0f}s")
    tr.save()
    clip.eval()
    accs, r_acc = heldout_text_check(clip)
    log(args.out, "clip", f"held-out text attr acc {json.dumps(accs)} "
        f"retrieval@256 {r_acc:.3f}")
    return {"steps": tr.step, "seconds": tr.total_seconds(), "heldout_text_attr_acc": accs, "retrieval_top1_256": r_acc}


def load_clip(out, cfg, phase2=True):
    clip = build_clip(out, cfg)
    p = os.path.join(out, "clip_text.pt")
    if not (phase2 and os.path.exists(p)):
        p = os.path.join(out, "clip.pt")
    clip.load_state_dict(torch.load(p)["model"])
    return clip.eval()


def stage_embed(args, cfg):
    imgs, maps, scenes = load_data(args.out)
    clip = load_clip(args.out, cfg)
    embs = []
    with torch.no_grad():
        for i in range(0, len(scenes), 512):
            embs.append(clip.image(to_tensor(imgs[i:i + 512])))
    embs = torch.cat(embs)
    torch.save(embs, os.path.join(args.out, "data_img_embeds.pt"))
    imgs32 = F.avg_pool2d(to_tensor(imgs[:]), 2)
    torch.save(imgs32, os.path.join(args.out, "data_imgs32.pt"))
    return {"n": len(embs)}


# ------------------------------------------------------------------ CLIP, phase 2: locked-image text tuning

def stage_clip_text(args, cfg):
    """Phase 2 of CLIP (LiT): the image tower is frozen (its embeddings are already cached and used by the
    decoder); the text tower keeps training against the cached image embeddings with symmetric InfoNCE and
    the (frozen) attribute head. Cheap: no image forward passes."""
    seed_all(args.seed * 1000 + 15)
    _, _, scenes = load_data(args.out)
    embs = torch.load(os.path.join(args.out, "data_img_embeds.pt"))
    clip = load_clip(args.out, cfg)
    unlock_text_tower(clip)
    tr = Trainer(args, "clip_text", clip, cfg["cliptext_lr"], cfg["cliptext_steps"], ema=False, warmup=50,
                 minutes=cfg["cliptext_minutes"])
    rng = random.Random(args.seed * 1000 + 16 + tr.step)
    N, B = len(scenes), cfg["cliptext_batch"]
    while tr.running():
        idx = np.random.choice(N, B, replace=False)
        sc = [scenes[i] for i in idx]
        ids, ttgt = text_batch(sc, rng)
        ie = embs[idx]
        te, _ = encode_text(clip, ids)
        scale = clip.logit_scale.exp().clamp(max=100)
        logits = scale * ie @ te.t()
        # captions that do not mention everything match several images: mask exact-duplicate scenes only
        lab = torch.arange(B)
        l_nce = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab)) / 2
        at = clip.attr_logits(te)
        l_at = sum(F.cross_entropy(at[k], ttgt[k], ignore_index=W.IGN) for k in W.ATTR_HEADS
                   if (ttgt[k] != W.IGN).any()) / len(W.ATTR_HEADS)
        loss = l_nce + 2.0 * l_at
        tr.update(loss)
        if tr.step % 50 == 0 or not tr.running():
            acc = (logits.argmax(1) == lab).float().mean().item()
            log(args.out, "clip_text", f"step {tr.step} loss {loss.item():.3f} nce {l_nce.item():.3f} attr_txt {l_at.item():.3f} "
                f"acc {acc:.2f} {tr.total_seconds():.0f}s")
    tr.save()
    info = {"steps": tr.step, "seconds": tr.total_seconds()}
    clip.eval()
    info["heldout_text_attr_acc"], info["retrieval_top1_256"] = heldout_text_check(clip)
    log(args.out, "clip_text", json.dumps(info))
    return info


# ------------------------------------------------------------------ prior

def stage_text_embed(args, cfg):
    """Cache the final text tower's outputs for K training captions per scene, so that a prior step is only
    the prior (tokenising and encoding 128 captions dominated its step time): embeddings [N, K, E] and
    hidden states [N, K, L, W] in float16 (zeros after the end token stay exactly zero)."""
    _, _, scenes = load_data(args.out)
    clip = load_clip(args.out, cfg)
    tok = get_tokenizer()
    rng = random.Random(args.seed * 1000 + 17)
    K = cfg["prior_captions"]
    ids = torch.tensor([tok(W.caption(s, rng, "train")[0]) for s in scenes for _ in range(K)])
    L = int(ids.argmax(-1).max()) + 1
    ids = ids[:, :L]
    te, th = [], []
    with torch.no_grad():
        for i in range(0, len(ids), 2048):
            e, h = clip.text(ids[i:i + 2048])
            te.append(e)
            th.append(h.half())
    N = len(scenes)
    torch.save({"te": torch.cat(te).reshape(N, K, -1), "th": torch.cat(th).reshape(N, K, L, -1)},
               os.path.join(args.out, "data_text_embeds.pt"))
    return {"n": N, "captions_per_scene": K, "tokens": L}


def build_prior(cfg):
    return Prior(cfg["embed_dim"], cfg["text_width"], cfg["prior_width"], cfg["prior_depth"])


def stage_prior(args, cfg):
    seed_all(args.seed * 1000 + 20)
    _, _, scenes = load_data(args.out)
    embs = torch.load(os.path.join(args.out, "data_img_embeds.pt"))
    clip = load_clip(args.out, cfg)
    for p in clip.parameters():
        p.requires_grad_(False)
    tok = get_tokenizer()
    with torch.no_grad():
        ue, uh = clip.text(torch.tensor([tok("")]))
    prior = build_prior(cfg)
    log(args.out, "prior", f"params {count_params(prior)}")
    tr = Trainer(args, "prior", prior, cfg["prior_lr"], cfg["prior_steps"], warmup=100, minutes=cfg["prior_minutes"])
    rng = random.Random(args.seed * 1000 + 21 + tr.step)
    sched = Schedule(SCHED["prior"])
    k = math.sqrt(cfg["embed_dim"])
    N, B = len(scenes), cfg["prior_batch"]
    cache_path = os.path.join(args.out, "data_text_embeds.pt")
    cache = torch.load(cache_path) if os.path.exists(cache_path) else None
    while tr.running():
        idx = np.random.choice(N, B, replace=False)
        if cache is not None:
            choice = torch.randint(0, cache["te"].shape[1], (B,))
            rows = torch.from_numpy(idx)
            te, th = cache["te"][rows, choice], cache["th"][rows, choice].float()
        else:
            ids, _ = text_batch([scenes[i] for i in idx], rng)
            with torch.no_grad():
                te, th = clip.text(ids)
        drop = torch.rand(B) < 0.1
        te = torch.where(drop[:, None], ue.expand(B, -1), te)
        th = torch.where(drop[:, None, None], uh[:, :th.shape[1]].expand(B, -1, -1), th)
        x0 = embs[idx] * k
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (B,))
        pred = prior(sched.add_noise(x0, noise, t), t, te, th)
        loss = F.mse_loss(pred, x0)
        tr.update(loss)
        if tr.step % 100 == 0 or not tr.running():
            cos = F.cosine_similarity(pred, x0).mean().item()
            log(args.out, "prior", f"step {tr.step} loss {loss.item():.4f} cos {cos:.3f} {tr.total_seconds():.0f}s")
    tr.save()
    return {"steps": tr.step, "seconds": tr.total_seconds()}


# ------------------------------------------------------------------ decoder

def build_decoder(cfg):
    sketch = Sketch(cfg["embed_dim"]) if cfg.get("dec_sketch") else None
    return UNet(cfg["dec_ch"], 1, cond_dim=cfg["embed_dim"], mid_attn=True, sketch=sketch)


def stage_decoder(args, cfg):
    seed_all(args.seed * 1000 + 30)
    embs = torch.load(os.path.join(args.out, "data_img_embeds.pt"))
    x32 = torch.load(os.path.join(args.out, "data_imgs32.pt"))
    model = build_decoder(cfg)
    if model.sketch is not None:  # frozen copy of the CLIP layout head (same weights on every resume)
        model.sketch.load_from_clip(load_clip(args.out, cfg))
    log(args.out, "decoder", f"params {count_params(model)}")
    tr = Trainer(args, "decoder", model, cfg["dec_lr"], cfg["dec_steps"], warmup=200, minutes=cfg["dec_minutes"])
    sched = Schedule(SCHED["decoder"])
    N, B = len(embs), cfg["dec_batch"]
    ema_loss = None
    while tr.running():
        idx = torch.randint(0, N, (B,))
        x0, c = x32[idx], embs[idx]
        # robustness to prior samples / variation noise: perturb half of the embeddings a little
        z = torch.randn_like(c) / math.sqrt(c.shape[1])
        sig = torch.rand(B, 1) * 0.15 * (torch.rand(B, 1) < 0.5)
        c = F.normalize(c + sig * z, dim=-1)
        c = c * (torch.rand(B, 1) >= 0.1)  # conditioning dropout (zeros = unconditional)
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (B,))
        pred = model(sched.add_noise(x0, noise, t), t, c)
        loss = F.mse_loss(pred, sched.target(x0, noise, t))
        tr.update(loss)
        ema_loss = loss.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * loss.item()
        if tr.step % 100 == 0 or not tr.running():
            log(args.out, "decoder", f"step {tr.step} loss {ema_loss:.4f} {tr.total_seconds():.0f}s")
    tr.save()
    return {"steps": tr.step, "seconds": tr.total_seconds()}


# ------------------------------------------------------------------ upsamplers

def build_up(cfg, which):
    return UNet(cfg[which + "_ch"], 1, low_res=True, mid_attn=False)


UP_SIZE = DEC_SIZE * UP1_FACTOR * UP2_FACTOR


def stage_up_data(args, cfg):
    """Pre-render the upsamplers' targets once (rendering dominated their step time): n scenes at 256 px."""
    rng = random.Random(args.seed * 1000 + 3)
    n = cfg["up_cache"]
    imgs = np.zeros((n, UP_SIZE, UP_SIZE, 3), np.uint8)
    t0 = time.time()
    for i in range(n):
        imgs[i] = W.render(W.sample_scene(rng, split="train"), UP_SIZE)
    np.save(os.path.join(args.out, "up_imgs.npy"), imgs)
    return {"n": n, "seconds": time.time() - t0}


def up_batch(rng, B, hi, factor, crop, aug=True, cache=None):
    """hi-res targets from the world (the pre-rendered cache, randomly flipped/rotated, or fresh renders),
    the low-res image = area downsample, bilinear back up."""
    if cache is not None:
        idx = sorted(rng.randrange(len(cache)) for _ in range(B))
        x = to_tensor(cache[idx])
        if hi != x.shape[2]:
            x = F.avg_pool2d(x, x.shape[2] // hi)
        k = rng.randrange(4)
        x = torch.rot90(x, k, (2, 3))
        if rng.random() < 0.5:
            x = x.flip(3)
    else:
        his = [W.render(W.sample_scene(rng, split="train"), hi, hi=max(256, hi)) for _ in range(B)]
        x = to_tensor(np.stack(his))
    lo = F.avg_pool2d(x, factor)
    if aug:
        lo = lo + torch.randn_like(lo) * (torch.rand(B, 1, 1, 1) * 0.03)
    lo_up = F.interpolate(lo, scale_factor=factor, mode="bilinear", align_corners=False)
    ys = [rng.randrange(0, hi - crop + 1) for _ in range(B)]
    xs = [rng.randrange(0, hi - crop + 1) for _ in range(B)]
    xc = torch.stack([x[i, :, y:y + crop, xx:xx + crop] for i, (y, xx) in enumerate(zip(ys, xs))])
    lc = torch.stack([lo_up[i, :, y:y + crop, xx:xx + crop] for i, (y, xx) in enumerate(zip(ys, xs))])
    return xc, lc


def stage_up(args, cfg, which):
    seed_all(args.seed * 1000 + (40 if which == "up1" else 50))
    hi, factor = (DEC_SIZE * UP1_FACTOR, UP1_FACTOR) if which == "up1" else (DEC_SIZE * UP1_FACTOR * UP2_FACTOR, UP2_FACTOR)
    model = build_up(cfg, which)
    log(args.out, which, f"params {count_params(model)}")
    tr = Trainer(args, which, model, cfg[which + "_lr"], cfg[which + "_steps"], warmup=100, minutes=cfg[which + "_minutes"])
    rng = random.Random(args.seed * 1000 + 41 + tr.step)
    sched = Schedule(SCHED[which])
    B = cfg[which + "_batch"]
    cache_path = os.path.join(args.out, "up_imgs.npy")
    cache = np.load(cache_path, mmap_mode="r") if os.path.exists(cache_path) else None
    ema_loss = None
    while tr.running():
        x0, lo = up_batch(rng, B, hi, factor, cfg["crop"], cache=cache)
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (B,))
        pred = model(sched.add_noise(x0, noise, t), t, None, lo)
        loss = F.mse_loss(pred, sched.target(x0, noise, t))
        tr.update(loss)
        ema_loss = loss.item() if ema_loss is None else 0.98 * ema_loss + 0.02 * loss.item()
        if tr.step % 100 == 0 or not tr.running():
            log(args.out, which, f"step {tr.step} loss {ema_loss:.4f} {tr.total_seconds():.0f}s")
    tr.save()
    return {"steps": tr.step, "seconds": tr.total_seconds()}


# ------------------------------------------------------------------ main

def override(config, assignment):
    """--set key=value: the value parsed as Python and given the type of the default it replaces."""
    k, v = assignment.split("=", 1)
    config[k] = tuple(eval(v)) if isinstance(config[k], tuple) else type(config[k])(eval(v))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="training/runs/default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--stages", default=",".join(STAGES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export-dir", default=None, help="default: models/imagine-shapes (tiny: <out>/export)")
    ap.add_argument("--set", action="append", default=[], help="override a config value, e.g. dec_steps=8000")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = dict(CONFIGS["tiny" if args.tiny else "default"])
    for kv in args.set:
        override(cfg, kv)
    cfg_path = os.path.join(args.out, "config.json")
    if os.path.exists(cfg_path) and not args.set:  # a resumed run keeps the overrides it started with
        old = json.load(open(cfg_path))
        for k in cfg:
            if k in old:
                cfg[k] = tuple(old[k]) if isinstance(cfg[k], tuple) else old[k]
    args.cfg = cfg
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    with open(cfg_path, "w") as f:
        json.dump({"seed": args.seed, "tiny": args.tiny, **cfg}, f, indent=1)
    if args.export_dir is None:
        args.export_dir = os.path.join(args.out, "export") if args.tiny else os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "..", "models", "imagine-shapes")
    for stage in args.stages.split(","):
        if stage != "export" and done(args.out, stage):
            log(args.out, stage, "already done, skipping")
            continue
        t0 = time.time()
        log(args.out, stage, "start")
        if stage == "data":
            info = stage_data(args, cfg)
        elif stage == "up_data":
            info = stage_up_data(args, cfg)
        elif stage == "clip":
            info = stage_clip(args, cfg)
        elif stage == "clip_text":
            info = stage_clip_text(args, cfg)
        elif stage == "embed":
            info = stage_embed(args, cfg)
        elif stage == "text_embed":
            info = stage_text_embed(args, cfg)
        elif stage == "prior":
            info = stage_prior(args, cfg)
        elif stage == "decoder":
            info = stage_decoder(args, cfg)
        elif stage in ("up1", "up2"):
            info = stage_up(args, cfg, stage)
        elif stage == "export":
            from .export import export_all
            info = export_all(args.out, cfg, args.export_dir)
        else:
            raise SystemExit(f"unknown stage {stage}")
        info["wall_seconds_this_run"] = time.time() - t0
        mark_done(args.out, stage, info)
        log(args.out, stage, f"done {json.dumps(info)[:300]}")


if __name__ == "__main__":
    main()
