import {
  BackplaneUnavailableError,
  type Backplane,
  type BackplaneState,
  type BackplaneStatus,
  type FrameHandler,
  type Target,
} from './types';

/**
 * The single-instance backplane: there are no other instances, so publish has nobody to reach
 * (the hub already delivered locally) and no frames ever arrive.
 */
export class MemoryBackplane implements Backplane {
  readonly kind = 'memory' as const;
  private state: BackplaneState = 'connecting';
  private readonly listeners = new Set<(status: BackplaneStatus) => void>();

  async start(): Promise<void> {
    this.setState('ready');
  }

  async publish(_target: Target, _frame: Buffer): Promise<void> {
    if (this.state !== 'ready') throw new BackplaneUnavailableError(`the in-memory backplane is ${this.state}`);
  }

  async subscribe(_room: string): Promise<void> {}

  async unsubscribe(_room: string): Promise<void> {}

  onFrame(_handler: FrameHandler): void {}

  onStateChange(listener: (status: BackplaneStatus) => void): void {
    this.listeners.add(listener);
  }

  status(): BackplaneStatus {
    return { kind: this.kind, state: this.state };
  }

  async close(): Promise<void> {
    this.setState('closed');
    this.listeners.clear();
  }

  private setState(state: BackplaneState): void {
    if (this.state === state) return;
    this.state = state;
    for (const l of this.listeners) l(this.status());
  }
}
