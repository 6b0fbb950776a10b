/**
 * The server API between instances (docs/protocol.md, "Server API"): requests that concern connections on any
 * instance travel as JSON control messages on the control channel, which every instance subscribes to. A user
 * publish is delivered by each instance to its own connections of that user; a disconnect or a member count is
 * answered by each instance with a reply on the same channel, and the asking instance sums the replies that arrive
 * within a short window. Starting a room's presence asks the same way: each instance records its members of the room
 * and replies once they are stored.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { Backplane, Once, PresenceList } from '../backplane/types';

/** How long the asking instance collects replies to a disconnect or a member count. */
export const GATHER_WINDOW_MS = 250;

/** What the control messages act on: this instance's connections (the hub). */
export interface LocalConnections {
  deliverToUser(user: string, frame: string): number;
  disconnect(target: { readonly user: string } | { readonly connectionId: string }): number;
  roomMembers(room: string): number;
  /** Records this instance's members of `room` in presence (it is tracked from now on); resolves with how many once stored. */
  recordPresence(room: string): Promise<number>;
  /** The room's presence on every instance (starting to track it if nobody had asked yet). */
  listPresence(room: string, limit: number): Promise<PresenceList>;
}

type Question =
  | { readonly op: 'disconnect'; readonly user?: string; readonly connectionId?: string }
  | { readonly op: 'count'; readonly room: string }
  | { readonly op: 'track'; readonly room: string };

type ControlMessage =
  | { readonly op: 'user'; readonly user: string; readonly frame: string }
  | (Question & { readonly req: string; readonly origin: string })
  | { readonly op: 'reply'; readonly req: string; readonly to: string; readonly n: number };

/** The sum of the replies that arrived in the window, and how many instances sent one. */
export interface Gathered {
  readonly total: number;
  readonly instances: number;
}

interface Pending {
  total: number;
  instances: number;
  readonly timer: NodeJS.Timeout;
  readonly resolve: (g: Gathered) => void;
}

export class ServerControl {
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly backplane: Backplane,
    private readonly local: LocalConnections,
    private readonly instanceId: string,
    private readonly logger: Logger,
    private readonly windowMs = GATHER_WINDOW_MS,
  ) {
    backplane.onControl((message) => this.receive(message));
  }

  /** Publishes a frame to every connection of `user` on every instance; false for a repeated idempotency key. */
  publishToUser(user: string, frame: string, once: Once | undefined): Promise<boolean> {
    return this.backplane.publishControl(encode({ op: 'user', user, frame }), once);
  }

  /** Closes the matching connections on every instance; resolves with the sum of what the instances closed. */
  disconnect(target: { readonly user: string } | { readonly connectionId: string }): Promise<Gathered> {
    return this.ask({ op: 'disconnect', ...target });
  }

  /** Members of `room` summed over the instances that answer within the window. */
  countMembers(room: string): Promise<Gathered> {
    return this.ask({ op: 'count', room });
  }

  /** Asks every instance to record its members of `room` in presence; resolves with how many were, once the window closes. */
  trackPresence(room: string): Promise<Gathered> {
    return this.ask({ op: 'track', room });
  }

  /** The room's presence (GET /api/rooms/<room>?members=1): every instance's members, the count exact. */
  listPresence(room: string, limit: number): Promise<PresenceList> {
    return this.local.listPresence(room, limit);
  }

  /** Resolves the questions in flight with what they have (shutdown). */
  stop(): void {
    for (const [req, p] of this.pending) this.finish(req, p);
  }

  private async ask(question: Question): Promise<Gathered> {
    const req = randomBytes(9).toString('base64url');
    const gathered = new Promise<Gathered>((resolve) => {
      const timer = setTimeout(() => this.finish(req, this.pending.get(req)), this.windowMs);
      timer.unref();
      this.pending.set(req, { total: 0, instances: 0, timer, resolve });
    });
    try {
      await this.backplane.publishControl(encode({ ...question, req, origin: this.instanceId }));
    } catch (err) {
      const p = this.pending.get(req);
      if (p !== undefined) clearTimeout(p.timer);
      this.pending.delete(req);
      throw err;
    }
    return gathered;
  }

  private finish(req: string, p: Pending | undefined): void {
    if (p === undefined) return;
    clearTimeout(p.timer);
    this.pending.delete(req);
    p.resolve({ total: p.total, instances: p.instances });
  }

  private receive(raw: Buffer): void {
    let msg: ControlMessage;
    try {
      msg = JSON.parse(raw.toString('utf8')) as ControlMessage;
    } catch (err) {
      this.logger.warn({ err }, 'dropped a control message that is not JSON');
      return;
    }
    switch (msg.op) {
      case 'user':
        this.local.deliverToUser(msg.user, msg.frame);
        return;
      case 'disconnect': {
        const n =
          msg.user !== undefined ? this.local.disconnect({ user: msg.user }) : msg.connectionId !== undefined ? this.local.disconnect({ connectionId: msg.connectionId }) : 0;
        this.reply(msg.req, msg.origin, n);
        return;
      }
      case 'count':
        this.reply(msg.req, msg.origin, this.local.roomMembers(msg.room));
        return;
      case 'track': {
        const { req, origin } = msg;
        // Never rejects: a failed store is logged by presence and retried with its next refresh.
        void this.local.recordPresence(msg.room).then((n) => this.reply(req, origin, n));
        return;
      }
      case 'reply': {
        if (msg.to !== this.instanceId) return;
        const p = this.pending.get(msg.req);
        if (p === undefined) return;
        p.total += msg.n;
        p.instances++;
        // A single instance has nobody else to wait for.
        if (this.backplane.kind === 'memory') this.finish(msg.req, p);
        return;
      }
    }
  }

  private reply(req: string, to: string, n: number): void {
    this.backplane.publishControl(encode({ op: 'reply', req, to, n })).catch((err: unknown) => {
      this.logger.warn({ err }, 'control reply failed');
    });
  }
}

function encode(msg: ControlMessage): Buffer {
  return Buffer.from(JSON.stringify(msg), 'utf8');
}
