/** The idle memory reducer's decision (service/memory-reducer.ts), with the event loop and heap readings given. */
import type { EventLoopUtilization } from 'node:perf_hooks';
import { exposedCollector, startMemoryReducer, youngGenerationBytes, type MemoryReducer } from '../../service/memory-reducer';

const MiB = 1024 * 1024;

/** A reducer whose readings the test sets: utilisation per check and the young generation's size. */
function rig(opts: { young: number; spacingMs?: number }) {
  const state = { utilization: 0, young: opts.young, collections: 0 };
  const reports: Array<{ beforeBytes: number; afterBytes: number }> = [];
  const reading = (): EventLoopUtilization => ({ idle: 0, active: 0, utilization: state.utilization });
  const reducer = startMemoryReducer({
    checkIntervalMs: 3_600_000,
    idleUtilization: 0.05,
    idleChecks: 3,
    minYoungBytes: 8 * MiB,
    minSpacingMs: opts.spacingMs ?? 10_000,
    utilization: reading,
    youngBytes: () => state.young,
    collect: () => {
      state.collections++;
      state.young = 1 * MiB;
    },
    onReduce: (r) => reports.push(r),
  }) as MemoryReducer;
  return { state, reports, reducer };
}

const reducers: MemoryReducer[] = [];
afterEach(() => {
  for (const r of reducers.splice(0)) r.stop();
});

test('collects once the event loop was idle for three checks and the young generation is large', () => {
  const { state, reports, reducer } = rig({ young: 32 * MiB });
  reducers.push(reducer);
  expect(reducer.check(1_000)).toBe(false);
  expect(reducer.check(2_000)).toBe(false);
  expect(reducer.check(3_000)).toBe(true);
  expect(state.collections).toBe(1);
  expect(reports).toHaveLength(1);
  expect(reports[0]).toMatchObject({ beforeBytes: 32 * MiB, afterBytes: 1 * MiB });
  // Small again: further idle checks collect nothing.
  for (let t = 4_000; t < 30_000; t += 1_000) expect(reducer.check(t)).toBe(false);
  expect(state.collections).toBe(1);
});

test('a busy check starts the idle count again', () => {
  const { state, reducer } = rig({ young: 32 * MiB });
  reducers.push(reducer);
  reducer.check(1_000);
  reducer.check(2_000);
  state.utilization = 0.4;
  expect(reducer.check(3_000)).toBe(false);
  state.utilization = 0.01;
  expect(reducer.check(4_000)).toBe(false);
  expect(reducer.check(5_000)).toBe(false);
  expect(reducer.check(6_000)).toBe(true);
});

test('never collects while busy, nor when the young generation is already small', () => {
  const busy = rig({ young: 32 * MiB });
  reducers.push(busy.reducer);
  busy.state.utilization = 0.5;
  for (let t = 1_000; t <= 20_000; t += 1_000) expect(busy.reducer.check(t)).toBe(false);
  const small = rig({ young: 8 * MiB });
  reducers.push(small.reducer);
  for (let t = 1_000; t <= 20_000; t += 1_000) expect(small.reducer.check(t)).toBe(false);
  expect(busy.state.collections + small.state.collections).toBe(0);
});

test('a young generation that grows back is collected again only after the spacing', () => {
  const { state, reducer } = rig({ young: 32 * MiB, spacingMs: 10_000 });
  reducers.push(reducer);
  for (let t = 1_000; t <= 3_000; t += 1_000) reducer.check(t);
  expect(state.collections).toBe(1);
  state.young = 32 * MiB;
  for (let t = 4_000; t < 13_000; t += 1_000) expect(reducer.check(t)).toBe(false);
  expect(reducer.check(13_000)).toBe(true);
  expect(state.collections).toBe(2);
});

test('without --expose-gc there is nothing to collect with, and it says so by not starting', () => {
  // Jest runs without --expose-gc.
  expect(typeof globalThis.gc).toBe('undefined');
  expect(exposedCollector()).toBeNull();
  expect(startMemoryReducer()).toBeNull();
  expect(youngGenerationBytes()).toBeGreaterThan(0);
});
