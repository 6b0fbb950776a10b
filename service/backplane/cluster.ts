import type { Logger } from 'pino';
import {
  BackplaneUnavailableError,
  type Backplane,
  type BackplaneState,
  type BackplaneStatus,
  type FrameHandler,
  type Target,
} from './types';
import type { RedisBackplaneOptions } from './redis';

/** Skeleton; the real implementation follows. */
export class ClusterBackplane implements Backplane {
  readonly kind = 'cluster' as const;
  private state: BackplaneState = 'connecting';
  constructor(private readonly opts: RedisBackplaneOptions) {}
  async start(): Promise<void> {
    throw new BackplaneUnavailableError('cluster backplane not implemented yet');
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
