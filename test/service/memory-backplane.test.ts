/** The in-memory backplane's own contract, without sockets: extra channels loop back to this instance. */
import { expect } from '@jest/globals';
import pino from 'pino';
import { MemoryBackplane } from '../../service/backplane/memory';
import { ROOM_OVERHEAD_BYTES } from '../../service/backplane/memory-history';
import { BackplaneUnavailableError, extraChannel, roomExtraChannel } from '../../service/backplane/types';
import { waitUntil } from '../helpers/redis-server';

describe('MemoryBackplane extra channels', () => {
  it('hands a publish back to the listener after the publisher returns, and rejects while not ready', async () => {
    const bp = new MemoryBackplane(undefined, pino({ level: 'silent' }));
    const got: string[] = [];
    await bp.listen(extraChannel('p', 'sync'), (m) => got.push(m.toString()));
    await expect(bp.publishRaw(extraChannel('p', 'sync'), Buffer.from('early'))).rejects.toBeInstanceOf(BackplaneUnavailableError);
    await bp.start();
    const published = bp.publishRaw(extraChannel('p', 'sync'), Buffer.from('hello'));
    expect(got).toEqual([]);
    await published;
    await waitUntil(() => got.length === 1, 1_000, 'the looped-back message');
    expect(got).toEqual(['hello']);
    // A channel nobody listens to, and one unlistened, go nowhere.
    await bp.publishRaw(roomExtraChannel('p', 'presence', 'r'), Buffer.from('nobody'));
    await bp.unlisten(extraChannel('p', 'sync'));
    await bp.publishRaw(extraChannel('p', 'sync'), Buffer.from('gone'));
    await new Promise<void>((resolve) => queueMicrotask(resolve));
    expect(got).toEqual(['hello']);
    await bp.close();
    await expect(bp.publishRaw(extraChannel('p', 'sync'), Buffer.from('closed'))).rejects.toThrow('the in-memory backplane is closed');
  });
});

describe('MemoryBackplane history budgets', () => {
  const frame = (n: number, size: number) => Buffer.from(JSON.stringify({ type: 'message', room: 'r', data: String(n).padEnd(size, '.') }));

  it('keeps at most RELAY_HISTORY_MAX_BYTES per room: older gaps are answered trimmed, newer ones replayed whole', async () => {
    const bp = new MemoryBackplane({ size: 1000, ttlSeconds: 300, replayMax: 1000, maxBytes: 2000 });
    await bp.start();
    for (let n = 1; n <= 20; n++) await bp.append('r', frame(n, 300));
    const { epoch } = (await bp.readHistory('r', undefined)).position;
    expect((await bp.readHistory('r', { seq: '0', epoch })).outcome).toBe('trimmed');
    const kept = await bp.readHistory('r', { seq: '15', epoch });
    expect(kept.outcome).toBe('ok');
    expect(kept.frames.map((f) => (JSON.parse(f.toString()) as { seq: string }).seq)).toEqual(['16', '17', '18', '19', '20']);
    // Five numbered frames of about 370 bytes fit 2000 bytes; a sixth would not.
    expect(kept.frames.reduce((sum, f) => sum + f.length, 0)).toBeLessThanOrEqual(2000);
    expect((await bp.readHistory('r', { seq: '14', epoch })).outcome).toBe('trimmed');
    expect(bp.historyStats()).toMatchObject({ rooms: 1, evicted: 0 });
    expect(bp.historyStats().bytes).toBeLessThanOrEqual(2000 + ROOM_OVERHEAD_BYTES + 1);
    await bp.close();
  });

  it('drops the least recently used rooms past RELAY_HISTORY_MEMORY_MAX_BYTES; a dropped room restarts its epoch, others replay whole', async () => {
    const cap = 64 * 1024;
    const bp = new MemoryBackplane({ size: 1000, ttlSeconds: 300, replayMax: 1000, maxBytes: 8192 }, undefined, cap);
    await bp.start();
    for (let n = 1; n <= 3; n++) await bp.append('old', frame(n, 100));
    for (let n = 1; n <= 3; n++) await bp.append('busy', frame(n, 100));
    const old = (await bp.readHistory('old', undefined)).position;
    // A flood of fresh rooms with large frames; 'busy' stays in use meanwhile.
    for (let i = 0; i < 500; i++) {
      await bp.append(`fresh-${i}`, frame(i, 4000));
      if (i % 10 === 0) await bp.readHistory('busy', undefined);
      expect(bp.historyStats().bytes).toBeLessThanOrEqual(cap);
    }
    expect(bp.historyStats().evicted).toBeGreaterThan(400);
    const busy = await bp.readHistory('busy', { seq: '0', epoch: (await bp.readHistory('busy', undefined)).position.epoch });
    expect(busy.outcome).toBe('ok');
    expect(busy.frames).toHaveLength(3);
    // The evicted room: a new epoch at seq 0, so a resuming client is told recovered:false, never replayed with holes.
    const resumed = await bp.readHistory('old', { seq: '3', epoch: old.epoch });
    expect(resumed.outcome).toBe('epoch');
    expect(resumed.position.seq).toBe('0');
    expect(resumed.position.epoch).not.toBe(old.epoch);
    await bp.close();
  });
});
