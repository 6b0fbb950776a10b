/** The in-memory backplane's own contract, without sockets: extra channels loop back to this instance. */
import { expect } from '@jest/globals';
import pino from 'pino';
import { MemoryBackplane } from '../../service/backplane/memory';
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
