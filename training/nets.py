"""The four networks of imagine-shapes (CLIP text/image encoders, prior, UNets). ONNX-exportable (opset 17)."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB_SIZE = 49408


def timestep_embedding(t, dim):
    t = t.float()
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    a = t[:, None] * freqs[None]
    return torch.cat([torch.cos(a), torch.sin(a)], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        B, L, D = x.shape
        h = self.heads
        q, k, v = self.qkv(x).reshape(B, L, 3, h, D // h).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(D // h))
        if mask is not None:
            att = att + mask
        att = att.softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, L, D)
        return self.out(y)


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))

    def forward(self, x, mask):
        x = x + self.attn(self.ln1(x), mask)
        return x + self.mlp(self.ln2(x))


class TextEncoder(nn.Module):
    """CLIP-style causal transformer over CLIP BPE ids. The 49,408-id vocabulary is remapped inside the
    graph (an int64 lookup table) to the few hundred ids the world's captions use; others -> UNK (row 0)."""

    def __init__(self, used_ids, width=128, layers=3, heads=4, embed_dim=128, ctx=77):
        super().__init__()
        remap = torch.zeros(VOCAB_SIZE, dtype=torch.long)
        for i, tid in enumerate(sorted(set(used_ids))):
            remap[tid] = i + 1
        self.register_buffer("remap", remap)
        self.n_vocab = len(set(used_ids)) + 1
        self.tok = nn.Embedding(self.n_vocab, width)
        self.pos = nn.Parameter(torch.randn(ctx, width) * 0.01)
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)
        self.ctx = ctx
        self.register_buffer("causal", torch.triu(torch.full((ctx, ctx), -1e4), diagonal=1), persistent=False)

    def forward(self, input_ids):
        L = input_ids.shape[1]
        x = self.tok(self.remap[input_ids]) + self.pos[:L]
        mask = self.causal[:L, :L]
        for b in self.blocks:
            x = b(x, mask)
        x = self.ln(x)
        eot = input_ids.argmax(-1)
        pos = torch.arange(L, device=input_ids.device)[None, :]
        onehot = (pos == eot[:, None]).float()
        pooled = (onehot[:, :, None] * x).sum(1)
        # hidden states after the end token are zeroed, so padding never matters downstream
        x = x * (pos <= eot[:, None]).float()[:, :, None]
        emb = F.normalize(self.proj(pooled), dim=-1)
        return emb, x


def gn(c):
    return nn.GroupNorm(min(8, c // 4) if c >= 8 else 1, c)


class ImageEncoder(nn.Module):
    """Small CNN; input [B,3,S,S] (S = 64), average-pooled to 32 first. Flattened 4x4 features keep layout."""

    def __init__(self, size=64, embed_dim=128, ch=(32, 64, 128, 128), hidden=256):
        super().__init__()
        self.size = size
        c0, c1, c2, c3 = ch
        self.net = nn.Sequential(
            nn.Conv2d(3, c0, 3, padding=1), gn(c0), nn.SiLU(),
            nn.Conv2d(c0, c1, 3, stride=2, padding=1), gn(c1), nn.SiLU(),  # 16
            nn.Conv2d(c1, c1, 3, padding=1), gn(c1), nn.SiLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), gn(c2), nn.SiLU(),  # 8
            nn.Conv2d(c2, c2, 3, padding=1), gn(c2), nn.SiLU(),
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), gn(c3), nn.SiLU(),  # 4
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c3 * 16, hidden), nn.SiLU(), nn.Linear(hidden, embed_dim))

    def forward(self, pixel_values):
        x = F.avg_pool2d(pixel_values, self.size // 32) if self.size > 32 else pixel_values
        return F.normalize(self.head(self.net(x)), dim=-1)


class CLIP(nn.Module):
    def __init__(self, used_ids, embed_dim=128, width=128, layers=3, heads=4, img_ch=(32, 64, 128, 128),
                 attr_sizes=None, map_classes=(15, 9), cells=8):
        super().__init__()
        self.text = TextEncoder(used_ids, width, layers, heads, embed_dim)
        self.image = ImageEncoder(64, embed_dim, img_ch)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        # auxiliary heads (training only): structured attributes (shared by text and image embeddings)
        self.attr_sizes = dict(attr_sizes or {})
        self.attr = nn.Sequential(nn.Linear(embed_dim, 256), nn.SiLU(), nn.Linear(256, sum(self.attr_sizes.values())))
        self.map_classes, self.cells = map_classes, cells
        self.map = nn.Sequential(nn.Linear(embed_dim, 512), nn.SiLU(), nn.Linear(512, cells * cells * sum(map_classes)))

    def attr_logits(self, emb):
        out, i = {}, 0
        z = self.attr(emb * math.sqrt(emb.shape[-1]))
        for k, n in self.attr_sizes.items():
            out[k] = z[:, i:i + n]
            i += n
        return out

    def map_logits(self, emb):
        z = self.map(emb * math.sqrt(emb.shape[-1])).reshape(-1, self.cells, self.cells, sum(self.map_classes))
        a = self.map_classes[0]
        return z[..., :a], z[..., a:]


class Prior(nn.Module):
    """Diffusion prior in CLIP image-embedding space: predicts the clean (scaled) image embedding.
    Residual MLP on [noisy sample, text embedding, timestep, attention-pooled text tokens]."""

    def __init__(self, embed_dim=128, text_width=128, width=512, depth=6):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, text_width) * 0.02)
        self.kv = nn.Linear(text_width, text_width * 2, bias=False)
        self.q_from_t = nn.Linear(embed_dim, text_width)
        self.inp = nn.Linear(embed_dim * 2 + text_width + 128, width)
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width * 2), nn.SiLU(),
                                                   nn.Linear(width * 2, width)) for _ in range(depth)])
        self.t_proj = nn.ModuleList([nn.Linear(128, width) for _ in range(depth)])
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, embed_dim))

    def forward(self, sample, timestep, text_embeds, text_hidden):
        temb = timestep_embedding(timestep, 128)
        q = self.query + self.q_from_t(text_embeds)[:, None, :]
        k, v = self.kv(text_hidden).chunk(2, dim=-1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(k.shape[-1])
        pad = (text_hidden.abs().sum(-1) == 0).float()[:, None, :]  # zeroed positions after the end token
        att = att - pad * 1e4
        pooled = (att.softmax(-1) @ v)[:, 0]
        h = self.inp(torch.cat([sample, text_embeds * math.sqrt(text_embeds.shape[-1]), pooled, temb], -1))
        for blk, tp in zip(self.blocks, self.t_proj):
            h = h + blk(h + tp(temb))
        return self.out(h)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb):
        super().__init__()
        self.n1 = gn(cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(temb, cout * 2)
        self.n2 = gn(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb):
        h = self.c1(F.silu(self.n1(x)))
        s, b = self.t(temb)[:, :, None, None].chunk(2, dim=1)
        h = self.n2(h) * (1 + s) + b
        h = self.c2(F.silu(h))
        return self.skip(x) + h


class SpatialAttn(nn.Module):
    def __init__(self, c, heads=4):
        super().__init__()
        self.n = gn(c)
        self.attn = Attention(c, heads)

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.n(x).reshape(B, C, H * W).transpose(1, 2)
        h = self.attn(h).transpose(1, 2).reshape(B, C, H, W)
        return x + h


class Sketch(nn.Module):
    """The CLIP layout head as a frozen function of the image embedding: per 8x8 cell, the probabilities of
    the colour classes and of the shape classes. Inside the decoder graph, so the decoder's only input is
    still the embedding; it turns the embedding into a coarse picture the UNet only has to refine."""

    def __init__(self, embed_dim=128, map_classes=(15, 9), cells=8):
        super().__init__()
        self.map_classes, self.cells = tuple(map_classes), cells
        self.map = nn.Sequential(nn.Linear(embed_dim, 512), nn.SiLU(), nn.Linear(512, cells * cells * sum(map_classes)))
        for p in self.parameters():
            p.requires_grad_(False)

    def load_from_clip(self, clip):
        self.map.load_state_dict(clip.map.state_dict())

    @property
    def channels(self):
        return sum(self.map_classes)

    def forward(self, emb):
        z = self.map(emb * math.sqrt(emb.shape[-1])).reshape(-1, self.cells, self.cells, sum(self.map_classes))
        a = self.map_classes[0]
        p = torch.cat([z[..., :a].softmax(-1), z[..., a:].softmax(-1)], -1)
        return p.permute(0, 3, 1, 2)


class UNet(nn.Module):
    """Fully convolutional UNet. Decoder: cond_dim = E (FiLM + a projected 8x8 layout map, and optionally the
    frozen CLIP layout sketch, concatenated at the input). Upsampler: low_res=True (the bilinearly-upsampled
    low-res image is concatenated at the input)."""

    def __init__(self, ch=(64, 128, 128), nres=1, cond_dim=0, low_res=False, mid_attn=True, map_ch=16, cells=8,
                 sketch=None):
        super().__init__()
        temb = ch[0] * 4
        self.ch0 = ch[0]
        self.t_mlp = nn.Sequential(nn.Linear(ch[0], temb), nn.SiLU(), nn.Linear(temb, temb))
        self.cond_dim, self.low_res, self.map_ch, self.cells = cond_dim, low_res, map_ch, cells
        cin = 3 + (3 if low_res else 0)
        if cond_dim:
            self.c_mlp = nn.Sequential(nn.Linear(cond_dim, temb), nn.SiLU(), nn.Linear(temb, temb))
            self.c_map = nn.Linear(cond_dim, map_ch * cells * cells)
            cin += map_ch
        self.sketch = sketch
        if sketch is not None:
            cin += sketch.channels
        self.conv_in = nn.Conv2d(cin, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        skips = [ch[0]]
        c = ch[0]
        for i, co in enumerate(ch):
            for _ in range(nres):
                self.down.append(ResBlock(c, co, temb))
                c = co
                skips.append(c)
            if i < len(ch) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid1 = ResBlock(c, c, temb)
        self.mid_attn = SpatialAttn(c) if mid_attn else None
        self.mid2 = ResBlock(c, c, temb)
        self.up = nn.ModuleList()
        for i, co in reversed(list(enumerate(ch))):
            for _ in range(nres + 1):
                self.up.append(ResBlock(c + skips.pop(), co, temb))
                c = co
            if i > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                self.up.append(nn.Conv2d(c, c, 3, padding=1))
        self.out = nn.Sequential(gn(c), nn.SiLU(), nn.Conv2d(c, 3, 3, padding=1))

    def forward(self, sample, timestep, cond=None, low_res=None):
        temb = self.t_mlp(timestep_embedding(timestep, self.ch0))
        xs = [sample]
        if self.low_res:
            xs.append(low_res)
        if self.cond_dim:
            temb = temb + self.c_mlp(cond * math.sqrt(self.cond_dim))
            m = self.c_map(cond * math.sqrt(self.cond_dim)).reshape(-1, self.map_ch, self.cells, self.cells)
            xs.append(F.interpolate(m, size=(sample.shape[2], sample.shape[3]), mode="bilinear", align_corners=False))
            if self.sketch is not None:
                sk = self.sketch(cond)
                xs.append(F.interpolate(sk, size=(sample.shape[2], sample.shape[3]), mode="bilinear", align_corners=False))
        h = self.conv_in(torch.cat(xs, 1))
        hs = [h]
        for layer in self.down:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        h = self.mid1(h, temb)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = self.mid2(h, temb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = layer(torch.cat([h, hs.pop()], 1), temb)
            else:
                h = layer(h)
        return self.out(h)


def count_params(m):
    return sum(p.numel() for p in m.parameters())
