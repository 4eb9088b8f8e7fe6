"""Export the trained stages to ONNX (opset 17) + manifest + scheduler configs + tokenizer + model card.

  /usr/bin/python3 -m training.export --out training/runs/default --dest models/imagine-shapes
"""
import argparse
import glob
import json
import math
import os
import shutil

import numpy as np
import onnx
import torch
import torch.nn as nn

from . import world as W
from .diffusion import scheduler_config
from .nets import count_params

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_TOKENIZER = os.path.join(HERE, "..", "models", "imagine-shapes", "tokenizer")
OPSET = 17

# engine defaults written into the manifest (tuned with training/evaluate.py --sweep)
DEFAULTS = {"prior_steps": 25, "prior_guidance": 4.0, "decoder_steps": 25, "decoder_guidance": 3.0,
            "up1_steps": 10, "up2_steps": 8}


class TextWrap(nn.Module):
    def __init__(self, text):
        super().__init__()
        self.t = text

    def forward(self, input_ids):
        return self.t(input_ids)


class DecWrap(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, sample, timestep, image_embeds):
        return self.m(sample, timestep, image_embeds)


class UpWrap(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, sample, timestep, low_res):
        return self.m(sample, timestep, None, low_res)


def _export(model, args, path, in_names, out_names, dyn):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, args, path, input_names=in_names, output_names=out_names, dynamic_axes=dyn,
                          opset_version=OPSET, do_constant_folding=True)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return os.path.getsize(path)


def load_models(out, cfg):
    from .train import build_decoder, build_prior, build_up, load_clip
    models = {"clip": load_clip(out, cfg)}
    for name, build in (("prior", lambda: build_prior(cfg)), ("decoder", lambda: build_decoder(cfg)),
                        ("up1", lambda: build_up(cfg, "up1")), ("up2", lambda: build_up(cfg, "up2"))):
        p = os.path.join(out, name + ".pt")
        if os.path.exists(p):
            m = build()
            ck = torch.load(p)
            m.load_state_dict(ck.get("ema", ck["model"]))
            models[name] = m.eval()
            models[name + "_step"] = ck["step"]
    return models


# the run's checkpoint of each diffusion network -> its folder in the package
STAGE_FOLDERS = {"prior": "prior", "decoder": "decoder", "up1": "upsampler_1", "up2": "upsampler_2"}


def onnx_specs(cfg):
    """How each file of the package is exported: folder -> (wrap(module) -> exported module, example inputs,
    input names, output names, dynamic axes). training.from_onnx exports with the same specs to map the
    package's initializers back to parameters."""
    from .train import DEC_SIZE
    E, B = cfg["embed_dim"], 2
    ids = torch.zeros(B, 77, dtype=torch.long)
    ids[:, 0] = 49406
    ids[:, 1] = 320
    ids[:, 2] = 49407
    t = torch.tensor([999, 500])
    img_dyn = {0: "batch", 2: "height", 3: "width"}
    image_io = lambda low: ["sample", "timestep", low]
    specs = {
        "text_encoder": (TextWrap, (ids,), ["input_ids"], ["text_embeds", "last_hidden_state"],
                         {"input_ids": {0: "batch"}, "text_embeds": {0: "batch"}, "last_hidden_state": {0: "batch"}}),
        "image_encoder": (lambda m: m, (torch.zeros(B, 3, 64, 64),), ["pixel_values"], ["image_embeds"],
                          {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}}),
        "prior": (lambda m: m, (torch.randn(B, E), t, torch.randn(B, E), torch.randn(B, 77, cfg["text_width"])),
                  ["sample", "timestep", "text_embeds", "text_hidden"], ["predicted"],
                  {k: {0: "batch"} for k in ["sample", "timestep", "text_embeds", "text_hidden", "predicted"]}),
        "decoder": (DecWrap, (torch.randn(B, 3, DEC_SIZE, DEC_SIZE), t, torch.randn(B, E)), image_io("image_embeds"),
                    ["noise_pred"], {"sample": img_dyn, "timestep": {0: "batch"}, "image_embeds": {0: "batch"}, "noise_pred": img_dyn}),
    }
    for name in ("upsampler_1", "upsampler_2"):
        specs[name] = (UpWrap, (torch.randn(B, 3, 64, 64), t, torch.randn(B, 3, 64, 64)), image_io("low_res"), ["noise_pred"],
                       {"sample": img_dyn, "timestep": {0: "batch"}, "low_res": img_dyn, "noise_pred": img_dyn})
    return specs


def export_file(module, spec, path):
    """Exports one file of the package by its spec (onnx_specs); returns its size in bytes."""
    wrap, args, in_names, out_names, dyn = spec
    return _export(wrap(module), args, path, in_names, out_names, dyn)


def export_all(out, cfg, dest):
    from .train import SCHED, DEC_SIZE, UP1_FACTOR, UP2_FACTOR
    models = load_models(out, cfg)
    clip = models["clip"]
    E = cfg["embed_dim"]
    os.makedirs(dest, exist_ok=True)
    modules = {"text_encoder": clip.text, "image_encoder": clip.image,
               **{name: models[key] for key, name in STAGE_FOLDERS.items()}}
    sizes = {name: export_file(modules[name], spec, os.path.join(dest, name, "model.onnx"))
             for name, spec in onnx_specs(cfg).items()}
    for k, name in STAGE_FOLDERS.items():
        with open(os.path.join(dest, name, "scheduler_config.json"), "w") as f:
            json.dump(SCHED[k], f, indent=2)
    tokdir = os.path.join(dest, "tokenizer")
    os.makedirs(tokdir, exist_ok=True)
    for fn in ("bpe_simple_vocab_16e6.txt.gz", "LICENSE"):
        src = os.path.join(SHARED_TOKENIZER, fn)
        if not os.path.exists(src):
            src = os.path.join("/work/shared/data/clip-bpe", fn)
        if os.path.abspath(src) != os.path.abspath(os.path.join(tokdir, fn)):
            shutil.copyfile(src, os.path.join(tokdir, fn))
    d = dict(DEFAULTS)
    tuned = os.path.join(out, "defaults.json")
    if os.path.exists(tuned):
        d.update(json.load(open(tuned)))
    manifest = {
        "format": "imagine-unclip", "formatVersion": 1, "name": "imagine-shapes",
        "description": "A small unCLIP model trained from scratch on a procedural world of coloured shapes "
                       "(8 shapes, 12 colours, counts 1-4, positions, relations, backgrounds, emoji). See MODEL_CARD.md.",
        "embeddingDim": E, "contextLength": 77,
        "tokenizer": {"merges": "tokenizer/bpe_simple_vocab_16e6.txt.gz"},
        "textEncoder": {"path": "text_encoder/model.onnx"},
        "imageEncoder": {"path": "image_encoder/model.onnx", "size": 64},
        "prior": {"path": "prior/model.onnx", "scheduler": "prior/scheduler_config.json", "steps": d["prior_steps"],
                  "guidance": d["prior_guidance"], "embeddingScale": math.sqrt(E)},
        "decoder": {"path": "decoder/model.onnx", "scheduler": "decoder/scheduler_config.json", "size": DEC_SIZE,
                    "multipleOf": 8, "steps": d["decoder_steps"], "guidance": d["decoder_guidance"]},
        "upsamplers": [
            {"path": "upsampler_1/model.onnx", "scheduler": "upsampler_1/scheduler_config.json", "factor": UP1_FACTOR,
             "steps": d["up1_steps"]},
            {"path": "upsampler_2/model.onnx", "scheduler": "upsampler_2/scheduler_config.json", "factor": UP2_FACTOR,
             "steps": d["up2_steps"]},
        ],
        "gridStages": 1,
        "variation": {"subtle": {"embeddingNoise": 0.1, "eta": 0.0}, "strong": {"embeddingNoise": 0.3, "eta": 1.0}},
    }
    with open(os.path.join(dest, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    params = {"text_encoder": count_params(clip.text), "image_encoder": count_params(clip.image)}
    for k in ("prior", "decoder", "up1", "up2"):
        params[k] = count_params(models[k])
    info = {"sizes_bytes": sizes, "params": params, "steps": {k: models.get(k + "_step") for k in ("prior", "decoder", "up1", "up2")}}
    with open(os.path.join(out, "export_info.json"), "w") as f:
        json.dump(info, f, indent=1)
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(dest, "**", "*"), recursive=True) if os.path.isfile(p))
    info["total_bytes"] = total
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="training/runs/default")
    ap.add_argument("--dest", default=os.path.join(HERE, "..", "models", "imagine-shapes"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = json.load(open(os.path.join(args.out, "config.json")))
    for k, v in cfg.items():
        if isinstance(v, list):
            cfg[k] = tuple(v)
    print(json.dumps(export_all(args.out, cfg, args.dest), indent=1))


if __name__ == "__main__":
    main()
