import { request as httpRequest } from 'node:http';
import WebSocket from 'ws';

/** A parsed server frame. */
export interface Frame {
  type: string;
  [k: string]: unknown;
}

const DEFAULT_TIMEOUT_MS = 10_000;

interface Waiter {
  pred: (f: Frame) => boolean;
  resolve: (f: Frame) => void;
}

/**
 * A real `ws` client that records every frame it receives, so tests can wait on conditions
 * instead of sleeping.
 */
export class TestClient {
  readonly frames: Frame[] = [];
  private readonly waiters = new Set<Waiter>();
  private readonly changeListeners = new Set<() => void>();
  private closeInfo: { code: number; reason: string } | null = null;

  private constructor(
    readonly ws: WebSocket,
    readonly welcome: Frame,
  ) {}

  /**
   * Opens a connection and resolves after the welcome frame.
   * `autoPong: false` makes a client that ignores pings (to test heartbeat termination).
   */
  static connect(
    url: string,
    opts: { origin?: string; headers?: Record<string, string>; autoPong?: boolean } = {},
  ): Promise<TestClient> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { origin: opts.origin, headers: opts.headers, autoPong: opts.autoPong ?? true });
      let client: TestClient | null = null;
      const early: Frame[] = [];
      const timer = setTimeout(() => {
        ws.terminate();
        reject(new Error(`TestClient.connect(${url}): no welcome frame within ${DEFAULT_TIMEOUT_MS} ms`));
      }, DEFAULT_TIMEOUT_MS);
      ws.on('message', (data, isBinary) => {
        const frame = parseFrame(data, isBinary);
        if (client) {
          client.push(frame);
          return;
        }
        if (frame.type !== 'welcome') {
          early.push(frame);
          return;
        }
        clearTimeout(timer);
        client = new TestClient(ws, frame);
        for (const f of early) client.push(f);
        ws.on('close', (code, reason) => client?.markClosed(code, reason.toString()));
        resolve(client);
      });
      ws.on('error', (err) => {
        if (client) return;
        clearTimeout(timer);
        reject(err);
      });
      ws.on('unexpected-response', (_req, res) => {
        clearTimeout(timer);
        reject(new Error(`TestClient.connect(${url}): upgrade refused with HTTP ${res.statusCode ?? 'unknown'}`));
        ws.terminate();
      });
      ws.on('close', (code, reason) => {
        if (client) return;
        clearTimeout(timer);
        reject(new Error(`TestClient.connect(${url}): closed before welcome (${code} ${reason.toString()})`));
      });
    });
  }

  /** Frames of type 'message', in arrival order. */
  messages(): Frame[] {
    return this.frames.filter((f) => f.type === 'message');
  }

  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  sendRaw(data: string | Buffer, opts: { binary?: boolean } = {}): void {
    this.ws.send(data, { binary: opts.binary ?? false });
  }

  /** Sends a frame with an id and resolves with the ack, pong, presence reply or error that echoes it. */
  request(frame: { id: string; [k: string]: unknown }, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame> {
    const id = frame.id;
    const wait = this.waitFor(
      (f) => f.id === id && (f.type === 'ack' || f.type === 'pong' || f.type === 'presence' || f.type === 'error'),
      timeoutMs,
      true,
    );
    this.send(frame);
    return wait;
  }

  /** Resolves with the first frame (already received or future) matching pred. */
  waitFor(pred: (f: Frame) => boolean, timeoutMs = DEFAULT_TIMEOUT_MS, futureOnly = false): Promise<Frame> {
    if (!futureOnly) {
      const found = this.frames.find(pred);
      if (found) return Promise.resolve(found);
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        pred,
        resolve: (f) => {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(f);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`TestClient.waitFor: no matching frame within ${timeoutMs} ms; last frames: ${summary(this.frames)}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Resolves with all messages once at least `count` have arrived. */
  waitForMessages(count: number, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Frame[]> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const msgs = this.messages();
        if (msgs.length < count) return false;
        clearTimeout(timer);
        this.changeListeners.delete(onChange);
        resolve(msgs);
        return true;
      };
      const onChange = (): void => {
        check();
      };
      const timer = setTimeout(() => {
        this.changeListeners.delete(onChange);
        reject(new Error(`TestClient.waitForMessages: ${this.messages().length} of ${count} messages within ${timeoutMs} ms`));
      }, timeoutMs);
      if (!check()) this.changeListeners.add(onChange);
    });
  }

  /** Resolves with the close code and reason; immediately if already closed. */
  waitClose(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ code: number; reason: string }> {
    if (this.closeInfo) return Promise.resolve(this.closeInfo);
    return new Promise((resolve, reject) => {
      const onChange = (): void => {
        if (!this.closeInfo) return;
        clearTimeout(timer);
        this.changeListeners.delete(onChange);
        resolve(this.closeInfo);
      };
      const timer = setTimeout(() => {
        this.changeListeners.delete(onChange);
        reject(new Error(`TestClient.waitClose: socket still open after ${timeoutMs} ms`));
      }, timeoutMs);
      this.changeListeners.add(onChange);
    });
  }

  /** Closes the socket (terminating it after 2 s without a close handshake) and waits for it. */
  async close(): Promise<void> {
    if (this.closeInfo || this.ws.readyState === WebSocket.CLOSED) return;
    const closed = new Promise<void>((resolve) => this.ws.once('close', () => resolve()));
    const timer = setTimeout(() => this.ws.terminate(), 2000);
    try {
      this.ws.close(1000);
    } catch {
      this.ws.terminate();
    }
    await closed;
    clearTimeout(timer);
  }

  private push(frame: Frame): void {
    this.frames.push(frame);
    for (const w of [...this.waiters]) if (w.pred(frame)) w.resolve(frame);
    for (const l of [...this.changeListeners]) l();
  }

  private markClosed(code: number, reason: string): void {
    this.closeInfo = { code, reason };
    for (const l of [...this.changeListeners]) l();
  }
}

/** Performs a raw HTTP upgrade request and returns the refusal status and body. */
export function rawUpgrade(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const u = new URL(url.replace(/^ws/, 'http'));
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: u.hostname,
      port: u.port,
      path: `${u.pathname}${u.search}`,
      method: 'GET',
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        ...headers,
      },
      timeout: DEFAULT_TIMEOUT_MS,
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 101, body: '' });
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`rawUpgrade(${url}): no response within ${DEFAULT_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** A received message as UTF-8 text, whichever of ws's shapes (Buffer, ArrayBuffer, fragments) it arrived in. */
export function frameText(data: WebSocket.RawData): string {
  return Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
}

function parseFrame(data: WebSocket.RawData, isBinary: boolean): Frame {
  const text = frameText(data);
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && typeof (parsed as { type?: unknown }).type === 'string') {
      return parsed as Frame;
    }
  } catch {
    // fall through: recorded as an unparseable frame so tests can see it
  }
  return { type: isBinary ? 'binary' : 'unparsed', raw: text };
}

function summary(frames: Frame[]): string {
  return JSON.stringify(frames.slice(-5));
}
