/**
 * Join with recovery. A join subscribes the room, holds the member's live frames, reads the room's position (and
 * the gap after `since`), streams the replay with backpressure, acks, then releases the held frames newer than the
 * position: no gap, no duplicate, and a position in the ack that the frames after it continue from exactly.
 *
 * A join of a room the connection is already in is idempotent: without `since` it is acked with the position the
 * member has reached and its live stream is not touched; with `since` the gap is replayed as for a new member.
 */
import type { FramePosition, HistoryPosition, HistoryRead, RecoveryOutcome } from '../backplane/types';
import { encodeAck } from '../protocol';
import type { Core, Session } from './session';

/**
 * Why a join with `since` was answered recovered:false, sent as the ack's `reason` (docs/recovery.md lists what a
 * client does for each): the history's own verdicts, `budget`, `unavailable` when the history could not be read (the
 * backplane is down or did not answer in time: rejoin with the same `since` shortly), `disabled` when history is off.
 */
export type NotRecoveredReason = Exclude<RecoveryOutcome, 'ok' | 'none'> | 'unavailable' | 'disabled';

/** Bytes of replay written before waiting for the socket to take them. */
const REPLAY_PAGE_FACTOR = 0.5;
/** Frames per history read while replaying: one Redis reply stays about 1 MB at most (16 frames of 64 KB). */
const REPLAY_PAGE_FRAMES = 16;

export async function join(
  core: Core,
  session: Session,
  name: string,
  id: string | undefined,
  since: HistoryPosition | undefined,
  watch?: boolean,
): Promise<void> {
  const { registry, config, backplane } = core;
  const denied = core.tokens?.refusal(session, 'join', name);
  if (denied) return session.sendError({ id, code: 'forbidden', message: denied });
  const member = session.rooms.has(name);
  if (!member && session.rooms.size >= config.maxRooms) {
    session.sendError({
      id,
      code: 'too_many_rooms',
      message: `this connection is already in ${session.rooms.size} rooms (RELAY_MAX_ROOMS=${config.maxRooms}); leave one before joining ${JSON.stringify(name)}`,
    });
    return;
  }
  if (!session.takeRoom(name, id)) return;
  const room = member ? registry.rooms.get(name) : registry.join(session, name);
  if (room === undefined) return;
  // Stored before the ack (in parallel with the subscription and the history read), so presence lists the member once it is acked.
  const entered = core.presence?.enter(session, name, watch);
  if (!backplane.historyEnabled) {
    await room.subscribed;
    await entered;
    // Without history nothing can be recovered: a client asking to resume learns that it did not.
    session.send(encodeAck(id, since === undefined ? {} : notRecovered('disabled')));
    return;
  }
  if (member && since === undefined) {
    await entered;
    const position = registry.memberPosition(room, session);
    session.send(encodeAck(id, position === undefined ? {} : { position: wirePosition(position) }));
    return;
  }

  const state = registry.startJoin(room, session, config.sendBufferBytes * 4);
  let read: HistoryRead | undefined;
  try {
    await room.subscribed;
    read = await backplane.readHistory(name, since, { limit: REPLAY_PAGE_FRAMES });
  } catch (err) {
    session.log.warn({ err, room: name }, 'reading room history failed');
  }
  const current = (): boolean => !session.closing && registry.rooms.get(name) === room && room.joins?.get(session) === state;
  if (!current()) return;
  if (read === undefined) {
    // Position unknown (backplane down): the client cannot resume from this join, and is told so.
    registry.endJoin(room, session);
    await entered;
    session.send(encodeAck(id, since === undefined ? {} : notRecovered('unavailable')));
    for (const h of state.acked(undefined)) session.send(h.frame);
    return;
  }
  const position = { seq: Number(read.position.seq), epoch: read.position.epoch };
  registry.notePosition(room, position);

  let outcome: RecoveryOutcome | 'unavailable' = read.outcome;
  let replayed = 0;
  if (outcome === 'ok' && since !== undefined && position.seq > Number(since.seq)) {
    const gap = await readGap(core, session, name, read.frames, Number(since.seq), position, current);
    if (gap === undefined) return;
    outcome = gap.outcome;
    if (outcome === 'ok') {
      const sent = await streamReplay(core, session, gap.frames);
      if (sent === undefined || !current()) return;
      replayed = sent;
      if (replayed > 0) core.metrics.messagesOut.inc(replayed);
    }
  }
  // 'none' answers a read without `since` only; should a read with one ever get it, the history was not really read.
  const extra: Record<string, unknown> =
    since === undefined ? {} : outcome === 'ok' ? { recovered: true, replayed } : notRecovered(outcome === 'none' ? 'unavailable' : outcome);
  extra.position = read.position;
  await entered;
  if (!current()) return;
  session.send(encodeAck(id, extra));
  let released = 0;
  for (const h of state.acked(position)) if (session.send(h.frame)) released++;
  if (released > 0) core.metrics.messagesOut.inc(released);
  // The room drops every frame at or before its own position, so once that reaches the acked one there is nothing
  // left to filter: the state goes now instead of waiting for the room's next frame (an idle room may never get one).
  const at = room.position;
  if (at !== undefined && at.epoch === position.epoch && at.seq >= position.seq) registry.endJoin(room, session);
}

/**
 * Reads the whole gap from `from` to `to` before any of it is sent, page by page after the first, charging the
 * connection's replay budget: a gap over what is left is answered 'budget' with nothing sent (never a partial
 * replay), and the Redis egress one connection can cause is bounded by the budget. Resolves undefined when the join
 * was abandoned (socket closed, member left); an outcome other than 'ok' when the gap cannot be served.
 */
async function readGap(
  core: Core,
  session: Session,
  room: string,
  first: readonly Buffer[],
  from: number,
  to: FramePosition,
  current: () => boolean,
): Promise<{ frames: Buffer[]; outcome: RecoveryOutcome | 'unavailable' } | undefined> {
  const budget = session.replayBudgetLeft();
  const frames: Buffer[] = [];
  let bytes = 0;
  let page = first;
  for (;;) {
    let pageBytes = 0;
    for (const frame of page) pageBytes += frame.length;
    bytes += pageBytes;
    // Charged as read: what was read out of Redis counts even when the join ends over budget.
    session.chargeReplay(pageBytes);
    if (bytes > budget) return { frames: [], outcome: 'budget' };
    frames.push(...page);
    const at = from + frames.length;
    if (at >= to.seq || page.length === 0) return { frames, outcome: 'ok' };
    let next: HistoryRead;
    try {
      next = await core.backplane.readHistory(room, { seq: String(at), epoch: to.epoch }, { limit: REPLAY_PAGE_FRAMES });
    } catch (err) {
      session.log.warn({ err, room }, 'reading room history failed');
      return { frames: [], outcome: 'unavailable' };
    }
    if (!current()) return undefined;
    if (next.outcome !== 'ok') return { frames: [], outcome: next.outcome };
    // Only up to the acked position: what came after it is live, held for the member meanwhile.
    page = next.frames.slice(0, to.seq - at);
  }
}

/**
 * Writes the replay in pages, waiting after each for the socket to take it, so a reader that keeps up is never cut
 * off as a slow consumer and the relay never holds more than a page in the socket's buffer. Resolves with the
 * count sent, or undefined when the socket closed or stopped reading (then it is closed as a slow consumer).
 */
async function streamReplay(core: Core, session: Session, frames: readonly Buffer[]): Promise<number | undefined> {
  const page = Math.max(1, Math.floor(core.config.sendBufferBytes * REPLAY_PAGE_FACTOR));
  let pending = 0;
  let sent = 0;
  for (const frame of frames) {
    if (pending + frame.length > page && pending > 0) {
      pending = 0;
      if (!(await core.outbound.whenWritable(session, page))) {
        if (!session.closing) core.slowConsumer(session);
        return undefined;
      }
    }
    if (!session.send(frame)) return undefined;
    pending += frame.length;
    sent++;
  }
  return sent;
}

/** The ack fields of a join with `since` that replayed nothing: always with the reason, so the client knows what to do. */
function notRecovered(reason: NotRecoveredReason): { recovered: false; reason: NotRecoveredReason } {
  return { recovered: false, reason };
}

export function wirePosition(position: FramePosition): HistoryPosition {
  return { seq: String(position.seq), epoch: position.epoch };
}
