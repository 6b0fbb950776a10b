/**
 * Bounds the history reads that can carry frames (a join's replay pages, a room's catch-up) in flight on one
 * backplane. They share the Redis connection with publishes and the ROLE check, and each page can be about 1 MB: 16
 * joins replaying at once put 16 MB ahead of every command sent after them, so a read's 2 s bound ran out while it
 * only waited for its turn (and the join was answered as if Redis were down). A read waits here, in order, for a slot;
 * its own timeout starts once it is sent, and a command sent meanwhile waits behind at most `limit` pages.
 */
import { BackplaneUnavailableError } from './types';

/** Reads with frames in flight per backplane: enough to keep the connection busy, few enough that ~4 MB is the most queued. */
export const REPLAY_READS_IN_FLIGHT = 4;
/** Longest a read waits for a slot before it fails as unavailable (the join is answered `reason: "unavailable"`). */
export const REPLAY_READ_WAIT_MS = 10_000;

export class ReadGate {
  #inFlight = 0;
  /** Reads waiting for a slot, oldest first; each is called with the slot handed over to it. */
  readonly #waiting: Array<() => void> = [];

  /**
   * @param limit reads in flight at once
   * @param maxWaitMs longest a read waits for a slot before it is refused with BackplaneUnavailableError
   */
  constructor(
    readonly limit: number = REPLAY_READS_IN_FLIGHT,
    readonly maxWaitMs: number = REPLAY_READ_WAIT_MS,
  ) {
    if (!Number.isInteger(limit) || limit < 1) throw new Error(`ReadGate limit must be an integer of at least 1; received ${limit}`);
  }

  /** Reads in flight now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Reads waiting for a slot now. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /** Runs `read` once a slot is free (at once when one is), in the order reads arrived; the slot is freed when it settles. */
  async run<T>(read: () => Promise<T>): Promise<T> {
    await this.#acquire();
    try {
      return await read();
    } finally {
      this.#release();
    }
  }

  #acquire(): Promise<void> {
    if (this.#inFlight < this.limit) {
      this.#inFlight++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const ahead = this.#inFlight + this.#waiting.length;
      const take = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        const at = this.#waiting.indexOf(take);
        if (at >= 0) this.#waiting.splice(at, 1);
        reject(new BackplaneUnavailableError(
          `waited ${this.maxWaitMs} ms for one of the ${this.limit} history reads in flight to finish (${ahead} were ahead of this one); retry shortly`,
        ));
      }, this.maxWaitMs);
      this.#waiting.push(take);
    });
  }

  #release(): void {
    const next = this.#waiting.shift();
    // The slot passes straight to the next read, so the count in flight never drops below the limit while reads wait.
    if (next === undefined) this.#inFlight--;
    else next();
  }
}
