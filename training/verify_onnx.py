"""Compare the exported ONNX files (run by onnxruntime-node) with the torch checkpoints, and time them.

  /usr/bin/python3 -m training.verify_onnx --run training/runs/default --model models/imagine-shapes
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np
import onnx
import torch

from .export import DecWrap, TextWrap, UpWrap, load_models
from .tokenizer import get_tokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="training/runs/default")
    ap.add_argument("--model", default="models/imagine-shapes")
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = json.load(open(os.path.join(args.run, "config.json")))
    cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
    man = json.load(open(os.path.join(args.model, "manifest.json")))
    for p in [man["textEncoder"]["path"], man["imageEncoder"]["path"], man["prior"]["path"], man["decoder"]["path"]] + \
            [u["path"] for u in man["upsamplers"]]:
        m = onnx.load(os.path.join(args.model, p))
        onnx.checker.check_model(m)
        assert m.opset_import[0].version <= 17
    M = load_models(args.run, cfg)
    E, Wd = cfg["embed_dim"], cfg["text_width"]
    tok = get_tokenizer()
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([tok("two small yellow stars above a green square"), tok("🔴 on the left"), tok("")])
    t3 = torch.tensor([999, 500, 3])
    cases = {
        "text_encoder": (TextWrap(M["clip"].text), {"input_ids": ids}, 1),
        "image_encoder": (M["clip"].image, {"pixel_values": torch.rand(3, 3, 64, 64, generator=g) * 2 - 1}, 1),
        "prior": (M["prior"], {"sample": torch.randn(3, E, generator=g), "timestep": t3,
                               "text_embeds": M["clip"].text(ids)[0].detach(), "text_hidden": M["clip"].text(ids)[1].detach()}, 1),
        "decoder": (DecWrap(M["decoder"]), {"sample": torch.randn(3, 3, 32, 48, generator=g), "timestep": t3,
                                            "image_embeds": torch.nn.functional.normalize(torch.randn(3, E, generator=g), dim=-1)}, 1),
        "decoder_grid": (DecWrap(M["decoder"]), {"sample": torch.randn(8, 3, 32, 32, generator=g), "timestep": torch.full((8,), 500),
                                                 "image_embeds": torch.randn(8, E, generator=g)}, 3),
        "upsampler_1": (UpWrap(M["up1"]), {"sample": torch.randn(4, 3, 128, 128, generator=g), "timestep": torch.full((4,), 500),
                                           "low_res": torch.randn(4, 3, 128, 128, generator=g)}, 2),
        "upsampler_2": (UpWrap(M["up2"]), {"sample": torch.randn(1, 3, 256, 256, generator=g), "timestep": torch.tensor([500]),
                                           "low_res": torch.randn(1, 3, 256, 256, generator=g)}, 2),
        "upsampler_1_nonsquare": (UpWrap(M["up1"]), {"sample": torch.randn(1, 3, 128, 192, generator=g), "timestep": torch.tensor([10]),
                                                     "low_res": torch.randn(1, 3, 128, 192, generator=g)}, 1),
    }
    paths = {"text_encoder": man["textEncoder"]["path"], "image_encoder": man["imageEncoder"]["path"], "prior": man["prior"]["path"],
             "decoder": man["decoder"]["path"], "decoder_grid": man["decoder"]["path"], "upsampler_1": man["upsamplers"][0]["path"],
             "upsampler_2": man["upsamplers"][1]["path"], "upsampler_1_nonsquare": man["upsamplers"][0]["path"]}
    d = tempfile.mkdtemp()
    meta = {"models": []}
    ref = {}
    for name, (mod, inputs, reps) in cases.items():
        with torch.no_grad():
            o = mod(*inputs.values())
        ref[name] = [x.numpy() for x in (o if isinstance(o, tuple) else (o,))]
        ins = []
        for k, v in inputs.items():
            fn = f"{name}.in.{k}.bin"
            arr = v.numpy().astype(np.int64 if v.dtype == torch.long else np.float32)
            arr.tofile(os.path.join(d, fn))
            ins.append({"name": k, "file": fn, "dtype": "int64" if v.dtype == torch.long else "float32", "shape": list(arr.shape)})
        meta["models"].append({"name": name, "path": os.path.abspath(os.path.join(args.model, paths[name])), "inputs": ins, "reps": reps})
    json.dump(meta, open(os.path.join(d, "meta.json"), "w"))
    subprocess.run(["node", os.path.join(os.path.dirname(os.path.abspath(__file__)), "ort_run.mjs"), d], check=True,
                   cwd=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ort = json.load(open(os.path.join(d, "ort.json")))
    report = {}
    for name in cases:
        outs = list(ort[name]["outputs"].items())
        diffs = []
        for (k, dims), r in zip(outs, ref[name]):
            a = np.fromfile(os.path.join(d, f"{name}.{k}.bin"), dtype=np.float32).reshape(dims)
            diffs.append(float(np.abs(a - r).max()))
        report[name] = {"max_abs_diff": max(diffs), "ort_ms": round(ort[name]["ms"], 1)}
    sizes = {k: os.path.getsize(os.path.join(args.model, p)) for k, p in paths.items()}
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(args.model) for f in fs)
    ms = {k: v["ort_ms"] for k, v in report.items()}
    est = (man["prior"]["steps"] * 0 + man["decoder"]["steps"] * ms["decoder_grid"] + man["upsamplers"][0]["steps"] * ms["upsampler_1"])
    print(json.dumps({"compare": report, "total_bytes": total,
                      "estimated_grid_of_4_seconds_excluding_text_and_prior": round(est / 1000, 2),
                      "estimated_U_seconds": round(man["upsamplers"][1]["steps"] * ms["upsampler_2"] / 1000, 2)}, indent=1))
    assert all(v["max_abs_diff"] < 2e-3 for v in report.values()), report


if __name__ == "__main__":
    main()
