/**
 * A job record as the playground page sees it: plain JSON with the texts, the image URL, the alt
 * text and the buttons, so that the page holds no rules of its own.
 */
import { buttonRowsFor, type ButtonSpec } from '../../commands/definitions.js';
import { failedText, resultCaption } from '../../commands/messages.js';
import type { JobRecord } from '../../src/service/types.js';

/** One button on the page. */
export interface ButtonView {
  label: string;
  customId: string;
  style: 'primary' | 'secondary';
  /** What the button does, e.g. "upscale image 1". */
  description: string;
  /** The accessible name: the label with what it does, e.g. "U1: upscale image 1"; "Re-roll: …" for 🔄. */
  ariaLabel: string;
}

/** GET /jobs/<id>. */
export interface JobView {
  id: string;
  kind: JobRecord['kind'];
  status: JobRecord['status'];
  prompt: string;
  negativePrompt?: string;
  aspectRatio: string;
  seed: number;
  parent?: { jobId: string; index: number };
  strength?: string;
  createdAt: number;
  finishedAt?: number;
  /** The grid (or upscaled image) once the job completed. */
  imageUrl?: string;
  imageWidth?: number;
  imageHeight?: number;
  /** Alt text of the image; always names the prompt. */
  alt: string;
  caption?: string;
  error?: string;
  buttons: ButtonView[][];
}

/** Where the page loads a job's result from. */
export function imageUrlFor(jobId: string): string {
  return `/jobs/${encodeURIComponent(jobId)}/image`;
}

/** The alt text of a job's result: what it is and the prompt it was drawn from. */
export function altTextFor(job: Pick<JobRecord, 'kind' | 'parameters' | 'parent' | 'strength' | 'images' | 'seeds'>): string {
  const prompt = `“${job.parameters.prompt}”`;
  const count = job.images?.length ?? job.seeds.length;
  const source = job.parent ? `image ${job.parent.index}` : 'an image';
  switch (job.kind) {
    case 'upscale':
      return `Upscaled ${source} for the prompt ${prompt}`;
    case 'variation':
      return `Grid of ${count} ${job.strength ?? 'strong'} variations of ${source} for the prompt ${prompt}`;
    default:
      return `Grid of ${count} images for the prompt ${prompt}`;
  }
}

/** Words for a button, spoken after its label. */
export function describeButton(spec: ButtonSpec): string {
  switch (spec.action.kind) {
    case 'upscale':
      return `upscale image ${spec.action.index}`;
    case 'vary':
      return spec.action.strengthFromSettings ? `variations of image ${spec.action.index}` : `${spec.action.strength} variations of image ${spec.action.index}`;
    case 'reroll':
      return 'four new images from the same prompt';
  }
}

/** Size of the file the page shows: a 2×2 grid with gutters, or the single upscaled image. */
export function outputSize(job: JobRecord): { width: number; height: number } | undefined {
  const images = job.images;
  if (!images?.length) return undefined;
  if (images.length === 1) return { width: images[0]!.width, height: images[0]!.height };
  return undefined;
}

/** The accessible name of a button: short labels get their description, the emoji is replaced by words. */
export function ariaLabelFor(spec: ButtonSpec): string {
  const description = describeButton(spec);
  if (spec.action.kind === 'reroll') return `Re-roll: four new images from the same prompt`;
  if (/^[UV]\d$/.test(spec.label)) return `${spec.label}: ${description}`;
  return spec.label;
}

/** The shared result caption in plain text; the playground has one user, so no one is named. */
export function captionFor(job: JobRecord): string {
  return resultCaption(job, { format: 'plain', mention: '' }).replace(/ — (?=\n|$)/, '');
}

/** Builds the page's view of a job. */
export function jobView(job: JobRecord, file?: { width: number; height: number }): JobView {
  const completed = job.status === 'completed';
  const size = file ?? (completed ? outputSize(job) : undefined);
  return {
    id: job.id,
    kind: job.kind,
    status: job.status,
    prompt: job.parameters.prompt,
    ...(job.parameters.negativePrompt ? { negativePrompt: job.parameters.negativePrompt } : {}),
    aspectRatio: job.parameters.aspectRatio,
    seed: job.parameters.seed,
    ...(job.parent ? { parent: job.parent } : {}),
    ...(job.strength ? { strength: job.strength } : {}),
    createdAt: job.createdAt,
    ...(job.finishedAt !== undefined ? { finishedAt: job.finishedAt } : {}),
    ...(completed ? { imageUrl: imageUrlFor(job.id), caption: captionFor(job) } : {}),
    ...(size ? { imageWidth: size.width, imageHeight: size.height } : {}),
    alt: altTextFor(job),
    ...(job.error ? { error: failedText(job.error) } : job.status === 'cancelled' ? { error: '🛑 The job was cancelled.' } : {}),
    buttons: buttonRowsFor(job).map((row) => row.map((spec) => ({ label: spec.label, customId: spec.customId, style: spec.style, description: describeButton(spec), ariaLabel: ariaLabelFor(spec) }))),
  };
}
