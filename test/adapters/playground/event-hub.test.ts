import { EventHub } from '../../../adapters/playground/event-hub.js';
import { createHttpServer } from '../../../src/http/server.js';
import { EventStream } from './harness.js';

describe('EventHub', () => {
  test('sends tagged events to every stream of one client, survives disconnects, and ends streams on close', async () => {
    const hub = new EventHub({ heartbeatMs: 10 });
    const server = await createHttpServer({
      host: '127.0.0.1',
      port: 0,
      handlers: [(request, response, url) => {
        hub.connect(url.searchParams.get('client')!, request, response);
        return true;
      }],
    });
    try {
      const first = await EventStream.open(server.url, 'client-one');
      const second = await EventStream.open(server.url, 'client-one');
      const other = await EventStream.open(server.url, 'client-two');
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(hub.size).toBe(2);
      expect(hub.send('client-one', { type: 'failed', jobId: 'job1', text: 'no' })).toBe(2);
      await first.next((event) => event.jobId === 'job1');
      await second.next((event) => event.jobId === 'job1');
      expect(other.events).toEqual([]);
      expect(hub.send('nobody', { type: 'failed', jobId: 'job2', text: 'no' })).toBe(0);

      await first.close();
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(hub.send('client-one', { type: 'failed', jobId: 'job3', text: 'still here' })).toBe(1);
      await second.next((event) => event.jobId === 'job3');

      hub.close();
      expect(hub.size).toBe(0);
      expect(hub.send('client-two', { type: 'failed', jobId: 'job4', text: 'gone' })).toBe(0);
      await other.close();
      await second.close();
    } finally {
      hub.close();
      await server.close();
    }
  });
});
