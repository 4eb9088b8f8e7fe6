"""Plain-assert tests: /usr/bin/python3 -m training.tests"""
import json
import os
import random

import numpy as np

from training import world as W
from training.tokenizer import SimpleTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REF = [os.path.join(HERE, "..", "..", "..", "shared", "data", "clip-bpe", "tokenizer-reference.json"),
       os.path.join(HERE, "tokenizer-reference.json")]


def test_tokenizer():
    tok = SimpleTokenizer()
    ref = next(p for p in REF if os.path.exists(p))
    rows = json.load(open(ref))
    assert rows
    for r in rows:
        assert tok.ids(r["text"]) == r["ids"], (r["text"], tok.ids(r["text"]), r["ids"])
        padded = tok(r["text"])
        assert len(padded) == 77 and padded[0] == 49406
        if len(r["ids"]) <= 77:
            assert padded[:len(r["ids"])] == r["ids"] and all(i == 0 for i in padded[len(r["ids"]):])
    long = tok(" ".join(["star"] * 200))
    assert len(long) == 77 and long[-1] == 49407 and long[0] == 49406
    assert tok("")[:3] == [49406, 49407, 0]
    print(f"tokenizer: {len(rows)} reference rows ok")


def test_world():
    a = [W.sample_scene(random.Random(7)) for _ in range(3)]
    b = [W.sample_scene(random.Random(7)) for _ in range(3)]
    assert a == b, "world must be deterministic from a seed"
    rng = random.Random(0)
    kinds = set()
    for i in range(300):
        s = W.sample_scene(rng)
        kinds.add(s["kind"])
        for g in s["groups"]:
            assert (g["color"], g["shape"]) not in W.HELDOUT_PAIRS
            assert g["color"] != s["bg"]
        text, m = W.caption(s, rng)
        assert isinstance(text, str) and text
        t = W.attr_targets(s, m)
        assert set(t) == set(W.ATTR_HEADS)
    assert kinds == {"single", "counting", "two", "relation"}
    s = W.sample_scene(random.Random(3), "single")
    hi = W.render(s, 256)
    lo = W.render(s, 64, hi=256)
    assert hi.shape == (256, 256, 3) and lo.shape == (64, 64, 3)
    assert np.abs(W.downsample(hi, 64).astype(int) - lo.astype(int)).max() <= 1
    # every object colour is near its CSS value
    for o in s["objects"]:
        assert max(abs(x - y) for x, y in zip(o["rgb"], W.COLORS[o["color"]])) <= 10
    print("world ok")


def test_insert_noise():
    import torch
    from training.fast import insert_noise
    tok = SimpleTokenizer()
    ids = torch.tensor([tok("two red circles on a blue background"), tok("star")])
    noise = torch.tensor([49405, 539])
    torch.manual_seed(0)
    for _ in range(20):
        out = insert_noise(torch, ids, noise, 0.7)
        assert out.shape == (2, 80)
        for row, original in zip(out.tolist(), ids.tolist()):
            end = row.index(49407)
            assert row[0] == 49406 and all(t == 0 for t in row[end + 1:]), row
            kept = [t for t in row[1:end] if t not in (49405, 539)]
            body = original[1:original.index(49407)]
            assert kept == body, (kept, body)  # the caption's own words, in order; only noise was added
            assert end - 1 - len(body) <= 3
    assert (insert_noise(torch, ids, noise, 0.0)[:, :77] == ids).all()
    print("insert_noise ok")


def test_retie_unknown_rows():
    import types
    import torch
    from training.fast import retie_unknown_rows
    table = lambda w: types.SimpleNamespace(text=types.SimpleNamespace(tok=types.SimpleNamespace(weight=w)))
    old = torch.randn(6, 4)
    old[[2, 4]] = old[0].clone()  # rows the teacher had tied to UNK
    new = old.clone() + torch.randn(6, 4) * 0.1  # the student trained UNK (row 0) and the words
    assert retie_unknown_rows(torch, table(old), table(new)) == 2
    assert torch.equal(new[2], new[0]) and torch.equal(new[4], new[0])
    assert not torch.equal(new[1], new[0]) and not torch.equal(new[3], new[0])  # trained words keep their rows
    print("retie_unknown_rows ok")


def test_checker():
    from training import evaluate as E
    ps = E.make_prompts(n=3)
    ok = [E.judge(W.render(p["scene"], 128, hi=256), p["spec"])[0] for p in ps]
    assert np.mean(ok) >= 0.9, ok
    print(f"checker on ground truth: {np.mean(ok):.2f}")


if __name__ == "__main__":
    test_tokenizer()
    test_world()
    test_checker()
    test_insert_noise()
    test_retie_unknown_rows()
    print("all tests passed")
