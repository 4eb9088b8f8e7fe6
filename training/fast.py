"""Accelerated rebuild of imagine-shapes: the networks, world, losses and run-folder format of train.py, with
the data pre-rendered once by parallel worker processes and held on the device, and the stages run at the
same time as separate processes sharing one accelerator, each ended by a wall-clock deadline.

  python3 -m training.fast --out RUN --device cuda --seconds 520 [--workers 15] [--pack DIR]
  /usr/bin/python3 -m training.fast --out /tmp/fast-check --device cpu --tiny --seconds 60   (a quick check)
  /usr/bin/python3 -m training.fast --unpack DIR --out training/runs/gpu1   (a packed run -> a run folder)
  python3 -m training.fast --out RUN2 --roles clip_text,prior,decoder --resume RUN ...   (continue some stages)
  /usr/bin/python3 -m training.fast --out RUN2 --device cpu --roles text_distill --resume RUN ...   (text tower only,
      distilled through RUN's prior; see role_text_distill)

Schedule (t = 0 when the data is ready):
  up1, up2       t = 0 .. deadline
  clip           joint CLIP until `clip_share` of the time, then the text-only phase until `clip_text_share`
  decoder        from the end of joint CLIP (it needs only the frozen image tower and layout head) .. deadline
  prior          from the end of the text phase .. deadline
Each writes <stage>.pt in train.py's format ({"model", "ema", "step", "elapsed"}) and <stage>.done, so that
`training.export`, `training.evaluate` and `training.verify_onnx` read the run folder unchanged. `--pack`
stores the weights as .npz (readable by any numpy/torch version) in a tar split into 15 MiB parts.
"""
import argparse
import glob
import io
import json
import math
import multiprocessing
import os
import random
import subprocess
import sys
import tarfile
import time

import numpy as np

from . import world as W

HEADS = list(W.ATTR_HEADS)
UP_SIZE = 256  # train.UP_SIZE, without importing torch into the render workers

FAST = dict(
    n_data=200000, captions=8, up_cache=20000,
    text_width=128, text_layers=3, prior_width=384, prior_depth=6,
    clip_batch=512, clip_lr=1e-3, cliptext_batch=1024, cliptext_lr=5e-4,
    prior_batch=512, prior_lr=5e-4, dec_batch=128, dec_lr=1e-3,
    up1_batch=64, up1_lr=1e-3, up2_batch=32, up2_lr=1e-3,
    # joint CLIP had levelled off (retrieval 0.95) by a fifth of the first GPU run: the decoder, which starts
    # when it ends, gets the time instead
    clip_share=0.22, clip_text_share=0.32, ema_decay=0.999, save_seconds=60, noise_p=0.2,
    distill_batch=256, distill_lr=2e-4, distill_noise_p=0.3,
)
FAST_TINY = dict(FAST, n_data=2000, captions=2, up_cache=64, clip_batch=32, cliptext_batch=64, prior_batch=32,
                 dec_batch=8, up1_batch=4, up2_batch=2, distill_batch=16)


# ------------------------------------------------------------------ data, rendered by worker processes

def _render_chunk(job):
    kind, out, seed, index, n, K = job
    rng = random.Random(seed * 1000003 + index * 7919 + (17 if kind == "up" else 0))
    if kind == "up":
        imgs = np.stack([W.render(W.sample_scene(rng, split="train"), UP_SIZE) for _ in range(n)])
        np.save(os.path.join(out, "chunks", f"up-{index:04d}.npy"), imgs)
        return []
    from .tokenizer import get_tokenizer
    tok = get_tokenizer()
    imgs = np.zeros((n, 64, 64, 3), np.uint8)
    maps = np.zeros((n, 8, 8, 2), np.int16)
    itgt = np.zeros((n, len(HEADS)), np.int16)
    ids = np.zeros((n, K, 77), np.int32)
    ttgt = np.zeros((n, K, len(HEADS)), np.int16)
    vocab = set()
    for i in range(n):
        s = W.sample_scene(rng, split="train")
        imgs[i] = W.render(s, 64, hi=128)
        a, b = W.label_maps(s)
        maps[i, ..., 0], maps[i, ..., 1] = a, b
        t = W.attr_targets(s)
        itgt[i] = [t[h] for h in HEADS]
        for k in range(K):
            text, mentioned = W.caption(s, rng, "train")
            ids[i, k] = tok(text)
            t = W.attr_targets(s, mentioned)
            ttgt[i, k] = [t[h] for h in HEADS]
        vocab.update(int(v) for v in np.unique(ids[i]))
        # as train.vocab_ids: the vocabulary also covers the evaluation's phrasings and emoji captions
        vocab.update(tok.ids(W.caption(s, rng, "eval")[0]))
        vocab.update(tok.ids(W.caption(s, rng, "eval", emoji=all(
            (g["color"], g["shape"]) in W.EMOJI for g in s["groups"]))[0]))
    np.savez(os.path.join(out, "chunks", f"data-{index:04d}.npz"), imgs=imgs, maps=maps, itgt=itgt, ids=ids, ttgt=ttgt)
    return sorted(vocab)


def prepare(args, fast, workers):
    """Render the scenes (64 px + label maps + K tokenised captions with their targets) and the upsamplers'
    256 px cache in chunks, in parallel; write vocab_ids.json. Returns seconds taken."""
    from .tokenizer import get_tokenizer
    t0 = time.time()
    os.makedirs(os.path.join(args.out, "chunks"), exist_ok=True)
    chunk = 2000 if not args.tiny else 500
    jobs = [("up", args.out, args.seed, i, min(500, fast["up_cache"] - i * 500), 0)
            for i in range((fast["up_cache"] + 499) // 500)]
    jobs += [("data", args.out, args.seed, i, min(chunk, fast["n_data"] - i * chunk), fast["captions"])
             for i in range((fast["n_data"] + chunk - 1) // chunk)]
    vocab = {0, 49406, 49407}
    tok = get_tokenizer()
    for t in W.vocabulary_texts():
        vocab.update(tok.ids(t))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for v in pool.imap_unordered(_render_chunk, jobs):
            vocab.update(v)
    with open(os.path.join(args.out, "vocab_ids.json"), "w") as f:
        json.dump(sorted(vocab), f)
    return time.time() - t0


def load_chunks(out, kind, keys=None):
    if kind == "up":
        return np.concatenate([np.load(p) for p in sorted(glob.glob(os.path.join(out, "chunks", "up-*.npy")))])
    parts = [np.load(p) for p in sorted(glob.glob(os.path.join(out, "chunks", "data-*.npz")))]
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


# ------------------------------------------------------------------ one stage's optimiser, EMA, deadline

class Run:
    """AdamW with warm-up and a cosine schedule that follows the wall clock to the deadline, an EMA copy,
    and a checkpoint in train.py's format every `save_seconds`."""

    def __init__(self, torch, out, stage, model, lr, deadline, fast, warmup=200, ema=True, resumed_from=0):
        import copy
        self.torch, self.out, self.stage, self.model = torch, out, stage, model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=0.0)
        self.lr, self.warmup, self.deadline, self.fast = lr, warmup, deadline, fast
        self.start = time.time()
        self.ema = copy.deepcopy(model).eval() if ema else None
        if self.ema is not None:
            self.ema_params = list(self.ema.parameters())
            self.model_params = list(model.parameters())
        self.step = 0
        self.resumed_from = resumed_from  # a resumed stage's EMA starts from trained weights: no EMA warm-up
        self.last_save = time.time()

    def progress(self):
        return min(1.0, (time.time() - self.start) / max(1e-6, self.deadline - self.start))

    def running(self):
        return time.time() < self.deadline

    def update(self, loss):
        torch = self.torch
        lr = self.lr * min(1.0, (self.step + 1) / self.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * self.progress())))
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        if self.ema is not None:
            d = self.fast["ema_decay"] if self.resumed_from else min(self.fast["ema_decay"], (1 + self.step) / (10 + self.step))
            with torch.no_grad():
                torch._foreach_mul_(self.ema_params, d)
                torch._foreach_add_(self.ema_params, [p.detach() for p in self.model_params], alpha=1 - d)
                for be, b in zip(self.ema.buffers(), self.model.buffers()):
                    be.copy_(b)
        self.step += 1
        if time.time() - self.last_save > self.fast["save_seconds"]:
            self.save()

    def finish(self, batch):
        """The last checkpoint and <stage>.done, with steps counted from the start of the resumed run."""
        self.step += self.resumed_from
        self.save(info={"steps": self.step, "resumed_from": self.resumed_from, "seconds": time.time() - self.start, "batch": batch})
        log(self.out, self.stage, f"done at step {self.step}")

    def save(self, name=None, info=None):
        torch = self.torch
        cpu = lambda m: {k: v.detach().cpu() for k, v in m.state_dict().items()}
        ck = {"model": cpu(self.model), "step": self.step, "elapsed": time.time() - self.start}
        if self.ema is not None:
            ck["ema"] = cpu(self.ema)
        path = os.path.join(self.out, (name or self.stage) + ".pt")
        torch.save(ck, path + ".tmp")
        os.replace(path + ".tmp", path)
        self.last_save = time.time()
        if info is not None:
            with open(os.path.join(self.out, (name or self.stage) + ".done"), "w") as f:
                json.dump(info, f)


def log(out, stage, msg):
    line = f"[{time.strftime('%H:%M:%S')}] {stage}: {msg}"
    print(line, flush=True)
    with open(os.path.join(out, "train.log"), "a") as f:
        f.write(line + "\n")


def wait_for(out, marker, deadline):
    while not os.path.exists(os.path.join(out, marker)):
        if time.time() > deadline:
            raise SystemExit(f"{marker} did not appear before the deadline")
        time.sleep(1)


# ------------------------------------------------------------------ stages

ROLE_SEEDS = {"clip": 10, "clip_text": 12, "text_distill": 13, "embed": 15, "prior": 20, "decoder": 30, "up1": 40, "up2": 50}


def masked_cross_entropy(logits, target):
    """Mean cross-entropy over the known targets (0 where none is known), with no host sync."""
    import torch.nn.functional as F
    known = target != W.IGN
    loss = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
    return (loss * known).sum() / known.sum().clamp(min=1)


def setup(args):
    import torch
    torch.manual_seed(args.seed * 1000 + ROLE_SEEDS[args.role])
    random.seed(args.seed * 1000 + ROLE_SEEDS[args.role])
    torch.set_num_threads(args.threads)
    if args.device != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    return torch, torch.device(args.device)


def device_schedule(which, dev):
    """The stage's noise schedule with its table on the device (training indexes it with device timesteps)."""
    from .diffusion import Schedule
    from .train import SCHED
    sched = Schedule(SCHED[which])
    sched.alphas_cumprod = sched.alphas_cumprod.to(dev)
    return sched


def images(torch, u8):
    return u8.permute(0, 3, 1, 2).float() / 127.5 - 1


def token_ids(torch, dev, ids):
    """The captions' ids [N, K, 77] on the device, cut after the longest caption's end token."""
    ids = torch.from_numpy(ids).to(dev)
    return ids[:, :, :int(ids.argmax(-1).max()) + 1].contiguous()


def text_data(torch, dev, d):
    return token_ids(torch, dev, d["ids"]), torch.from_numpy(d["ttgt"].astype(np.int64)).to(dev)


def role_clip(args, cfg, fast):
    torch, dev = setup(args)
    import torch.nn.functional as F
    from .train import build_clip, layout_loss
    d = load_chunks(args.out, "data", ["imgs", "maps", "itgt", "ids", "ttgt"])
    imgs = torch.from_numpy(d["imgs"]).to(dev)
    maps = torch.from_numpy(d["maps"].astype(np.int64)).to(dev)
    itgt = torch.from_numpy(d["itgt"].astype(np.int64)).to(dev)
    ids, ttgt = text_data(torch, dev, d)
    N, K = ids.shape[0], ids.shape[1]
    clip = build_clip(args.out, cfg).to(dev)
    t0, span = time.time(), args.deadline - args.t0
    joint_end, text_end = args.t0 + span * fast["clip_share"], args.t0 + span * fast["clip_text_share"]
    run = Run(torch, args.out, "clip", clip, fast["clip_lr"], joint_end, fast, warmup=200, ema=False)
    B = fast["clip_batch"]
    lab = torch.arange(B, device=dev)
    ce = masked_cross_entropy
    while run.running():
        idx = torch.randperm(N, device=dev)[:B]
        k = torch.randint(0, K, (B,), device=dev)
        ie = clip.image(images(torch, imgs[idx]))
        te, _ = clip.text(ids[idx, k].long())
        scale = clip.logit_scale.exp().clamp(max=100)
        logits = scale * ie @ te.t()
        l_nce = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab)) / 2
        ai, at = clip.attr_logits(ie), clip.attr_logits(te)
        tt, it = ttgt[idx, k], itgt[idx]
        l_ai = sum(ce(ai[h], it[:, j]) for j, h in enumerate(HEADS)) / len(HEADS)
        l_at = sum(ce(at[h], tt[:, j]) for j, h in enumerate(HEADS)) / len(HEADS)
        l_map = layout_loss(clip, ie, maps[idx])
        loss = l_nce + l_ai + l_at + cfg["clip_map_weight"] * l_map
        run.update(loss)
        if run.step % 200 == 0:
            acc = (logits.argmax(1) == lab).float().mean().item()
            log(args.out, "clip", f"step {run.step} loss {loss.item():.3f} nce {l_nce.item():.3f} attr_img {l_ai.item():.3f} "
                f"attr_txt {l_at.item():.3f} map {l_map.item():.3f} acc {acc:.2f} {time.time() - t0:.0f}s")
    joint_steps = run.step
    embs = save_image_embeddings(torch, args.out, clip.eval(), imgs)
    run.save("clip", {"steps": joint_steps, "seconds": time.time() - t0})
    log(args.out, "clip", f"joint phase done at step {joint_steps}")

    text_phase(args, cfg, fast, torch, dev, clip, embs, ids, ttgt, text_end, t0, {"joint_steps": joint_steps})


FILLER = ["a", "the", "of", "with", "is", "it", "there", ","]


def noise_tokens(torch, out, dev):
    """What insert_noise draws from: half the time a CLIP id outside the world's vocabulary (the text encoder
    maps it to its UNK row), else a function word of the captions that says nothing by itself."""
    from .tokenizer import get_tokenizer
    used = set(json.load(open(os.path.join(out, "vocab_ids.json"))))
    unknown = max(i for i in range(49406) if i not in used)
    tok = get_tokenizer()
    words = [tok.ids(w)[1] for w in FILLER]  # [start, word, end]
    return torch.tensor([unknown] * len(words) + words, device=dev)


def insert_noise(torch, ids, noise, p, most=3):
    """With probability p per slot (up to `most` per caption), insert a token drawn from `noise` at a random place
    between the start and end tokens (random insertion, as in EDA): words the captions never use (the
    evaluation's own phrasings, a user's filler) and stray function words then reach the encoders as tokens
    they have learned to look past. ids [B, L] -> [B, L + most]."""
    B, L = ids.shape
    dev = ids.device
    eot = ids.argmax(-1, keepdim=True)
    pos = torch.arange(L, device=dev).expand(B, L).float()
    pos = torch.where(pos > eot, pos + 1000.0, pos)  # padding stays after everything
    active = torch.rand(B, most, device=dev) < p
    where = 0.5 + torch.rand(B, most, device=dev) * (eot.float() - 0.5)  # after the start token, before the end token
    keys = torch.cat([pos, torch.where(active, where, torch.full_like(where, 5000.0))], 1)
    drawn = noise[torch.randint(0, len(noise), (B, most), device=dev)].to(ids.dtype)
    tokens = torch.cat([ids, torch.where(active, drawn, torch.zeros_like(drawn))], 1)
    return tokens.gather(1, keys.argsort(1))


def tie_unseen_rows(torch, clip, ids):
    """Rows of the vocabulary table that no training caption uses were never trained: give them the UNK row,
    so an unseen word means 'unknown' rather than a random vector."""
    table = clip.text.tok.weight
    seen = torch.zeros(table.shape[0], dtype=torch.bool, device=table.device)
    seen[clip.text.remap[ids.unique().long()]] = True
    seen[0] = True
    with torch.no_grad():
        table[~seen] = table[0].detach().clone()
    return int((~seen).sum())


def text_phase(args, cfg, fast, torch, dev, clip, embs, ids, ttgt, end, t0, info):
    """CLIP phase 2 (LiT): image tower, heads and layout map frozen; the text tower keeps training against the
    cached image embeddings, with unknown words inserted into a share of its captions."""
    import torch.nn.functional as F
    from .train import heldout_text_check, unlock_text_tower
    unlock_text_tower(clip)
    run = Run(torch, args.out, "clip_text", clip, fast["cliptext_lr"], end, fast, warmup=100, ema=False)
    N, K, B = ids.shape[0], ids.shape[1], fast["cliptext_batch"]
    noise_ids = noise_tokens(torch, args.out, dev)
    lab = torch.arange(B, device=dev)
    while run.running():
        idx = torch.randperm(N, device=dev)[:B]
        k = torch.randint(0, K, (B,), device=dev)
        te, _ = clip.text(insert_noise(torch, ids[idx, k].long(), noise_ids, fast["noise_p"]))
        scale = clip.logit_scale.exp().clamp(max=100)
        logits = scale * embs[idx] @ te.t()
        l_nce = (F.cross_entropy(logits, lab) + F.cross_entropy(logits.t(), lab)) / 2
        at = clip.attr_logits(te)
        tt = ttgt[idx, k]
        l_at = sum(masked_cross_entropy(at[h], tt[:, j]) for j, h in enumerate(HEADS)) / len(HEADS)
        loss = l_nce + 2.0 * l_at
        run.update(loss)
        if run.step % 200 == 0:
            acc = (logits.argmax(1) == lab).float().mean().item()
            log(args.out, "clip_text", f"step {run.step} loss {loss.item():.3f} nce {l_nce.item():.3f} "
                f"attr_txt {l_at.item():.3f} acc {acc:.2f}")
    clip.eval()
    info = {**info, "steps": run.step, "seconds": time.time() - t0, "noise_p": fast["noise_p"], "noise_words": FILLER,
            "rows_tied_to_unknown": tie_unseen_rows(torch, clip, ids)}
    info["heldout_text_attr_acc"], info["retrieval_top1_256"] = heldout_text_check(clip, dev)
    run.save("clip_text", info)
    log(args.out, "clip_text", json.dumps(info))


def role_clip_text(args, cfg, fast):
    """Only CLIP's text phase, from a resumed run's CLIP (clip_text.pt, else clip.pt)."""
    torch, dev = setup(args)
    from .train import load_clip
    ids, ttgt = text_data(torch, dev, load_chunks(args.out, "data", ["ids", "ttgt"]))
    clip = load_clip(args.resume, cfg).to(dev)
    log(args.out, "clip_text", f"resumed from {args.resume}")
    wait_for(args.out, "embed.done", args.deadline)
    embs = torch.load(os.path.join(args.out, "data_img_embeds.pt")).to(dev)
    span = args.deadline - args.t0
    text_phase(args, cfg, fast, torch, dev, clip, embs, ids, ttgt, args.t0 + span * fast["clip_text_share"],
               time.time(), {"resumed_from": args.resume})


def retie_unknown_rows(torch, teacher, student):
    """The rows the teacher had tied to UNK (words no training caption used) follow the student's trained UNK
    row; re-tying from this run's captions instead would also tie the rare words its smaller sample missed."""
    old, new = teacher.text.tok.weight, student.text.tok.weight
    tied = (old == old[0]).all(1)
    tied[0] = False
    with torch.no_grad():
        new[tied] = new[0].detach().clone()
    return int(tied.sum())


def role_text_distill(args, cfg, fast):
    """CLIP's text phase for a run whose prior is trained (CPU-sized): the text tower learns to read captions
    with noise tokens as the resumed tower reads them without, judged where it matters, through the resumed
    prior (frozen). Its output space stays the one the prior was trained on, so the prior needs no retraining;
    the empty caption (the prior's unconditional input) is held where it was. Writes clip_text.pt."""
    torch, dev = setup(args)
    import copy
    import torch.nn.functional as F
    from .tokenizer import get_tokenizer
    from .train import build_prior, load_clip, heldout_text_check, unlock_text_tower
    ids = token_ids(torch, dev, load_chunks(args.out, "data", ["ids"])["ids"])
    teacher = load_clip(args.resume, cfg).to(dev)
    student = copy.deepcopy(teacher)
    for p in teacher.parameters():
        p.requires_grad_(False)
    unlock_text_tower(student)
    student.logit_scale.requires_grad_(False)
    prior = build_prior(cfg)
    resume_weights(args, "prior", prior)
    prior = prior.to(dev).eval()
    for p in prior.parameters():
        p.requires_grad_(False)
    wait_for(args.out, "embed.done", args.deadline)
    embs = torch.load(os.path.join(args.out, "data_img_embeds.pt")).to(dev)
    empty = torch.tensor([get_tokenizer()("")], device=dev)[:, :2]
    with torch.no_grad():
        ue, uh = teacher.text(empty)
    run = Run(torch, args.out, "clip_text", student, fast["distill_lr"], args.deadline, fast, warmup=50, ema=False)
    sched = device_schedule("prior", dev)
    scale = math.sqrt(cfg["embed_dim"])
    noise_ids = noise_tokens(torch, args.out, dev)
    N, K, B = ids.shape[0], ids.shape[1], fast["distill_batch"]
    while run.running():
        idx = torch.randint(0, N, (B,), device=dev)
        clean = ids[idx, torch.randint(0, K, (B,), device=dev)].long()
        with torch.no_grad():
            te, th = teacher.text(clean)
        se, sh = student.text(insert_noise(torch, clean, noise_ids, fast["distill_noise_p"]))
        x0 = embs[idx] * scale
        t = torch.randint(0, 1000, (B,), device=dev)
        xt = sched.add_noise(x0, torch.randn_like(x0), t)
        with torch.no_grad():
            target = prior(xt, t, te, th)
        l_prior = F.mse_loss(prior(xt, t, se, sh), target)
        l_emb = (1 - F.cosine_similarity(se, te)).mean()
        e, h = student.text(empty)
        l_empty = F.mse_loss(e, ue) + F.mse_loss(h, uh)
        loss = l_prior + l_emb + l_empty
        run.update(loss)
        if run.step % 100 == 0:
            log(args.out, "clip_text", f"step {run.step} prior {l_prior.item():.4f} emb {l_emb.item():.4f} "
                f"empty {l_empty.item():.5f} {time.time() - run.start:.0f}s")
    student.eval()
    info = {"steps": run.step, "seconds": time.time() - run.start, "distilled_from": args.resume, "batch": B,
            "noise_p": fast["distill_noise_p"], "noise_words": FILLER,
            "rows_tied_to_unknown": retie_unknown_rows(torch, teacher, student)}
    # retrieval only: a run rebuilt from a package (training.from_onnx) has no trained attribute heads
    info["retrieval_top1_256"] = heldout_text_check(student, dev)[1]
    info["retrieval_top1_256_before"] = heldout_text_check(teacher, dev)[1]
    run.save("clip_text", info)
    log(args.out, "clip_text", json.dumps(info))


def save_image_embeddings(torch, out, clip, imgs):
    """The image embeddings of every scene, saved for the decoder and prior (embed.done marks them ready)."""
    with torch.no_grad():
        embs = torch.cat([clip.image(images(torch, imgs[i:i + 4096])) for i in range(0, len(imgs), 4096)])
    torch.save(embs.cpu(), os.path.join(out, "data_img_embeds.pt"))
    open(os.path.join(out, "embed.done"), "w").write("{}")
    log(out, "embed", f"image embeddings of {len(embs)} scenes saved")
    return embs


def role_embed(args, cfg, fast):
    """Only the image embeddings of this run's scenes, from a resumed run's CLIP (when clip is not trained)."""
    torch, dev = setup(args)
    from .train import load_clip
    imgs = torch.from_numpy(load_chunks(args.out, "data", ["imgs"])["imgs"]).to(dev)
    save_image_embeddings(torch, args.out, load_clip(args.out, cfg, phase2=False).to(dev), imgs)


def resume_weights(args, stage, model):
    """--resume DIR: start this stage from DIR/<stage>.pt (its EMA weights) instead of from scratch."""
    import torch
    path = os.path.join(args.resume, stage + ".pt") if args.resume else None
    if path and os.path.exists(path):
        ck = torch.load(path, map_location="cpu")
        model.load_state_dict(ck.get("ema", ck["model"]))
        log(args.out, stage, f"resumed from {path} (step {ck.get('step')})")
        return int(ck.get("step", 0))
    return 0


def role_prior(args, cfg, fast):
    torch, dev = setup(args)
    import torch.nn.functional as F
    from .tokenizer import get_tokenizer
    from .train import build_prior, load_clip
    ids = token_ids(torch, dev, load_chunks(args.out, "data", ["ids"])["ids"])
    wait_for(args.out, "clip_text.done", args.deadline)
    clip = load_clip(args.out, cfg).to(dev)
    for p in clip.parameters():
        p.requires_grad_(False)
    wait_for(args.out, "embed.done", args.deadline)
    embs = torch.load(os.path.join(args.out, "data_img_embeds.pt")).to(dev)
    with torch.no_grad():
        ue, uh = clip.text(torch.tensor([get_tokenizer()("")], device=dev))
    prior = build_prior(cfg)
    before = resume_weights(args, "prior", prior)
    prior = prior.to(dev)
    run = Run(torch, args.out, "prior", prior, fast["prior_lr"], args.deadline, fast, warmup=200, resumed_from=before)
    sched = device_schedule("prior", dev)
    scale = math.sqrt(cfg["embed_dim"])
    noise_ids = noise_tokens(torch, args.out, dev)
    N, K, B = ids.shape[0], ids.shape[1], fast["prior_batch"]
    while run.running():
        idx = torch.randint(0, N, (B,), device=dev)
        k = torch.randint(0, K, (B,), device=dev)
        with torch.no_grad():
            te, th = clip.text(insert_noise(torch, ids[idx, k].long(), noise_ids, fast["noise_p"]))
        drop = torch.rand(B, device=dev) < 0.1
        te = torch.where(drop[:, None], ue.expand(B, -1), te)
        th = torch.where(drop[:, None, None], uh[:, :th.shape[1]].expand(B, -1, -1), th)
        x0 = embs[idx] * scale
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (B,), device=dev)
        pred = prior(sched.add_noise(x0, noise, t), t, te, th)
        loss = F.mse_loss(pred, x0)
        run.update(loss)
        if run.step % 500 == 0:
            cos = F.cosine_similarity(pred, x0).mean().item()
            log(args.out, "prior", f"step {run.step} loss {loss.item():.4f} cos {cos:.3f} {time.time() - run.start:.0f}s")
    run.finish(B)


def role_decoder(args, cfg, fast):
    torch, dev = setup(args)
    import torch.nn.functional as F
    from .train import build_decoder, load_clip
    imgs = torch.from_numpy(load_chunks(args.out, "data", ["imgs"])["imgs"]).to(dev)
    wait_for(args.out, "clip.done", args.deadline)
    model = build_decoder(cfg)
    model.sketch.load_from_clip(load_clip(args.out, cfg, phase2=False))
    before = resume_weights(args, "decoder", model)
    model = model.to(dev)
    wait_for(args.out, "embed.done", args.deadline)
    embs = torch.load(os.path.join(args.out, "data_img_embeds.pt")).to(dev)
    run = Run(torch, args.out, "decoder", model, fast["dec_lr"], args.deadline, fast, warmup=200, resumed_from=before)
    sched = device_schedule("decoder", dev)
    N, B = len(embs), fast["dec_batch"]
    ema_loss = None
    while run.running():
        idx = torch.randint(0, N, (B,), device=dev)
        x0, c = F.avg_pool2d(images(torch, imgs[idx]), 2), embs[idx]
        # robustness to prior samples and variation noise: perturb half of the embeddings a little
        z = torch.randn_like(c) / math.sqrt(c.shape[1])
        sig = torch.rand(B, 1, device=dev) * 0.15 * (torch.rand(B, 1, device=dev) < 0.5)
        c = F.normalize(c + sig * z, dim=-1)
        c = c * (torch.rand(B, 1, device=dev) >= 0.1)  # conditioning dropout (zeros = unconditional)
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (B,), device=dev)
        pred = model(sched.add_noise(x0, noise, t), t, c)
        loss = F.mse_loss(pred, sched.target(x0, noise, t))
        run.update(loss)
        if run.step % 500 == 0:
            ema_loss = loss.item() if ema_loss is None else 0.9 * ema_loss + 0.1 * loss.item()
            log(args.out, "decoder", f"step {run.step} loss {ema_loss:.4f} {time.time() - run.start:.0f}s")
    run.finish(B)


def role_up(args, cfg, fast, which):
    torch, dev = setup(args)
    import torch.nn.functional as F
    from .train import DEC_SIZE, UP1_FACTOR, UP2_FACTOR, build_up
    cache = torch.from_numpy(load_chunks(args.out, "up")).to(dev)
    hi, factor = (DEC_SIZE * UP1_FACTOR, UP1_FACTOR) if which == "up1" else (DEC_SIZE * UP1_FACTOR * UP2_FACTOR, UP2_FACTOR)
    model = build_up(cfg, which)
    before = resume_weights(args, which, model)
    model = model.to(dev)
    run = Run(torch, args.out, which, model, fast[which + "_lr"], args.deadline, fast, warmup=100, resumed_from=before)
    sched = device_schedule(which, dev)
    B, crop = fast[which + "_batch"], cfg["crop"]
    ar = torch.arange(crop, device=dev)
    rows_b = torch.arange(B, device=dev)[:, None, None, None]
    chans = torch.arange(3, device=dev)[None, :, None, None]
    ema_loss = None
    while run.running():
        x = images(torch, cache[torch.randint(0, len(cache), (B,), device=dev)])
        if hi != x.shape[2]:
            x = F.avg_pool2d(x, x.shape[2] // hi)
        x = torch.rot90(x, random.randrange(4), (2, 3))
        if random.random() < 0.5:
            x = x.flip(3)
        lo = F.avg_pool2d(x, factor)
        lo = lo + torch.randn_like(lo) * (torch.rand(B, 1, 1, 1, device=dev) * 0.03)
        lo_up = F.interpolate(lo, scale_factor=factor, mode="bilinear", align_corners=False)
        ys = torch.randint(0, hi - crop + 1, (B,), device=dev)[:, None] + ar
        xs = torch.randint(0, hi - crop + 1, (B,), device=dev)[:, None] + ar
        pick = (rows_b, chans, ys[:, None, :, None], xs[:, None, None, :])
        x0, low = x[pick], lo_up[pick]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (B,), device=dev)
        pred = model(sched.add_noise(x0, noise, t), t, None, low)
        loss = F.mse_loss(pred, sched.target(x0, noise, t))
        run.update(loss)
        if run.step % 500 == 0:
            ema_loss = loss.item() if ema_loss is None else 0.9 * ema_loss + 0.1 * loss.item()
            log(args.out, which, f"step {run.step} loss {ema_loss:.4f} {time.time() - run.start:.0f}s")
    run.finish(B)


# ------------------------------------------------------------------ orchestration, packing

def config(args):
    from .train import CONFIGS, override
    fast = dict(FAST_TINY if args.tiny else FAST)
    cfg = dict(CONFIGS["tiny" if args.tiny else "default"])
    for k in ("n_data", "text_width", "text_layers", "prior_width", "prior_depth", "up_cache"):
        if not args.tiny or k in ("n_data", "up_cache"):
            cfg[k] = fast[k]
    cfg["prior_captions"] = fast["captions"]
    for kv in args.set:
        override(fast if kv.split("=", 1)[0] in fast else cfg, kv)
    return cfg, fast


def device_name(device):
    """What trained the run, for the model card: the GPU's name, or the device string."""
    import torch
    return torch.cuda.get_device_name() if device.startswith("cuda") and torch.cuda.is_available() else device


def pack(run, dest):
    """The weights as .npz (no pickle, any numpy reads them), configs, markers and log: a tar split in 15 MiB parts."""
    import torch
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for p in sorted(glob.glob(os.path.join(run, "*.json")) + glob.glob(os.path.join(run, "*.done"))
                        + [os.path.join(run, "train.log")]):
            if os.path.exists(p):
                tar.add(p, arcname=os.path.basename(p))
        for p in sorted(glob.glob(os.path.join(run, "*.pt"))):
            name = os.path.basename(p)[:-3]
            if name.startswith("data_"):
                continue
            ck = torch.load(p, map_location="cpu")
            weights = ck.get("ema", ck["model"])
            arrays = {k: v.numpy() for k, v in weights.items()}
            arrays["__step__"] = np.array(ck["step"])
            b = io.BytesIO()
            np.savez(b, **arrays)
            info = tarfile.TarInfo(name + ".npz")
            info.size = b.tell()
            b.seek(0)
            tar.addfile(info, b)
    data = buf.getvalue()
    os.makedirs(dest, exist_ok=True)
    part = 15 * 1024 * 1024
    for i in range(0, len(data), part):
        with open(os.path.join(dest, f"run.tgz.{i // part:02d}"), "wb") as f:
            f.write(data[i:i + part])
    return len(data)


def unpack(src, out):
    """A packed run -> a run folder in train.py's format (model = ema = the packed weights)."""
    import torch
    os.makedirs(out, exist_ok=True)
    data = b"".join(open(p, "rb").read() for p in sorted(glob.glob(os.path.join(src, "run.tgz.*"))))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            blob = tar.extractfile(m).read()
            if m.name.endswith(".npz"):
                z = np.load(io.BytesIO(blob))
                weights = {k: torch.from_numpy(z[k].copy()) for k in z.files if k != "__step__"}
                ck = {"model": weights, "ema": weights, "step": int(z["__step__"])}
                torch.save(ck, os.path.join(out, m.name[:-4] + ".pt"))
            else:
                with open(os.path.join(out, m.name), "wb") as f:
                    f.write(blob)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="training/runs/fast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seconds", type=float, default=520, help="wall time for everything, data included")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--threads", type=int, default=1, help="torch threads per stage process on cpu")
    ap.add_argument("--pack", default=None, help="write the packed run here when done")
    ap.add_argument("--unpack", default=None, help="a folder of run.tgz.* parts: unpack into --out and stop")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--roles", default="up1,up2,clip,decoder,prior", help="the stages to train")
    ap.add_argument("--resume", default=None, help="a run folder: its CLIP (when clip is not trained) and the "
                    "weights each trained stage starts from")
    ap.add_argument("--role", default=None)
    ap.add_argument("--t0", type=float, default=0)
    ap.add_argument("--deadline", type=float, default=0)
    args = ap.parse_args()
    if args.unpack:
        unpack(args.unpack, args.out)
        return
    cfg, fast = config(args)
    if "text_distill" in args.roles.split(",") and not args.resume:
        raise SystemExit("--roles text_distill needs --resume RUN: RUN's text tower is the teacher, its prior the judge")
    if args.role:
        roles = {"clip": role_clip, "clip_text": role_clip_text, "text_distill": role_text_distill, "embed": role_embed, "prior": role_prior, "decoder": role_decoder,
                 "up1": lambda a, c, f: role_up(a, c, f, "up1"), "up2": lambda a, c, f: role_up(a, c, f, "up2")}
        roles[args.role](args, cfg, fast)
        return
    start = time.time()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump({"seed": args.seed, "tiny": args.tiny, **cfg}, f, indent=1)
    with open(os.path.join(args.out, "fast.json"), "w") as f:
        json.dump(fast, f, indent=1)
    seconds = prepare(args, fast, args.workers)
    if args.resume:  # the resumed CLIP's vocabulary table, not this run's
        import shutil
        shutil.copy(os.path.join(args.resume, "vocab_ids.json"), os.path.join(args.out, "vocab_ids.json"))
    log(args.out, "data", f"{fast['n_data']} scenes x {fast['captions']} captions, {fast['up_cache']} at 256 px: {seconds:.0f}s")
    with open(os.path.join(args.out, "data.done"), "w") as f:
        json.dump({"n": fast["n_data"], "captions": fast["captions"], "up_cache": fast["up_cache"], "seconds": seconds,
                   "workers": args.workers}, f)
    t0 = time.time()
    deadline = start + args.seconds
    procs = {}
    roles = args.roles.split(",")
    if "clip" not in roles:  # reuse the resumed run's CLIP (its text phase too, unless that is trained again)
        import shutil
        text_trained = "clip_text" in roles or "text_distill" in roles
        names = ("clip.pt", "clip.done") + (("clip_text.pt", "clip_text.done") if not text_trained else ())
        for name in names:
            if os.path.exists(os.path.join(args.resume, name)):
                shutil.copy(os.path.join(args.resume, name), os.path.join(args.out, name))
        roles.append("embed")
    for role in roles:
        cmd = [sys.executable, "-m", "training.fast", "--out", args.out, "--seed", str(args.seed), "--device", args.device,
               "--threads", str(args.threads), "--role", role, "--t0", str(t0), "--deadline", str(deadline)]
        cmd += ["--tiny"] if args.tiny else []
        cmd += ["--resume", os.path.abspath(args.resume)] if args.resume else []
        for kv in args.set:
            cmd += ["--set", kv]
        procs[role] = subprocess.Popen(cmd, cwd=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    codes = {}
    for role, p in procs.items():
        try:
            codes[role] = p.wait(timeout=max(1, deadline + 90 - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            codes[role] = "killed"
    log(args.out, "fast", f"exit codes {codes}; total {time.time() - start:.0f}s")
    with open(os.path.join(args.out, "fast.json"), "w") as f:
        json.dump({**fast, "total_seconds": round(time.time() - start), "exit_codes": codes, "device": device_name(args.device)}, f, indent=1)
    if args.pack:
        n = pack(args.out, args.pack)
        log(args.out, "fast", f"packed {n / 1e6:.1f} MB into {args.pack}")
    if any(code != 0 for code in codes.values()):
        raise SystemExit(f"stages failed: {codes}")


if __name__ == "__main__":
    main()
