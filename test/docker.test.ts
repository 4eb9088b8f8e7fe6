/**
 * No container registry is reachable here, so the image is never built in tests. Instead the
 * Dockerfile is parsed and checked against the repository so that it cannot silently drift:
 * every path it copies exists (and is not dockerignored), its command is the start script, it
 * runs as a non-root user and its HEALTHCHECK probes /healthz.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

interface Instruction {
  keyword: string;
  /** The text after the keyword, continuation lines joined. */
  argument: string;
  /** Index of the build stage (0-based) the instruction belongs to; -1 before the first FROM. */
  stage: number;
}

/** Splits a Dockerfile into instructions, joining `\` continuations and dropping comments. */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending = '';
  let stage = -1;
  for (const rawLine of text.split('\n')) {
    const line = rawLine.trim();
    if (!pending && (line === '' || line.startsWith('#'))) continue;
    if (pending && line.startsWith('#')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    if (!full) continue;
    const match = /^(\w+)\s+([\s\S]*)$/.exec(full);
    if (!match) throw new Error(`Cannot parse Dockerfile line: ${full}`);
    const keyword = match[1]!.toUpperCase();
    if (keyword === 'FROM') stage += 1;
    instructions.push({ keyword, argument: match[2]!.trim(), stage });
  }
  return instructions;
}

/** Replaces `${NAME}` and `$NAME` with the ARG defaults declared before the first FROM. */
function substituteArgs(value: string, args: Map<string, string>): string {
  return value.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => args.get((braced ?? bare)!) ?? whole);
}

/** Splits a COPY argument into flags and paths; the last path is the destination. */
function parseCopy(argument: string): { flags: Map<string, string>; sources: string[]; destination: string } {
  const words = argument.trim().startsWith('[') ? (JSON.parse(argument) as string[]) : argument.split(/\s+/);
  const flags = new Map<string, string>();
  const paths: string[] = [];
  for (const word of words) {
    const flag = /^--([\w-]+)(?:=(.*))?$/.exec(word);
    if (flag && paths.length === 0) flags.set(flag[1]!, flag[2] ?? 'true');
    else paths.push(word);
  }
  if (paths.length < 2) throw new Error(`COPY needs a source and a destination: ${argument}`);
  return { flags, sources: paths.slice(0, -1), destination: paths.at(-1)! };
}

/** The exec form (a JSON array) of CMD, HEALTHCHECK CMD and friends. */
function execForm(argument: string): string[] {
  const parsed: unknown = JSON.parse(argument);
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) throw new Error(`Not an exec-form array: ${argument}`);
  return parsed as string[];
}

/** True when a .dockerignore pattern (plain paths and simple globs) keeps `relative` out of the context. */
function isDockerignored(relative: string, patterns: string[]): boolean {
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pattern = (negated ? raw.slice(1) : raw).replace(/^\/+/, '').replace(/\/+$/, '');
    const expression = new RegExp(`^${pattern.split('/').map((part) => (part === '**' ? '.*' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]'))).join('/')}(/.*)?$`);
    if (expression.test(relative)) ignored = !negated;
  }
  return ignored;
}

const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
const instructions = parseDockerfile(dockerfile);
const globalArgs = new Map<string, string>();
for (const instruction of instructions.filter((item) => item.keyword === 'ARG' && item.stage === -1)) {
  const [name, value] = instruction.argument.split('=');
  if (name && value !== undefined) globalArgs.set(name.trim(), value.trim());
}
const fromLines = instructions.filter((item) => item.keyword === 'FROM').map((item) => {
  const words = substituteArgs(item.argument, globalArgs).split(/\s+/);
  const asIndex = words.findIndex((word) => word.toUpperCase() === 'AS');
  return { image: words[0]!, name: asIndex >= 0 ? words[asIndex + 1] : undefined, stage: item.stage };
});
const finalStage = fromLines.length - 1;
const ignorePatterns = readFileSync(path.join(root, '.dockerignore'), 'utf8').split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'));
const packageJson = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };

describe('Dockerfile', () => {
  test('is multi-stage and every stage builds on node:20-slim', () => {
    expect(fromLines.length).toBeGreaterThanOrEqual(2);
    const stageNames = new Set(fromLines.map((line) => line.name).filter(Boolean));
    for (const line of fromLines) {
      expect(stageNames.has(line.image) || line.image === 'node:20-slim').toBe(true);
    }
    expect(fromLines[0]!.image).toBe('node:20-slim');
  });

  test('every path it copies from the build context exists and is not dockerignored', () => {
    const copies = instructions.filter((item) => item.keyword === 'COPY' || item.keyword === 'ADD');
    const fromContext = copies.map((item) => parseCopy(item.argument)).filter((copy) => !copy.flags.has('from'));
    expect(fromContext.length).toBeGreaterThan(0);
    const problems: string[] = [];
    for (const copy of fromContext) {
      for (const source of copy.sources) {
        const relative = path.posix.normalize(source).replace(/^\.\//, '').replace(/\/$/, '');
        if (!existsSync(path.join(root, relative))) problems.push(`${source} does not exist`);
        else if (isDockerignored(relative, ignorePatterns)) problems.push(`${source} is excluded by .dockerignore`);
      }
    }
    expect(problems).toEqual([]);
  });

  test('copies from earlier stages name a stage that exists', () => {
    const stageNames = fromLines.map((line) => line.name);
    const fromStages = instructions.filter((item) => item.keyword === 'COPY').map((item) => parseCopy(item.argument).flags.get('from')).filter((name): name is string => name !== undefined);
    expect(fromStages.length).toBeGreaterThan(0);
    for (const name of fromStages) expect(stageNames).toContain(name);
  });

  test('copies package.json, package-lock.json and the project .npmrc before npm ci', () => {
    const ciIndex = instructions.findIndex((item) => item.keyword === 'RUN' && /\bnpm ci\b/.test(item.argument));
    expect(ciIndex).toBeGreaterThan(-1);
    const copiedBefore = instructions.slice(0, ciIndex).filter((item) => item.keyword === 'COPY' && item.stage === instructions[ciIndex]!.stage).flatMap((item) => parseCopy(item.argument).sources.map((source) => source.replace(/^\.\//, '')));
    expect(copiedBefore).toEqual(expect.arrayContaining(['package.json', 'package-lock.json', '.npmrc']));
    expect(existsSync(path.join(root, '.npmrc'))).toBe(true);
  });

  test('the runtime stage includes the shipped model and the code the start script runs', () => {
    const runtimeSources = instructions.filter((item) => item.keyword === 'COPY' && item.stage === finalStage).map((item) => parseCopy(item.argument)).filter((copy) => !copy.flags.has('from')).flatMap((copy) => copy.sources.map((source) => source.replace(/^\.\//, '').replace(/\/$/, '')));
    const covers = (file: string): boolean => runtimeSources.some((source) => file === source || file.startsWith(`${source}/`));
    expect(covers('models/imagine-shapes')).toBe(true);
    const entry = packageJson.scripts.start!.split(/\s+/).find((word) => word.endsWith('.ts'));
    expect(entry).toBeDefined();
    expect(covers(entry!)).toBe(true);
    expect(covers('package.json')).toBe(true);
  });

  test('runs as a non-root user', () => {
    const users = instructions.filter((item) => item.keyword === 'USER' && item.stage === finalStage);
    expect(users.length).toBeGreaterThan(0);
    const user = users.at(-1)!.argument.split(':')[0]!.trim();
    expect(['root', '0', '']).not.toContain(user);
    const userIndex = instructions.indexOf(users.at(-1)!);
    const cmdIndex = instructions.findIndex((item) => item.keyword === 'CMD' && item.stage === finalStage);
    expect(userIndex).toBeLessThan(cmdIndex);
  });

  test('has a HEALTHCHECK that probes /healthz', () => {
    const checks = instructions.filter((item) => item.keyword === 'HEALTHCHECK' && item.stage === finalStage);
    expect(checks).toHaveLength(1);
    const argument = checks[0]!.argument;
    const command = argument.slice(argument.indexOf('CMD') + 3).trim();
    const words = command.startsWith('[') ? execForm(command) : [command];
    expect(words.join(' ')).toContain('/healthz');
  });

  test("its command is the package's start script", () => {
    const commands = instructions.filter((item) => item.keyword === 'CMD' && item.stage === finalStage);
    expect(commands).toHaveLength(1);
    const words = execForm(commands[0]!.argument);
    const startScript = packageJson.scripts.start!.trim().split(/\s+/);
    const isNpmStart = words.join(' ') === 'npm start' || words.join(' ') === 'npm run start';
    expect(isNpmStart || JSON.stringify(words) === JSON.stringify(startScript)).toBe(true);
    expect(instructions.some((item) => item.keyword === 'ENTRYPOINT' && item.stage === finalStage)).toBe(false);
  });

  test("the README's GPU build instruction names the Dockerfile's build argument", () => {
    const buildArgs = instructions.filter((item) => item.keyword === 'ARG' && item.stage >= 0).map((item) => item.argument.split('=')[0]!.trim());
    expect(buildArgs).toContain('ONNXRUNTIME_NODE_INSTALL');
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    expect(readme).toContain('--build-arg ONNXRUNTIME_NODE_INSTALL=cuda12');
  });

  test('the check of ignored paths itself works', () => {
    expect(isDockerignored('node_modules', ignorePatterns)).toBe(true);
    expect(isDockerignored('test/docker.test.ts', ignorePatterns)).toBe(true);
    expect(isDockerignored('adapters/main.ts', ignorePatterns)).toBe(false);
    expect(isDockerignored('models/imagine-shapes', ignorePatterns)).toBe(false);
    expect(isDockerignored('.npmrc', ignorePatterns)).toBe(false);
  });
});
