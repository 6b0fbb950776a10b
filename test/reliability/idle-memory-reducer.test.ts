/**
 * An instance gives its young generation back once a burst is over (service/memory-reducer.ts): 3,000 connections
 * open and join (V8 grows the young generation while their state lives on), then sit idle; the relay — started with
 * the Procfile's node flags, as deployed — runs one memory-reducing collection and its young generation and RSS
 * shrink, while every connection stays open.
 */
import { MB, joinAll, metricValue, rssBytes, watchCloses } from '../helpers/load';
import { useClients, useRelays } from '../helpers/fixtures';

jest.setTimeout(120_000);

const CONNECTIONS = 3_000;
const relays = useRelays();
const clients = useClients();

test('after a burst of connections, an idle relay gives its young generation back and keeps every connection', async () => {
  const relay = await relays.start({ REDIS_URL: '' });
  const opened = await clients.connectMany(relay, CONNECTIONS);
  const closes = watchCloses(opened);
  await joinAll(opened, 'burst');
  const peakRss = rssBytes(relay.proc.pid as number);

  const record = await relay.waitLog((r) => r.msg === 'idle: young generation given back', 30_000);
  const before = Number(record.youngBytesBefore);
  const after = Number(record.youngBytesAfter);
  expect(before).toBeGreaterThan(8 * MB);
  expect(after).toBeLessThanOrEqual(2 * MB);
  // The heap statistics /metrics reports agree, and the pages left the process.
  expect(await metricValue(relay.metricsUrl, 'nodejs_heap_space_size_total_bytes{space="new"}')).toBeLessThanOrEqual(2 * MB);
  expect(rssBytes(relay.proc.pid as number)).toBeLessThan(peakRss - (before - after) / 2);

  // Every connection is still there and still served.
  expect(closes.closes).toEqual([]);
  expect(await metricValue(relay.metricsUrl, 'relay_connections')).toBe(CONNECTIONS);
  const reply = await opened[CONNECTIONS - 1].request({ type: 'ping', id: 'after' }, 10_000);
  expect(reply).toMatchObject({ type: 'pong', id: 'after' });
});
