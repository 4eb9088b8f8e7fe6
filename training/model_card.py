"""Write models/imagine-shapes/MODEL_CARD.md from a training run (stage .done files, export info) and an
evaluation JSON.   /usr/bin/python3 -m training.model_card --run training/runs/default --eval eval.json
"""
import argparse
import json
import os

from . import world as W

STAGE_NAMES = {"data": "dataset cache (60k scenes)", "up_data": "upsampler target cache (6k scenes at 256 px)",
               "text_embed": "cache text encodings (4 captions per scene)", "clip": "CLIP, phase 1 (joint, contrastive + attribute heads)",
               "embed": "cache image embeddings", "clip_text": "CLIP, phase 2 (locked-image text tuning)",
               "prior": "prior", "decoder": "decoder (32 px)", "up1": "upsampler 1 (32 -> 128)",
               "up2": "upsampler 2 (128 -> 256)"}


def fmt_s(s):
    return f"{s / 60:.1f} min" if s is not None else "-"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="training/runs/default")
    ap.add_argument("--model", default="models/imagine-shapes")
    ap.add_argument("--eval", default=None)
    ap.add_argument("--notes", default=None, help="a markdown file appended as the closing note")
    args = ap.parse_args()
    cfg = json.load(open(os.path.join(args.run, "config.json")))
    man = json.load(open(os.path.join(args.model, "manifest.json")))
    info = json.load(open(os.path.join(args.run, "export_info.json")))
    ev = json.load(open(args.eval)) if args.eval and os.path.exists(args.eval) else None
    L = []
    L.append("# imagine-shapes — model card\n")
    L.append("A small unCLIP model (CLIP → diffusion prior → diffusion decoder → two diffusion upsamplers) trained "
             "from scratch on the procedural world in `training/world.py`. It exists so that Imagine works "
             "offline and every stage of the pipeline is exercised for real. It draws nothing but this world.\n")
    L.append("## The world\n")
    L.append(f"- shapes: {', '.join(W.SHAPES)}")
    L.append(f"- colours (CSS named values, ±10 jitter per channel): {', '.join(W.COLOR_NAMES)}")
    L.append("- counts 1–4; sizes small (0.26 of the side) and big (0.42); positions left, right, top, bottom, "
             "center; relations left of, right of, above, below between two groups")
    L.append(f"- backgrounds: the 12 solid colours and the scenes {', '.join(W.SCENES)}")
    L.append("- captions: varied templates, word orders and synonyms (crimson/scarlet, large/huge/tiny, "
             "backdrop, donut/hoop, plus sign, ...), and emoji standing for objects "
             f"({' '.join(list(W.EMOJI.values())[:12])} ...), alone or mixed with words")
    L.append(f"- held out of training (evaluation only): the (colour, shape) pairs "
             f"{', '.join(f'{c} {s}' for c, s in sorted(W.HELDOUT_PAIRS))} never appear in a training image or caption; "
             "the caption templates of `caption(split=\"eval\")` (\"a picture of …\", \"an image showing …\", "
             "\"a scene with …\", \"At the left: …\", \"over a plain … background\", \"background colour …\") are never "
             "used for training captions.\n")
    L.append("## Architecture\n")
    p = info["params"]
    sz = info["sizes_bytes"]
    L.append("| stage | network | parameters | ONNX size |")
    L.append("|---|---|---|---|")
    L.append(f"| text encoder | causal transformer, width {cfg['text_width']}, {cfg['text_layers']} layers, CLIP BPE ids remapped "
             f"in-graph to the world's vocabulary (unknown ids → UNK); pooled at the end token, projected to "
             f"{cfg['embed_dim']}-d, L2-normalised | {p['text_encoder']:,} | {sz['text_encoder'] / 1e6:.2f} MB |")
    L.append(f"| image encoder | CNN on 64 px input (average-pooled to 32), 4×4 feature map flattened → "
             f"{cfg['embed_dim']}-d, L2-normalised | {p['image_encoder']:,} | {sz['image_encoder'] / 1e6:.2f} MB |")
    L.append(f"| prior | residual MLP ({cfg['prior_depth']} blocks, width {cfg['prior_width']}) on the noisy image embedding, "
             f"timestep, text embedding and attention-pooled text tokens; predicts the clean embedding (x0), "
             f"embedding space scaled by √{cfg['embed_dim']} | {p['prior']:,} | {sz['prior'] / 1e6:.2f} MB |")
    L.append(f"| decoder | UNet {tuple(cfg['dec_ch'])} channels at 32 px, FiLM on the image embedding; concatenated at the "
             f"input: a learned 8×8 map projected from the embedding{' and the CLIP layout sketch (the frozen 8×8 colour/shape head of CLIP applied to the embedding inside the graph)' if cfg.get('dec_sketch') else ''}; "
             f"middle self-attention; v-prediction | {p['decoder']:,} | "
             f"{sz['decoder'] / 1e6:.2f} MB |")
    L.append(f"| upsampler 1 | UNet {tuple(cfg['up1_ch'])} channels, 32 → 128 (×4), conditioned on the bilinearly upsampled "
             f"low-res image; v-prediction | {p['up1']:,} | {sz['upsampler_1'] / 1e6:.2f} MB |")
    L.append(f"| upsampler 2 | UNet {tuple(cfg['up2_ch'])} channels, 128 → 256 (×2); v-prediction | {p['up2']:,} | "
             f"{sz['upsampler_2'] / 1e6:.2f} MB |")
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(args.model) for f in fs)
    L.append(f"\nAll files together: {total / 1e6:.1f} MB (ONNX opset 17). Schedules: cosine (squaredcos_cap_v2), 1000 "
             "training steps, DDIM with trailing timestep spacing at inference. Classifier-free guidance: the prior's "
             "unconditional input is the text encoding of \"\" (10% dropout in training); the decoder's is an all-zero "
             "image embedding (10% dropout). The grid shows decoder output through upsampler 1 (128 px); U runs "
             "upsampler 2 (256 px).\n")
    L.append("CLIP training: symmetric InfoNCE between the two towers, plus auxiliary losses that make the joint space "
             "carry the world's attributes: a shared attribute head (background, per-group shape/colour/count/size, "
             "position, relation) applied to both image and text embeddings (text targets only for what the caption "
             "mentions), and an 8×8 colour/shape layout head on the image embedding. Phase 2 freezes the image tower "
             "(whose embeddings the decoder is trained on) and keeps training the text tower against them (LiT).\n")
    fast_path = os.path.join(args.run, "fast.json")
    fast = json.load(open(fast_path)) if os.path.exists(fast_path) else None
    names = dict(STAGE_NAMES)
    if fast:
        L.append(f"## Training (`training.fast` on {fast.get('device', 'a GPU')}, all stages at once, seed {cfg.get('seed', 0)})\n")
        data = os.path.join(args.run, "data.done")
        workers = json.load(open(data)).get("workers") if os.path.exists(data) else None
        names["data"] = (f"data: {fast['n_data']:,} scenes × {fast['captions']} captions at 64 px, "
                         f"{fast['up_cache']:,} at 256 px" + (f" ({workers} worker processes)" if workers else ""))
        batch = {"clip": fast["clip_batch"], "clip_text": fast["cliptext_batch"], "prior": fast["prior_batch"],
                 "decoder": fast["dec_batch"], "up1": fast["up1_batch"], "up2": fast["up2_batch"]}
    else:
        L.append(f"## Training (2 CPU cores, Debian python3-torch 1.13, seed {cfg.get('seed', 0)})\n")
        batch = {"clip": cfg["clip_batch"], "clip_text": cfg.get("cliptext_batch"), "prior": cfg["prior_batch"],
                 "decoder": cfg["dec_batch"], "up1": cfg["up1_batch"], "up2": cfg["up2_batch"]}
    L.append("| stage | steps | batch | wall time |")
    L.append("|---|---|---|---|")
    tot = 0.0
    for st in ["data", "up_data", "clip", "embed", "clip_text", "text_embed", "prior", "decoder", "up1", "up2"]:
        f = os.path.join(args.run, st + ".done")
        if not os.path.exists(f):
            continue
        d = json.load(open(f))
        s = d.get("seconds", d.get("wall_seconds_this_run"))
        tot += s or 0
        L.append(f"| {names[st]} | {d.get('steps', '-')} | {batch.get(st, '-')} | {fmt_s(s)} |")
    if fast:
        L.append("\nThe stages after the data ran at the same time as five processes sharing the GPU: the upsamplers for "
                 "the whole run, CLIP first, then the decoder (from the end of joint CLIP) and the prior (from the end "
                 "of the text phase), each ended by one wall-clock deadline, so the times overlap"
                 + (f"; the whole run took {fast['total_seconds'] / 60:.1f} min." if "total_seconds" in fast else "."))
        c = fast.get("continuation")
        if c:
            L.append(f"It was then continued ({', '.join(c['roles'])}) for {c['total_seconds'] / 60:.1f} min on "
                     f"{c['n_data']:,} fresh scenes (`--roles {','.join(c['roles'])} --resume`; decoder and prior "
                     f"learning rate {c['dec_lr']:g}); the steps above are the totals and the times the sums.")
        f = fast.get("cpu_fine_tune")
        if f:
            L.append(f"Last, {' and '.join(f['roles'])} alone on 2 CPU cores for {f['seconds'] / 60:.0f} min: {f['steps']:,} "
                     f"steps at batch {f['batch']} (learning rate {f['prior_lr']:g}), counted in the steps above but "
                     "not in the times.")
        L.append("Rebuild: see training/README.md.\n")
    else:
        L.append(f"\nTotal: {tot / 60:.0f} min of wall time (stages ran two at a time, each on one thread, on a "
                 "machine shared with other builds and tests, so wall time overstates the compute). Rebuild: see training/README.md.\n")
    if ev:
        L.append("## Evaluation\n")
        L.append(f"`/usr/bin/python3 -m training.evaluate --run {args.run}` — GenEval-style, held-out prompts "
                 f"({ev.get('n_prompts')} prompts, {ev.get('n_prompts', 0) // 7} per category), images generated at the "
                 "manifest's defaults and judged at the grid-tile resolution by an independent pixel checker "
                 "(nearest CSS colour per pixel, connected components, centroids, shape by nearest neighbours on "
                 "a geometric descriptor). The checker scores the ground-truth renders of the same prompts at "
                 f"{ev.get('checker_on_ground_truth', {}).get('overall')}.\n")
        L.append("| category | score | target |")
        L.append("|---|---|---|")
        for c, v in ev["categories"].items():
            L.append(f"| {c} | {v:.3f} | ≥ 0.75 |")
        L.append(f"| **overall (GenEval six)** | **{ev['overall']:.3f}** | ≥ 0.90 |")
        L.append(f"| overall incl. emoji | {ev['overall_with_emoji']:.3f} | |")
        if "variation" in ev:
            v = ev["variation"]
            L.append(f"\nVariations (subtle, embedding noise {v['embeddingNoise']}, η {v['eta']}): keep the judged "
                     f"attributes {v['keeps_attributes']:.2f} of the time (target ≥ 0.90), differ from the source "
                     f"{v['differs_from_source']:.2f} of the time ({v['n']} pairs).")
        if "upsampler" in ev:
            for k, u in ev["upsampler"].items():
                L.append(f"\n{k} (×{u['factor']}) on true low-res renders: PSNR {u['psnr_model']} dB vs bicubic "
                         f"{u['psnr_bicubic']} dB, gain {u['gain_db']} dB (target ≥ 2 dB).")
        L.append(f"\nSettings: `{json.dumps(ev.get('settings', {}))}`\n")
    if args.notes and os.path.exists(args.notes):
        L.append(open(args.notes).read())
    with open(os.path.join(args.model, "MODEL_CARD.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    print("wrote", os.path.join(args.model, "MODEL_CARD.md"))


if __name__ == "__main__":
    main()
