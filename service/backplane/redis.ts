import type { Logger } from 'pino';
import {
  BackplaneUnavailableError,
  type Backplane,
  type BackplaneState,
  type BackplaneStatus,
  type FrameHandler,
  type Target,
} from './types';

/** Options shared by the standalone and cluster Redis backplanes. */
export interface RedisBackplaneOptions {
  /** `redis://` or `rediss://` URL (TLS for rediss); may carry a password. */
  url: string;
  /** AUTH token, used only when the URL carries no password. */
  authToken?: string;
  /** PEM file with the CA that signed the server certificate (rediss only). */
  tlsCaFile?: string;
  /** Prefix of every channel; isolates apps sharing one Redis. */
  channelPrefix: string;
  /** This instance's id; envelopes tagged with it are dropped on receipt. */
  instanceId: string;
  logger: Logger;
}

/** Skeleton; the real implementation follows. */
export class RedisBackplane implements Backplane {
  readonly kind = 'redis' as const;
  private state: BackplaneState = 'connecting';
  constructor(private readonly opts: RedisBackplaneOptions) {}
  async start(): Promise<void> {
    throw new BackplaneUnavailableError('redis backplane not implemented yet');
  }
  async publish(_target: Target, _frame: Buffer): Promise<void> {
    throw new BackplaneUnavailableError();
  }
  async subscribe(_room: string): Promise<void> {}
  async unsubscribe(_room: string): Promise<void> {}
  onFrame(_handler: FrameHandler): void {}
  onStateChange(_listener: (status: BackplaneStatus) => void): void {}
  status(): BackplaneStatus {
    return { kind: this.kind, state: this.state };
  }
  async close(): Promise<void> {
    this.state = 'closed';
  }
}
