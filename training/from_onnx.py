"""Rebuild a run folder (torch checkpoints) from a shipped model package, so that the model can be evaluated or
fine-tuned without the original run, which is not committed.

  /usr/bin/python3 -m training.from_onnx --model models/imagine-shapes --out training/runs/shipped

How: each network is built with the run's configuration, filled with seeded random weights and exported with
training.export's own code. Every initializer of that export is then matched to the parameter it came from (same
values, as they are, reshaped or transposed, since the exporter turns some Linear weights into MatMul constants), and the
shipped initializer of the same name is copied into that parameter. Exports made by the same torch version name
their initializers identically; anything left unmatched is an error, not a silent random weight.
"""
import argparse
import json
import os
import tempfile

import numpy as np
import onnx
import torch
from onnx import numpy_helper

# the architecture keys of a run trained by training.fast (the shipped model); others are CONFIGS["default"]
FAST_ARCHITECTURE = ("text_width", "text_layers", "prior_width", "prior_depth")


def config(fast=True, path=None):
    """The run's configuration: its config.json where there is one, else training.fast's (or the CPU recipe's)."""
    from .fast import FAST
    from .train import CONFIGS
    if path:
        cfg = json.load(open(path))
        return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    cfg = dict(CONFIGS["default"])
    if fast:
        for k in FAST_ARCHITECTURE:
            cfg[k] = FAST[k]
    return cfg


def initializers(path):
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}


def used_ids(model_dir):
    """The text encoder's vocabulary: the ids its int64 remap table sends to a row other than UNK."""
    for name, a in initializers(os.path.join(model_dir, "text_encoder", "model.onnx")).items():
        if a.dtype == np.int64 and a.shape == (49408,):
            return [int(i) for i in np.nonzero(a)[0]]
    raise SystemExit("no vocabulary remap table in the text encoder")


def load_into(module, export, shipped_path):
    """Copy the shipped ONNX initializers into module's parameters and buffers; export(module, path) writes an ONNX
    file with the same code that wrote the shipped one."""
    gen = torch.Generator().manual_seed(0)
    tensors = dict(module.state_dict(keep_vars=False))
    with torch.no_grad():
        for name, t in tensors.items():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen))
    with tempfile.TemporaryDirectory() as tmp:
        probe = initializers(export(module, os.path.join(tmp, "m", "model.onnx")))
    shipped = initializers(shipped_path)
    matched = set()
    with torch.no_grad():
        for init_name, value in probe.items():
            if init_name not in shipped:
                raise SystemExit(f"{shipped_path}: no initializer {init_name}; exported by another torch version?")
            for name, t in tensors.items():
                if name in matched or not t.is_floating_point() or t.numel() != value.size:
                    continue
                a = t.numpy()
                if np.array_equal(a.reshape(-1), value.reshape(-1)):  # as is, or unsqueezed (GroupNorm's affine)
                    t.copy_(torch.from_numpy(shipped[init_name].reshape(a.shape).copy()))
                elif a.ndim == 2 and a.T.shape == value.shape and np.array_equal(a.T, value):
                    t.copy_(torch.from_numpy(shipped[init_name].T.copy()))
                else:
                    continue
                matched.add(name)
                break
    missing = [n for n, t in tensors.items() if t.is_floating_point() and n not in matched]
    if missing:
        raise SystemExit(f"{shipped_path}: parameters with no initializer: {missing[:8]}")
    return len(matched)


def rebuild(model_dir, out, fast=True, config_path=None):
    from . import export as X
    from .train import build_decoder, build_prior, build_up
    from .nets import CLIP
    from . import world as W
    cfg = config(fast, config_path)
    os.makedirs(out, exist_ok=True)
    ids = used_ids(model_dir)
    with open(os.path.join(out, "vocab_ids.json"), "w") as f:
        json.dump(ids, f)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"seed": 0, "tiny": False, **cfg, "rebuilt_from": os.path.abspath(model_dir)}, f, indent=1)
    E, B = cfg["embed_dim"], 2
    t = torch.tensor([999, 500])
    token_ids = torch.zeros(B, 77, dtype=torch.long)
    token_ids[:, :3] = torch.tensor([49406, 320, 49407])
    img_dyn = {0: "batch", 2: "height", 3: "width"}

    def exporter(wrap, args, names_in, names_out, dyn):
        def run(module, path):
            X._export(wrap(module), args, path, names_in, names_out, dyn)
            return path
        return run

    clip = CLIP(ids, E, cfg["text_width"], cfg["text_layers"], 4, cfg["img_ch"], W.ATTR_HEADS).eval()
    counts = {}
    counts["text_encoder"] = load_into(clip.text, exporter(
        lambda m: X.TextWrap(type("C", (), {"text": m})()), (token_ids,), ["input_ids"],
        ["text_embeds", "last_hidden_state"], {"input_ids": {0: "batch"}}), os.path.join(model_dir, "text_encoder", "model.onnx"))
    counts["image_encoder"] = load_into(clip.image, exporter(
        lambda m: m, (torch.zeros(B, 3, 64, 64),), ["pixel_values"], ["image_embeds"], {"pixel_values": {0: "batch"}}),
        os.path.join(model_dir, "image_encoder", "model.onnx"))
    # CLIP's attribute and layout heads are training-only: they are not in the package (the decoder's Sketch keeps
    # its own frozen copy of the layout head)
    # clip.pt too: the text phase freezes the image tower, so the package's image encoder is the joint phase's
    # (what training.fast --resume embeds images with); only the phase-2 text tower survives in the package
    for stage in ("clip", "clip_text"):
        torch.save({"model": clip.state_dict(), "step": 0}, os.path.join(out, stage + ".pt"))
        with open(os.path.join(out, stage + ".done"), "w") as f:  # what training.fast --resume waits for
            json.dump({"rebuilt_from": os.path.abspath(model_dir)}, f)
    prior = build_prior(cfg).eval()
    counts["prior"] = load_into(prior, exporter(
        lambda m: m, (torch.randn(B, E), t, torch.randn(B, E), torch.randn(B, 77, cfg["text_width"])),
        ["sample", "timestep", "text_embeds", "text_hidden"], ["predicted"], {"sample": {0: "batch"}}),
        os.path.join(model_dir, "prior", "model.onnx"))
    decoder = build_decoder(cfg).eval()
    counts["decoder"] = load_into(decoder, exporter(
        X.DecWrap, (torch.randn(B, 3, 32, 32), t, torch.randn(B, E)), ["sample", "timestep", "image_embeds"],
        ["noise_pred"], {"sample": img_dyn}), os.path.join(model_dir, "decoder", "model.onnx"))
    models = {"prior": prior, "decoder": decoder}
    for key, name in (("up1", "upsampler_1"), ("up2", "upsampler_2")):
        up = build_up(cfg, key).eval()
        counts[name] = load_into(up, exporter(
            X.UpWrap, (torch.randn(B, 3, 64, 64), t, torch.randn(B, 3, 64, 64)), ["sample", "timestep", "low_res"],
            ["noise_pred"], {"sample": img_dyn}), os.path.join(model_dir, name, "model.onnx"))
        models[key] = up
    for key, m in models.items():
        sd = m.state_dict()
        torch.save({"model": sd, "ema": sd, "step": 0}, os.path.join(out, key + ".pt"))
    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    defaults = {"prior_steps": manifest["prior"]["steps"], "prior_guidance": manifest["prior"]["guidance"],
                "decoder_steps": manifest["decoder"]["steps"], "decoder_guidance": manifest["decoder"]["guidance"],
                "up1_steps": manifest["upsamplers"][0]["steps"], "up2_steps": manifest["upsamplers"][1]["steps"]}
    for k in ("prior_samples",):
        if k in manifest["prior"]:
            defaults[k] = manifest["prior"][k]
    with open(os.path.join(out, "defaults.json"), "w") as f:
        json.dump(defaults, f, indent=1)
    return counts


def compare(rebuilt, original):
    """The largest difference between the rebuilt checkpoints and the run that was exported (its EMA weights,
    which the export writes), per stage."""
    out = {}
    for name in ("clip_text", "prior", "decoder", "up1", "up2"):
        path = os.path.join(original, name + ".pt")
        if name == "clip_text" and not os.path.exists(path):
            path = os.path.join(original, "clip.pt")
        ck = torch.load(path)
        want = ck.get("ema", ck["model"])
        got = torch.load(os.path.join(rebuilt, name + ".pt"))["model"]
        keys = [k for k in got if not (name == "clip_text" and k.split(".")[0] in ("attr", "map", "logit_scale"))]
        out[name] = max(float((got[k].float() - want[k].float()).abs().max()) for k in keys)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/imagine-shapes")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu-recipe", action="store_true", help="the package was trained by training.train's default "
                    "configuration, not training.fast's")
    ap.add_argument("--config", default=None, help="the run's config.json, where it is known")
    ap.add_argument("--check", default=None, help="the run that was exported: fail unless the rebuilt weights equal it")
    args = ap.parse_args()
    torch.set_num_threads(2)
    print(json.dumps(rebuild(args.model, args.out, fast=not args.cpu_recipe, config_path=args.config)))
    if args.check:
        diff = compare(args.out, args.check)
        print(json.dumps({"largest_difference": diff}))
        if max(diff.values()) > 0:
            raise SystemExit("the rebuilt weights differ from the run's")


if __name__ == "__main__":
    main()
