/**
 * The heartbeat's passes: one timer for every connection, each tick visiting a slice of them. A pass starts every
 * `slices` ticks, whatever the number of connections, so a connection is visited once per interval and not more
 * often when there are fewer connections than slices.
 */

/** What the heartbeat keeps on a connection. */
export interface HeartbeatMember {
  /** Index in the current pass, so a closed connection's entry is cleared at once; -1 when not in it. */
  heartbeatSlot: number;
}

export interface HeartbeatPassesOptions<T> {
  /** Ticks per pass: a new pass starts every this many ticks. */
  readonly slices: number;
  /** The connections open now; a pass takes a snapshot of them when it starts. */
  readonly members: () => Iterable<T>;
  /** Called once per pass for every connection of the pass still open when its slice comes. */
  readonly visit: (member: T) => void;
}

export class HeartbeatPasses<T extends HeartbeatMember> {
  /**
   * The connections of the current pass. A snapshot, not a live Set iterator: V8 keeps a Set's old tables (and every
   * connection in them) alive for as long as an iterator over it lives.
   */
  private pass: (T | undefined)[] = [];
  /** Where the pass continues. */
  private next = 0;
  /** Ticks since the current pass started; the next pass starts when it comes back to 0. */
  private ticksIntoPass = 0;

  constructor(private readonly opts: HeartbeatPassesOptions<T>) {}

  /** One tick: starts a pass every `slices` ticks and visits the next ceil(n / slices) connections of the pass. */
  tick(): void {
    const { slices, members, visit } = this.opts;
    if (this.ticksIntoPass === 0) {
      // ceil(n / slices) a tick covers the whole pass in `slices` ticks: nothing of the previous one is left.
      const pass = [...members()];
      pass.forEach((member, i) => (member.heartbeatSlot = i));
      this.pass = pass;
      this.next = 0;
    }
    this.ticksIntoPass = (this.ticksIntoPass + 1) % slices;
    const end = Math.min(this.pass.length, this.next + Math.ceil(this.pass.length / slices));
    for (; this.next < end; this.next++) {
      const member = this.pass[this.next];
      if (!member) continue;
      this.pass[this.next] = undefined;
      member.heartbeatSlot = -1;
      visit(member);
    }
  }

  /** A connection closed: its entry in the pass is cleared so the snapshot does not keep it alive. */
  remove(member: T): void {
    if (member.heartbeatSlot >= 0 && this.pass[member.heartbeatSlot] === member) this.pass[member.heartbeatSlot] = undefined;
    member.heartbeatSlot = -1;
  }
}
