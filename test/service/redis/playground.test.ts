/**
 * What a user sees when a GPU worker dies mid-job in QUEUE=redis, through a real adapter: the web
 * playground on the Redis service, its live event stream, and two worker processes of which the
 * one drawing is killed.
 */
import { startPlayground, type RunningPlayground } from '../../../adapters/playground/index.js';
import { retryingText } from '../../../commands/messages.js';
import { clientId, EventStream, postJson } from '../../adapters/playground/harness.js';
import { Deployment, redisAvailable } from './harness.js';

const redisUp = await redisAvailable();
if (!redisUp) console.warn('Skipping the QUEUE=redis playground test: no Redis answers on 127.0.0.1:6379.');

(redisUp ? describe : describe.skip)('the playground over QUEUE=redis', () => {
  let scene: Deployment | undefined;
  let playground: RunningPlayground | undefined;
  let events: EventStream | undefined;

  afterEach(async () => {
    await events?.close();
    await playground?.close();
    await scene?.cleanup();
  });

  test('a worker killed mid-job: the page shows the retry notice, then the grid', async () => {
    scene = new Deployment('playground');
    const workers = [0, 1].map(() => scene!.spawn('worker-process.ts', { STEPS: '20', STEP_MS: '100' }));
    await Promise.all(workers.map((worker) => worker.waitFor((message) => message.type === 'ready', 'a worker', 60_000)));
    const config = scene.config({ port: 0, host: '127.0.0.1' });
    const service = await scene.bot({ config });
    playground = await startPlayground({ config, service, servePage: true, capabilities: service.capabilities });
    const client = clientId();
    events = await EventStream.open(playground.url, client);

    const response = await postJson(`${playground.url}/api/command`, { text: '/imagine a circle that survives', client });
    const reply = (await response.json()) as { kind: string; job: { id: string } };
    expect(reply.kind).toBe('job');
    const jobId = reply.job.id;
    const holder = await Promise.race(workers.map((worker) => worker.waitFor((message) => message.type === 'call', 'the engine call').then(() => worker)));
    await events.next((event) => event.jobId === jobId && event.type === 'progress', 30_000);
    holder.kill('SIGKILL');

    const retrying = await events.next((event) => event.jobId === jobId && event.type === 'retrying', 30_000);
    expect(retrying.text).toBe(retryingText(1));
    const completed = await events.next((event) => event.jobId === jobId && event.type === 'completed', 30_000);
    expect(completed.type).toBe('completed');
    const types = events.forJob(jobId).map((event) => event.type);
    expect(types.indexOf('retrying')).toBeLessThan(types.indexOf('completed'));
    expect(types).not.toContain('failed');
    if (completed.type === 'completed') expect((await fetch(`${playground.url}${completed.imageUrl}`)).status).toBe(200);
  });
});
