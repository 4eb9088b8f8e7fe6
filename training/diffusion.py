"""Noise schedules and a DDIM sampler following diffusers' DDIMScheduler formulas exactly
(squaredcos_cap_v2 betas, set_alpha_to_one=False, steps_offset=0, timestep_spacing as configured)."""
import math

import numpy as np
import torch


def scheduler_config(prediction_type, clip_sample, spacing="trailing"):
    return {"_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
            "beta_start": 0.0001, "beta_end": 0.02, "prediction_type": prediction_type, "clip_sample": clip_sample,
            "clip_sample_range": 1.0, "set_alpha_to_one": False, "steps_offset": 0, "timestep_spacing": spacing}


def cosine_betas(T=1000, max_beta=0.999):
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)], dtype=np.float64)


class Schedule:
    def __init__(self, cfg):
        self.cfg = cfg
        self.T = cfg["num_train_timesteps"]
        betas = cosine_betas(self.T)
        self.alphas_cumprod = torch.tensor(np.cumprod(1 - betas), dtype=torch.float32)
        self.final_alpha = torch.tensor(1.0) if cfg["set_alpha_to_one"] else self.alphas_cumprod[0]

    # ------------------------------------------------------------ training
    def add_noise(self, x0, noise, t):
        a = self.alphas_cumprod[t].reshape(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def target(self, x0, noise, t):
        p = self.cfg["prediction_type"]
        if p == "epsilon":
            return noise
        if p == "sample":
            return x0
        a = self.alphas_cumprod[t].reshape(-1, *([1] * (x0.dim() - 1)))
        return a.sqrt() * noise - (1 - a).sqrt() * x0

    # ------------------------------------------------------------ sampling
    def timesteps(self, steps):
        sp = self.cfg["timestep_spacing"]
        if sp == "trailing":
            ts = np.round(np.arange(self.T, 0, -self.T / steps)).astype(np.int64) - 1
        elif sp == "leading":
            ratio = self.T // steps
            ts = (np.arange(0, steps) * ratio).round()[::-1].astype(np.int64) + self.cfg["steps_offset"]
        else:
            ts = np.linspace(0, self.T - 1, steps).round()[::-1].astype(np.int64)
        return ts

    def step(self, out, t, x, steps, eta=0.0, generator=None):
        prev_t = t - self.T // steps
        a = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha
        b = 1 - a
        p = self.cfg["prediction_type"]
        if p == "epsilon":
            x0 = (x - b.sqrt() * out) / a.sqrt()
            eps = out
        elif p == "sample":
            x0 = out
            eps = (x - a.sqrt() * x0) / b.sqrt()
        else:
            x0 = a.sqrt() * x - b.sqrt() * out
            eps = a.sqrt() * out + b.sqrt() * x
        if self.cfg["clip_sample"]:
            r = self.cfg["clip_sample_range"]
            x0 = x0.clamp(-r, r)
        var = (1 - a_prev) / (1 - a) * (1 - a / a_prev)
        std = eta * var.sqrt()
        direction = (1 - a_prev - std ** 2).clamp(min=0).sqrt() * eps
        prev = a_prev.sqrt() * x0 + direction
        if eta > 0:
            prev = prev + std * torch.randn(x.shape, generator=generator)
        return prev


@torch.no_grad()
def sample(model_fn, shape, sched, steps, guidance=None, eta=0.0, generator=None, x=None):
    """model_fn(x, t_tensor, doubled) -> output. With guidance, model_fn gets a doubled batch
    ([uncond..., cond...]) and the output is combined uncond + g*(cond-uncond), as the engine does."""
    if x is None:
        x = torch.randn(shape, generator=generator)
    for t in sched.timesteps(steps):
        t = int(t)
        if guidance is not None and guidance != 1.0:
            xx = torch.cat([x, x])
            o = model_fn(xx, torch.full((xx.shape[0],), t, dtype=torch.long), True)
            u, c = o.chunk(2)
            o = u + guidance * (c - u)
        else:
            o = model_fn(x, torch.full((x.shape[0],), t, dtype=torch.long), False)
        x = sched.step(o, t, x, steps, eta, generator)
    return x
