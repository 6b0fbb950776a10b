/**
 * The state of one member's join of one room, as an explicit state machine:
 *
 *   reading   — the history is being read; live frames for this member are held in order.
 *   filtering — acked at `floor`; live frames at or before it are skipped (the member has them, or resynchronises
 *               past them) until the first newer frame shows the subscription caught up.
 *   (live)    — the state is dropped and the member gets every frame.
 *
 * The subscription and the history read use different Redis connections, so a frame published before the read can
 * be received after its reply: `filtering` is what keeps those from being delivered twice.
 */
import type { FramePosition } from '../backplane/types';

/** A live frame held for a member while its join reads the room's history. */
export interface HeldFrame {
  readonly frame: Buffer;
  readonly position: FramePosition | undefined;
}

/** What to do with a live frame for a member that has a join state. */
export type Route = 'hold' | 'skip' | 'deliver' | 'overflow';

export class JoinState {
  phase: 'reading' | 'filtering' = 'reading';
  readonly held: HeldFrame[] = [];
  private heldBytes = 0;
  /** The position the join acked (filtering only). */
  floor: FramePosition | undefined;

  /** @param maxHeldBytes bytes held while reading before the member counts as a slow consumer */
  constructor(private readonly maxHeldBytes: number) {}

  /** Routes one live frame; 'deliver' also ends the state (the caller drops it), 'overflow' means too much was held. */
  route(frame: Buffer, position: FramePosition | undefined): Route {
    if (this.phase === 'reading') {
      this.held.push({ frame, position });
      this.heldBytes += frame.length;
      return this.heldBytes > this.maxHeldBytes ? 'overflow' : 'hold';
    }
    return this.covers(position) ? 'skip' : 'deliver';
  }

  /** The read is done: acked at `floor` (undefined when the position is unknown). Returns the held frames to send. */
  acked(floor: FramePosition | undefined): HeldFrame[] {
    this.phase = 'filtering';
    this.floor = floor;
    const out = this.held.filter((h) => !this.covers(h.position));
    this.held.length = 0;
    this.heldBytes = 0;
    return out;
  }

  /** Whether a frame is at or before the acked position (same epoch). */
  covers(position: FramePosition | undefined): boolean {
    const floor = this.floor;
    return floor !== undefined && position !== undefined && position.epoch === floor.epoch && position.seq <= floor.seq;
  }
}

/** Whether `a` comes right after `b` in one epoch, is already covered by it, or neither (a gap or another epoch). */
export function compare(next: FramePosition, last: FramePosition): 'next' | 'old' | 'gap' | 'epoch' {
  if (next.epoch !== last.epoch) return 'epoch';
  if (next.seq <= last.seq) return 'old';
  return next.seq === last.seq + 1 ? 'next' : 'gap';
}
