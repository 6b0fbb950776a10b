/** Watching a backplane from a test: what it hands to the hub and which states it reports. */
import type { Backplane, BackplaneState, Target } from '../../service/backplane/types';
import { waitUntil } from './redis-server';

/** Records every frame a backplane hands to the hub, and every state it reports. */
export function observe(bp: Backplane) {
  const frames: Array<{ target: Target; text: string }> = [];
  const states: BackplaneState[] = [];
  bp.onFrame((target, frame) => frames.push({ target, text: frame.toString() }));
  bp.onStateChange((status) => states.push(status.state));
  return {
    frames,
    states,
    texts: () => frames.map((f) => f.text),
    waitFrames: (n: number, ms = 10_000) => waitUntil(() => frames.length >= n, ms, `${n} frames (got ${frames.length})`),
  };
}

/** Waits until the backplane reports `state`. */
export function waitState(bp: Backplane, state: BackplaneState, ms = 10_000): Promise<void> {
  return waitUntil(() => bp.status().state === state, ms, `backplane state ${state} (is ${bp.status().state})`);
}
