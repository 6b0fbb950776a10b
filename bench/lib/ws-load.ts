import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { LatencyHistogram } from './histogram';

/** Thrown when a load-generator socket cannot connect, join or publish; `code` is stable for callers and tests. */
export class LoadClientError extends Error {
  constructor(
    readonly code: 'connect_failed' | 'join_failed' | 'closed',
    message: string,
  ) {
    super(message);
    this.name = 'LoadClientError';
  }
}

const HANDSHAKE_TIMEOUT_MS = 15_000;
/** Payload size of every published message, in bytes (the data string). */
export const PAYLOAD_BYTES = 64;
// The send time travels as fixed-width microseconds at the start of the payload, so a receiver parses digits, not JSON.
const TS_DIGITS = 13;
const FILLER = '.'.repeat(PAYLOAD_BYTES - TS_DIGITS);
const DATA_KEY = Buffer.from('"data":"');
const DIGIT_0 = 48;

// Compression and UTF-8 validation cost the generator CPU that the servers need on a small machine.
const CLIENT_OPTIONS: WebSocket.ClientOptions = { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: HANDSHAKE_TIMEOUT_MS };

/** Every receiver of one target shares one sink: counts and latencies without per-message allocation. */
export class DeliverySink {
  delivered = 0;
  /** Latencies are recorded only while true (the measured window). */
  measuring = false;
  readonly latency = new LatencyHistogram();

  /** For `ws` clients: one message event per frame. */
  onMessage = (data: WebSocket.RawData): void => {
    if (Buffer.isBuffer(data)) this.onFrame(data, 0, data.length);
    else this.delivered++;
  };

  /** For raw subscribers: the frame's payload is `buf[start, end)`, read in place. */
  onFrame = (buf: Buffer, start: number, end: number): void => {
    this.delivered++;
    if (!this.measuring) return;
    const at = buf.indexOf(DATA_KEY, start);
    const from = at + DATA_KEY.length;
    if (at < 0 || from + TS_DIGITS > end) return;
    let us = 0;
    for (let i = from; i < from + TS_DIGITS; i++) us = us * 10 + ((buf[i] ?? DIGIT_0) - DIGIT_0);
    this.latency.record(performance.now() - us / 1000);
  };
}

/** The 64-byte payload carrying the send time `atMs` (this process's performance clock unless the sender maps it). */
export function timestampPayload(atMs: number = performance.now()): string {
  return String(Math.round(atMs * 1000)).padStart(TS_DIGITS, '0') + FILLER;
}

/** One open socket past the welcome frame (and the join, when there was one). */
export interface LoadSocket {
  isOpen(): boolean;
  close(): Promise<void>;
}

/** A LoadSocket on a `ws` client. */
export interface WsLoadSocket extends LoadSocket {
  readonly ws: WebSocket;
}

/** Opens a socket, waits for the welcome frame, optionally joins `room` and waits for its ack. */
export function connectMember(url: string, room: string | null, onMessage?: (data: WebSocket.RawData) => void): Promise<WsLoadSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, CLIENT_OPTIONS);
    let settled = false;
    const fail = (code: LoadClientError['code'], message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.terminate();
      reject(new LoadClientError(code, message));
    };
    const timer = setTimeout(() => fail('connect_failed', `${url}: no welcome/ack within ${HANDSHAKE_TIMEOUT_MS} ms`), HANDSHAKE_TIMEOUT_MS);
    const done = (): void => {
      settled = true;
      clearTimeout(timer);
      ws.removeAllListeners('message');
      if (onMessage) ws.on('message', onMessage);
      resolve(socketOf(ws));
    };
    // Handshake frames are rare and parsed in full; the hot path after the join never parses JSON.
    ws.on('message', (data) => {
      const frame = parse(data);
      if (frame.type === 'welcome') {
        if (room === null) return done();
        ws.send(JSON.stringify({ type: 'join', room, id: 'join' }));
      } else if (frame.id === 'join' && frame.type === 'ack') {
        done();
      } else if (frame.type === 'error') {
        fail('join_failed', `${url}: join ${room ?? ''} refused: ${String(frame.code)} ${String(frame.message)}`);
      }
    });
    ws.on('error', (err) => fail('connect_failed', `${url}: ${err.message}`));
    ws.on('close', (code) => fail('closed', `${url}: closed with ${code} during the handshake`));
  });
}

function socketOf(ws: WebSocket): WsLoadSocket {
  // Errors after the handshake surface as a close; the harness counts closed sockets.
  ws.on('error', () => undefined);
  return {
    ws,
    isOpen: () => ws.readyState === WebSocket.OPEN,
    close: () => closeSocket(ws),
  };
}

/** Closes a socket and waits for the close event (terminating after 2 s without a closing handshake). */
export function closeSocket(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => ws.terminate(), 2_000);
    ws.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
    else ws.close(1000);
  });
}

function parse(data: WebSocket.RawData): Record<string, unknown> {
  try {
    const text = Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Opens `count` members with at most `concurrency` handshakes in flight; closes what it opened if one fails. */
export async function connectMany<S extends LoadSocket>(
  count: number,
  concurrency: number,
  open: (i: number) => Promise<S>,
): Promise<S[]> {
  const sockets: S[] = new Array<S>(count);
  let next = 0;
  // An array, not a `let`: the workers assign it from closures, which TypeScript's narrowing does not see.
  const failures: Error[] = [];
  const worker = async (): Promise<void> => {
    while (failures.length === 0 && next < count) {
      const i = next++;
      try {
        sockets[i] = await open(i);
      } catch (err) {
        failures.push(err instanceof Error ? err : new Error(`opening member ${i} failed`, { cause: err }));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, () => worker()));
  if (failures.length > 0) {
    await Promise.all(sockets.filter(Boolean).map((s) => s.close()));
    throw failures[0];
  }
  return sockets;
}

/**
 * Publishes 64-byte timestamped messages to a room at a fixed rate. Pacing catches up after timer
 * jitter (bounded per tick) and skips while the socket's own buffer backs up, so `sent` is what left.
 */
export class RatePublisher {
  sent = 0;
  skippedTicks = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly prefix: string;

  constructor(
    private readonly socket: WsLoadSocket,
    room: string,
  ) {
    this.prefix = `{"type":"publish","room":${JSON.stringify(room)},"data":"`;
  }

  /** Sends one message now. */
  publishOne(): void {
    this.socket.ws.send(`${this.prefix}${timestampPayload()}"}`);
    this.sent++;
  }

  start(ratePerSecond: number): void {
    this.stop();
    const t0 = performance.now();
    const base = this.sent;
    // Up to 50 ms worth per tick: enough to keep the rate when the loop is busy, small enough to avoid bursts.
    const maxPerTick = Math.max(1, Math.ceil(ratePerSecond / 20));
    const tick = (): void => {
      const due = Math.floor(((performance.now() - t0) * ratePerSecond) / 1000) - (this.sent - base);
      if (this.socket.ws.bufferedAmount > 1024 * 1024) this.skippedTicks++;
      else for (let i = 0; i < Math.min(due, maxPerTick); i++) this.publishOne();
      this.timer = setTimeout(tick, 1);
    };
    this.timer = setTimeout(tick, 1);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
