"""Rebuild a run folder (torch checkpoints) from a shipped model package, so that the model can be evaluated or
fine-tuned without the original run, which is not committed.

  /usr/bin/python3 -m training.from_onnx --model models/imagine-shapes --out training/runs/shipped

How: each network is built with the run's configuration, filled with seeded random weights and exported with
training.export's own code. Every initializer of that export is then matched to the parameter it came from (same
values, as they are, reshaped or transposed, since the exporter turns some Linear weights into MatMul constants),
and the shipped initializer of the same name (or, where the exporter merged equal initializers, the one its Identity
node reads) is copied into that parameter. Exports made by the same torch version name
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

def config(fast=True, path=None):
    """The run's configuration: its config.json where there is one, else training.fast's (or the CPU recipe's)."""
    if path:
        cfg = json.load(open(path))
        return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    if fast:
        from .fast import config as fast_config
        return fast_config(argparse.Namespace(tiny=False, set=[]))[0]
    from .train import CONFIGS
    return dict(CONFIGS["default"])


def initializers(path, graph=None):
    graph = graph or onnx.load(path).graph
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def initializer_aliases(graph):
    """Initializer names the exporter merged into another of equal value (untrained LayerNorm weights, all ones,
    in a short run): it reads them through an Identity node whose output keeps the merged name."""
    names = {i.name for i in graph.initializer}
    return {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity" and n.input[0] in names}


def used_ids(model_dir):
    """The text encoder's vocabulary: the ids its int64 remap table sends to a row other than UNK."""
    for name, a in initializers(os.path.join(model_dir, "text_encoder", "model.onnx")).items():
        if a.dtype == np.int64 and a.shape == (49408,):
            return [int(i) for i in np.nonzero(a)[0]]
    raise SystemExit("no vocabulary remap table in the text encoder")


def load_into(module, spec, shipped_path):
    """Copy the shipped ONNX initializers into module's parameters and buffers; `spec` (export.onnx_specs) is how
    the shipped file was exported."""
    from .export import export_file
    gen = torch.Generator().manual_seed(0)
    tensors = dict(module.state_dict(keep_vars=False))
    with torch.no_grad():
        for name, t in tensors.items():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m", "model.onnx")
        export_file(module, spec, path)
        probe = initializers(path)
    graph = onnx.load(shipped_path).graph
    shipped, aliases = initializers(shipped_path, graph), initializer_aliases(graph)
    matched = set()
    with torch.no_grad():
        for init_name, value in probe.items():
            source = init_name if init_name in shipped else aliases.get(init_name)
            if source not in shipped:
                raise SystemExit(f"{shipped_path}: no initializer {init_name}; exported by another torch version?")
            for name, t in tensors.items():
                if name in matched or not t.is_floating_point() or t.numel() != value.size:
                    continue
                a = t.numpy()
                if np.array_equal(a.reshape(-1), value.reshape(-1)):  # as is, or unsqueezed (GroupNorm's affine)
                    t.copy_(torch.from_numpy(shipped[source].reshape(a.shape).copy()))
                elif a.ndim == 2 and a.T.shape == value.shape and np.array_equal(a.T, value):
                    t.copy_(torch.from_numpy(shipped[source].T.copy()))
                else:
                    continue
                matched.add(name)
                break
    missing = [n for n, t in tensors.items() if t.is_floating_point() and n not in matched]
    if missing:
        raise SystemExit(f"{shipped_path}: parameters with no initializer: {missing[:8]}")
    return len(matched)


def rebuild(model_dir, out, fast=True, config_path=None):
    from .export import STAGE_FOLDERS, onnx_specs
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
    # CLIP's attribute and layout heads are training-only and not in the package (they stay random; the decoder's
    # Sketch keeps its own frozen copy of the layout head)
    clip = CLIP(ids, cfg["embed_dim"], cfg["text_width"], cfg["text_layers"], 4, cfg["img_ch"], W.ATTR_HEADS).eval()
    built = {"prior": build_prior(cfg), "decoder": build_decoder(cfg), "up1": build_up(cfg, "up1"), "up2": build_up(cfg, "up2")}
    modules = {"text_encoder": clip.text, "image_encoder": clip.image,
               **{name: built[key].eval() for key, name in STAGE_FOLDERS.items()}}
    counts = {name: load_into(modules[name], spec, os.path.join(model_dir, name, "model.onnx"))
              for name, spec in onnx_specs(cfg).items()}
    # clip.pt too: the text phase freezes the image tower, so the package's image encoder is the joint phase's
    # (what training.fast --resume embeds images with); only the phase-2 text tower survives in the package
    for stage in ("clip", "clip_text"):
        torch.save({"model": clip.state_dict(), "step": 0}, os.path.join(out, stage + ".pt"))
        with open(os.path.join(out, stage + ".done"), "w") as f:  # what training.fast --resume waits for
            json.dump({"rebuilt_from": os.path.abspath(model_dir)}, f)
    for key, name in STAGE_FOLDERS.items():
        sd = modules[name].state_dict()
        torch.save({"model": sd, "ema": sd, "step": 0}, os.path.join(out, key + ".pt"))
    manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
    defaults = {"prior_steps": manifest["prior"]["steps"], "prior_guidance": manifest["prior"]["guidance"],
                "decoder_steps": manifest["decoder"]["steps"], "decoder_guidance": manifest["decoder"]["guidance"],
                "up1_steps": manifest["upsamplers"][0]["steps"], "up2_steps": manifest["upsamplers"][1]["steps"]}
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
