/**
 * The ONNX engine's own cost, on this machine's CPU:
 *
 * - overhead: end-to-end time of a 2×2 grid through the WorkerEngine (what the service uses) ÷ the
 *   time spent inside onnxruntime's session.run for it (target ≤ 1.05); also in-process.
 * - batching: a grid drawn in batches of four vs four single-image passes (target ≥ 1.5× throughput).
 * - peer: the same weights in PyTorch eager with the same sampler and steps (needs the training
 *   checkpoints of the shipped model; null with the reason otherwise). It also draws one grid from
 *   the engine's own starting noise, and reports how far its images are from the engine's.
 * - memory: peak RSS of the process while the worker draws grids.
 *
 *   npm run bench -- engine [--model models/imagine-shapes] [--runs 3] [--warmup 2] [--threads 0] [--checkpoints training/runs/default] [--no-peer]
 *   node --import tsx bench/engine.ts [same options]
 *
 * Without the shipped model (models/imagine-shapes/manifest.json) it runs on the tiny random-weight
 * unCLIP fixture and says so in `model`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { projectRoot, shippedModel } from '../src/config/config.js';
import type { ImageEngine, RgbImage } from '../src/engine/engine.js';
import { generatorFor, NoiseStream } from '../src/engine/onnx/diffusion.js';
import { batchNoise, imageToTensor } from '../src/engine/onnx/tensors.js';
import { createEngine, loadEngine } from '../src/engine/factory.js';
import type { SessionSettings } from '../src/engine/onnx/providers.js';
import { RunClock } from '../src/engine/onnx/session.js';
import type { WorkerEngine } from '../src/engine/worker/worker-engine.js';

const fixtureModel = path.join(projectRoot, 'test', 'fixtures', 'models', 'unclip');
const seeds = [101, 202, 303, 404];
const prompt = 'two red circles and a blue star on a yellow background';

function option(args: string[], name: string): string | undefined {
  const index = args.findIndex((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`));
  if (index < 0) return undefined;
  const arg = args[index]!;
  return arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : args[index + 1];
}

const round = (value: number, digits = 3): number => Math.round(value * 10 ** digits) / 10 ** digits;
const mean = (values: number[]): number => values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length);
const mebibytes = (bytes: number): number => round(bytes / 1024 / 1024, 1);

/** Draws `runs` grids after `warmup` ones (JIT, allocator); returns wall and onnxruntime milliseconds per grid. */
async function timeGrids(engine: ImageEngine, runs: number, warmup: number, runMilliseconds: () => Promise<number>): Promise<{ wallMs: number; ortMs: number }> {
  const { width, height } = engine.capabilities.sizes['1:1']!;
  for (let run = 0; run < warmup; run += 1) await engine.generate({ prompt, width, height, seeds });
  const walls: number[] = [];
  const inside: number[] = [];
  for (let run = 0; run < runs; run += 1) {
    const before = await runMilliseconds();
    const started = performance.now();
    await engine.generate({ prompt, width, height, seeds: seeds.map((seed) => seed + run) });
    walls.push(performance.now() - started);
    inside.push((await runMilliseconds()) - before);
  }
  return { wallMs: mean(walls), ortMs: mean(inside) };
}

/** The PyTorch eager run of the same checkpoints (DDIM from training/diffusion.py, same steps and guidance). */
const peerScript = String.raw`
import json, os, sys, time
import torch, torch.nn.functional as F
root, checkpoints, model_dir, threads, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
sys.path.insert(0, root)
from training.export import load_models
from training.diffusion import Schedule, sample
from training.tokenizer import SimpleTokenizer
torch.set_num_threads(threads if threads > 0 else os.cpu_count())
cfg = json.load(open(os.path.join(checkpoints, "config.json")))
cfg = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}
manifest = json.load(open(os.path.join(model_dir, "manifest.json")))
models = load_models(checkpoints, cfg)
clip, prior, dec, up1 = models["clip"], models["prior"], models["decoder"], models["up1"]
tok = SimpleTokenizer(os.path.join(model_dir, manifest["tokenizer"]["merges"]))
sched = lambda entry: Schedule(json.load(open(os.path.join(model_dir, entry["scheduler"]))))
P, D, U = manifest["prior"], manifest["decoder"], manifest["upsamplers"][0]
prompt = sys.argv[6]
noise_dir = sys.argv[7] if len(sys.argv) > 7 else ""
def given(name, shape):
    if not noise_dir:
        return None
    import numpy as np
    return torch.from_numpy(np.fromfile(os.path.join(noise_dir, name + ".bin"), dtype=np.float32).reshape(shape))
@torch.no_grad()
def grid(seed, fixed=False):
    g = torch.Generator().manual_seed(seed)
    B = 4
    E, S, F_ = manifest["embeddingDim"], D["size"], U["factor"]
    emb, hidden = clip.text(torch.tensor([tok(""), tok(prompt)]))
    te = torch.cat([emb[:1].expand(B, -1), emb[1:].expand(B, -1)])
    th = torch.cat([hidden[:1].expand(B, -1, -1), hidden[1:].expand(B, -1, -1)])
    z = sample(lambda x, t, d: prior(x, t, te, th) if d else prior(x, t, te[B:], th[B:]), (B, E), sched(P), P["steps"], guidance=P["guidance"], generator=g, x=given("prior", (B, E)) if fixed else None)
    z = F.normalize(z / P["embeddingScale"], dim=-1)
    zz = torch.cat([torch.zeros_like(z), z])
    x = sample(lambda x_, t, d: dec(x_, t, zz if d else z), (B, 3, S, S), sched(D), D["steps"], guidance=D["guidance"], generator=g, x=given("decoder", (B, 3, S, S)) if fixed else None).clamp(-1, 1)
    low = F.interpolate(x, scale_factor=F_, mode="bilinear", align_corners=False)
    return sample(lambda y, t, d: up1(y, t, None, low), (B, 3, S * F_, S * F_), sched(U), U["steps"], generator=g, x=given("upsampler", (B, 3, S * F_, S * F_)) if fixed else None)
if noise_dir:
    # The engine's own starting noise: the two implementations must then draw the same images.
    grid(0, fixed=True).clamp(-1, 1).numpy().astype("float32").tofile(os.path.join(noise_dir, "torch.bin"))
grid(1)
times = []
for run in range(runs):
    t0 = time.perf_counter()
    grid(100 + run)
    times.append(time.perf_counter() - t0)
print(json.dumps({"torchGridMs": 1000 * sum(times) / len(times), "torchThreads": torch.get_num_threads(), "torch": torch.__version__}))
`;

function runPeer(checkpoints: string, model: string, threads: number, runs: number, noiseDir: string): { figures?: Record<string, number | string>; reason?: string } {
  const needed = ['config.json', 'clip.pt', 'prior.pt', 'decoder.pt', 'up1.pt', 'vocab_ids.json'];
  const missing = needed.filter((file) => !existsSync(path.join(checkpoints, file)));
  if (missing.length > 0) return { reason: `no PyTorch checkpoints for this model (${missing.join(', ')} missing in ${path.relative(projectRoot, checkpoints) || checkpoints})` };
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const result = spawnSync(python, ['-c', peerScript, projectRoot, checkpoints, model, String(threads), String(runs), prompt, noiseDir], { encoding: 'utf8', timeout: 30 * 60_000 });
  const line = result.stdout?.trim().split('\n').at(-1);
  if (result.status !== 0 || !line) return { reason: `the PyTorch run failed: ${(result.stderr || result.error?.message || '').trim().split('\n').slice(-3).join(' ')}` };
  return { figures: JSON.parse(line) as Record<string, number | string> };
}

/** How far PyTorch's images (NCHW floats in [-1, 1]) are from the engine's, in 8-bit levels. */
function compareImages(torchImages: Float32Array, images: RgbImage[]): { maxDifference: number; meanDifference: number } {
  let max = 0;
  let sum = 0;
  let count = 0;
  images.forEach((image, index) => {
    const mine = imageToTensor(image);
    const offset = index * mine.length;
    for (let item = 0; item < mine.length; item += 1) {
      const theirs = Math.round((Math.max(-1, Math.min(1, torchImages[offset + item]!)) + 1) * 127.5);
      const difference = Math.abs(Math.round((mine[item]! + 1) * 127.5) - theirs);
      max = Math.max(max, difference);
      sum += difference;
      count += 1;
    }
  });
  return { maxDifference: max, meanDifference: round(sum / Math.max(1, count), 3) };
}

export async function run(args: string[] = []): Promise<Record<string, unknown>> {
  const requested = option(args, 'model');
  const model = path.resolve(requested ?? (existsSync(path.join(shippedModel, 'manifest.json')) ? shippedModel : fixtureModel));
  const isFixture = model === fixtureModel;
  const runs = Math.max(1, Number(option(args, 'runs') ?? 3));
  const threads = Math.max(0, Number(option(args, 'threads') ?? 0));
  const warmup = Math.max(0, Number(option(args, 'warmup') ?? 2));
  const checkpoints = path.resolve(option(args, 'checkpoints') ?? path.join(projectRoot, 'training', 'runs', 'default'));
  const settings: SessionSettings = { executionProviders: ['cpu'], threads, graphOptimization: 'all' };
  const manifestFile = path.join(model, 'manifest.json');
  const modelName = existsSync(manifestFile) ? String((JSON.parse(readFileSync(manifestFile, 'utf8')) as { name?: string }).name) : path.basename(model);
  console.log(`model ${modelName} (${model}), ${runs} grids after ${warmup} warm-up grids, threads ${threads || 'onnxruntime default'}`);

  // 1. The service's path: the engine in a worker thread. The main thread samples RSS meanwhile.
  const worker = (await createEngine({ model, executionProviders: ['cpu'], threads, graphOptimization: 'all' })) as WorkerEngine;
  let peakRss = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 5);
  const viaWorker = await timeGrids(worker, runs, warmup, async () => (await worker.stats()).runMilliseconds);
  clearInterval(sampler);
  peakRss = Math.max(peakRss, (await worker.stats()).rss);
  const grid = worker.capabilities.sizes['1:1']!;
  await worker.close();
  console.log(`worker: grid ${round(viaWorker.wallMs, 1)} ms, of which session.run ${round(viaWorker.ortMs, 1)} ms; peak RSS ${mebibytes(peakRss)} MiB`);

  // 2. In-process, batched (a whole grid per call) and one image per call, alternating grid by grid
  //    so that both see the same background load.
  const clock = new RunClock();
  const batched = await loadEngine(model, { settings, clock });
  const singleClock = new RunClock();
  const single = await loadEngine(model, { settings, clock: singleClock, maxBatch: 1 });
  const square = batched.capabilities.sizes['1:1']!;
  const batchedTimes: number[] = [];
  const singleTimes: number[] = [];
  const batchedOrt: number[] = [];
  const singleOrt: number[] = [];
  const pairs: Array<[ImageEngine, number[], number[], RunClock]> = [[batched, batchedTimes, batchedOrt, clock], [single, singleTimes, singleOrt, singleClock]];
  for (let run = -warmup; run < runs; run += 1) {
    for (const [engine, times, ort, runClock] of pairs) {
      const before = runClock.milliseconds;
      const started = performance.now();
      await engine.generate({ prompt, width: square.width, height: square.height, seeds: seeds.map((seed) => seed + run) });
      if (run >= 0) {
        times.push(performance.now() - started);
        ort.push(runClock.milliseconds - before);
      }
    }
  }
  const inProcess = { wallMs: mean(batchedTimes), ortMs: mean(batchedOrt) };
  const oneByOne = { wallMs: mean(singleTimes) };
  const reference = await batched.generate({ prompt, width: square.width, height: square.height, seeds });
  await Promise.all([batched.close(), single.close()]);
  console.log(`in-process: grid ${round(inProcess.wallMs, 1)} ms (session.run ${round(inProcess.ortMs, 1)} ms); one image per call: ${round(oneByOne.wallMs, 1)} ms`);

  // 3. PyTorch eager on the same weights.
  let peer: Record<string, unknown> | null = null;
  let peerReason: string | undefined;
  if (args.includes('--no-peer')) peerReason = 'skipped (--no-peer)';
  else if (isFixture) peerReason = 'the tiny random-weight fixture has no PyTorch twin (the peer figure needs the shipped model and its training checkpoints)';
  else {
    const noiseDir = mkdtempSync(path.join(os.tmpdir(), 'imagine-peer-'));
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { embeddingDim: number; decoder: { size: number }; upsamplers: Array<{ factor: number }> };
    const upscaled = manifest.decoder.size * manifest.upsamplers[0]!.factor;
    const writeNoise = (name: string, stream: number, size: number): void => {
      writeFileSync(path.join(noiseDir, `${name}.bin`), batchNoise(seeds.map((seed) => generatorFor(seed, stream)), size));
    };
    writeNoise('prior', NoiseStream.prior, manifest.embeddingDim);
    writeNoise('decoder', NoiseStream.decoder, 3 * manifest.decoder.size ** 2);
    writeNoise('upsampler', NoiseStream.upsampler, 3 * upscaled ** 2);
    const outcome = runPeer(checkpoints, model, threads, runs, noiseDir);
    const torchFile = path.join(noiseDir, 'torch.bin');
    const agreement = existsSync(torchFile) ? compareImages(new Float32Array(readFileSync(torchFile).buffer.slice(0)), reference.images.map((image) => image.image)) : undefined;
    rmSync(noiseDir, { recursive: true, force: true });
    if (outcome.figures) {
      const torchGridMs = Number(outcome.figures.torchGridMs);
      peer = { ...outcome.figures, torchGridMs: round(torchGridMs, 1), onnxGridMs: round(viaWorker.wallMs, 1), speedupVsTorch: round(torchGridMs / viaWorker.wallMs, 2), ...(agreement ? { sameNoiseImages: agreement.maxDifference > 8 ? { ...agreement, note: 'the checkpoints are not the ones exported (training went on after the export), so the images cannot match' } : agreement } : {}) };
      console.log(`PyTorch eager: grid ${round(torchGridMs, 1)} ms`);
    } else {
      peerReason = outcome.reason;
    }
  }

  const overhead = viaWorker.wallMs / viaWorker.ortMs;
  const throughputGain = oneByOne.wallMs / inProcess.wallMs;
  return {
    benchmark: 'engine',
    model: isFixture ? `${modelName} (tiny random-weight unCLIP test fixture, not the shipped model)` : modelName,
    modelFolder: path.relative(projectRoot, model) || model,
    machine: `${os.cpus()[0]?.model ?? 'cpu'} ×${os.cpus().length}, onnxruntime-node cpu`,
    threads: threads || 'default',
    gridSize: `${grid.width}×${grid.height}`,
    runs,
    warmup,
    gridMs: round(viaWorker.wallMs, 1),
    sessionRunMs: round(viaWorker.ortMs, 1),
    overhead: round(overhead),
    overheadInProcess: round(inProcess.wallMs / inProcess.ortMs),
    batching: { batchedGridMs: round(inProcess.wallMs, 1), singleImageCallsGridMs: round(oneByOne.wallMs, 1), throughputGain: round(throughputGain, 2) },
    peer,
    ...(peer ? {} : { peerReason }),
    memory: { peakRssMiB: mebibytes(peakRss) },
    targets: { overhead: 1.05, throughputGain: 1.5 },
    pass: { overhead: overhead <= 1.05, batching: throughputGain >= 1.5 },
  };
}

const invoked = process.argv[1];
if (invoked && import.meta.url === pathToFileURL(path.resolve(invoked)).href) {
  run(process.argv.slice(2)).then(
    (figures) => {
      process.stdout.write(`${JSON.stringify(figures)}\n`);
      setTimeout(() => process.exit(0), 100).unref();
    },
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}

