/**
 * The gate on history reads with frames (service/backplane/read-gate.ts): a few in flight, the rest in arrival order,
 * and a bounded wait. Without it, 16 joins over their replay budget put 16 pages (~16 MB) ahead of a reader's read on
 * the one Redis connection, its 2 s bound ran out under load, and the join was answered as if Redis were down.
 */
import { ReadGate } from '../../service/backplane/read-gate';
import { BackplaneUnavailableError } from '../../service/backplane/types';

/** A read that settles when the test says so. */
interface Pending {
  readonly result: Promise<string>;
  finish(): void;
  fail(err: Error): void;
}

/** Sends `name` through the gate, recording when it starts; it finishes only when the test calls finish(). */
function start(gate: ReadGate, name: string, started: string[]): Pending {
  let finish: (() => void) | undefined;
  let fail: ((err: Error) => void) | undefined;
  const result = gate.run(
    () =>
      new Promise<string>((resolve, reject) => {
        started.push(name);
        finish = () => resolve(name);
        fail = reject;
      }),
  );
  const notStarted = (what: string): never => {
    throw new Error(`read ${name} cannot ${what}: it has not started`);
  };
  return { result, finish: () => (finish ?? notStarted('finish'))(), fail: (err) => (fail ?? notStarted('fail'))(err) };
}

/** Lets the gate hand a freed slot on (a few microtask turns, no timer). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

describe('ReadGate', () => {
  it('runs at most `limit` reads at once and starts the others in arrival order as slots free', async () => {
    const gate = new ReadGate(2, 60_000);
    const started: string[] = [];
    const reads = ['a', 'b', 'c', 'd', 'e'].map((name) => start(gate, name, started));
    await settle();
    expect(started).toEqual(['a', 'b']);
    expect([gate.inFlight, gate.waiting]).toEqual([2, 3]);

    reads[1].finish();
    await expect(reads[1].result).resolves.toBe('b');
    await settle();
    expect(started).toEqual(['a', 'b', 'c']);
    expect([gate.inFlight, gate.waiting]).toEqual([2, 2]);

    // A read that fails frees its slot as well.
    reads[0].fail(new Error('no reply within 2000 ms'));
    await expect(reads[0].result).rejects.toThrow('no reply within 2000 ms');
    await settle();
    expect(started).toEqual(['a', 'b', 'c', 'd']);

    reads[2].finish();
    reads[3].finish();
    await Promise.all([reads[2].result, reads[3].result]);
    await settle();
    expect(started).toEqual(['a', 'b', 'c', 'd', 'e']);
    reads[4].finish();
    await expect(reads[4].result).resolves.toBe('e');
    expect([gate.inFlight, gate.waiting]).toEqual([0, 0]);
  });

  it('refuses a read that waited longer than maxWaitMs as unavailable, and the reads behind it still run', async () => {
    const gate = new ReadGate(1, 50);
    const started: string[] = [];
    const first = start(gate, 'first', started);
    const late = start(gate, 'late', started);
    const err = await late.result.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackplaneUnavailableError);
    expect((err as Error).message).toBe('waited 50 ms for one of the 1 history reads in flight to finish (1 were ahead of this one); retry shortly');
    expect([gate.inFlight, gate.waiting]).toEqual([1, 0]);

    const next = start(gate, 'next', started);
    first.finish();
    await settle();
    expect(started).toEqual(['first', 'next']);
    next.finish();
    await expect(next.result).resolves.toBe('next');
    expect([gate.inFlight, gate.waiting]).toEqual([0, 0]);
  });

  it('fails when the limit is not a positive integer', () => {
    expect(() => new ReadGate(0)).toThrow('ReadGate limit must be an integer of at least 1; received 0');
  });
});
