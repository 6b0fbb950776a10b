import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import type { Socket } from 'node:net';
import { LoadClientError, type LoadSocket } from './ws-load';

const HANDSHAKE_TIMEOUT_MS = 15_000;
const OP_TEXT = 0x1;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;

/** Receives the text frames of an established subscription: `buf[start, end)` is one frame's payload. */
export type FrameSink = (buf: Buffer, start: number, end: number) => void;

/** A raw member that can also publish: `send` writes one text frame; `backlog` is what the kernel has not taken yet. */
export interface RawMember extends LoadSocket {
  send(text: string): void;
  backlog(): number;
}

/**
 * A subscriber that speaks just enough WebSocket for the fan-out benchmark, on a plain TCP socket: it walks the
 * frames inside each received chunk in place (no per-message Buffer, event or stream machinery), answers pings and
 * closes cleanly. The `ws` client costs about as much CPU per delivery as the relay itself; this costs a fraction.
 * Server frames are never masked, and the relay does not fragment or compress, so neither is handled.
 */
export function connectRawMember(url: string, room: string, onFrame: FrameSink): Promise<RawMember> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    let settled = false;
    let socket: Socket | null = null;
    const fail = (code: LoadClientError['code'], message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket?.destroy();
      req.destroy();
      reject(new LoadClientError(code, message));
    };
    const timer = setTimeout(() => fail('connect_failed', `${url}: no welcome/ack within ${HANDSHAKE_TIMEOUT_MS} ms`), HANDSHAKE_TIMEOUT_MS);
    const req = request({
      host: u.hostname,
      port: u.port,
      path: `${u.pathname}${u.search}`,
      agent: false,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
      },
    });
    req.on('error', (err) => fail('connect_failed', `${url}: ${err.message}`));
    req.on('response', (res) => fail('connect_failed', `${url}: upgrade refused with HTTP ${res.statusCode ?? 'unknown'}`));
    req.on('upgrade', (_res, sock: Socket, head: Buffer) => {
      socket = sock;
      sock.setNoDelay(true);
      let closed = false;
      let joined = false;
      let carry: Buffer | null = null;

      const handshakeFrame = (buf: Buffer, start: number, end: number): void => {
        let frame: Record<string, unknown>;
        try {
          frame = JSON.parse(buf.toString('utf8', start, end)) as Record<string, unknown>;
        } catch {
          return;
        }
        if (frame.type === 'welcome') sendFrame(sock, OP_TEXT, Buffer.from(JSON.stringify({ type: 'join', room, id: 'join' })));
        else if (frame.type === 'ack' && frame.id === 'join') {
          joined = true;
          settled = true;
          clearTimeout(timer);
          resolve(handle);
        } else if (frame.type === 'error') fail('join_failed', `${url}: join ${room} refused: ${String(frame.code)} ${String(frame.message)}`);
      };

      const onData = (chunk: Buffer): void => {
        let buf = chunk;
        if (carry) {
          buf = Buffer.concat([carry, chunk]);
          carry = null;
        }
        let at = 0;
        while (at + 2 <= buf.length) {
          const opcode = buf[at] & 0x0f;
          let len = buf[at + 1] & 0x7f;
          let headerLen = 2;
          if (len === 126) {
            if (at + 4 > buf.length) break;
            len = buf.readUInt16BE(at + 2);
            headerLen = 4;
          } else if (len === 127) {
            if (at + 10 > buf.length) break;
            len = buf.readUInt32BE(at + 6);
            headerLen = 10;
          }
          const start = at + headerLen;
          const end = start + len;
          if (end > buf.length) break;
          if (opcode === OP_TEXT) {
            if (joined) onFrame(buf, start, end);
            else handshakeFrame(buf, start, end);
          } else if (opcode === OP_PING) {
            sendFrame(sock, 0xa, buf.subarray(start, end));
          } else if (opcode === OP_CLOSE) {
            closed = true;
            sock.end();
            return;
          }
          at = end;
        }
        if (at < buf.length) carry = buf.subarray(at);
      };

      const handle: RawMember = {
        isOpen: () => !closed && !sock.destroyed,
        send: (text) => sendTextZeroMask(sock, text),
        backlog: () => sock.writableLength,
        close: () =>
          new Promise<void>((done) => {
            if (sock.destroyed) return done();
            const t = setTimeout(() => sock.destroy(), 2_000);
            sock.once('close', () => {
              clearTimeout(t);
              done();
            });
            if (!closed) {
              closed = true;
              sendFrame(sock, OP_CLOSE, Buffer.from([0x03, 0xe8]));
            }
            sock.end();
          }),
      };
      sock.on('data', onData);
      sock.on('error', () => undefined);
      sock.on('close', () => {
        closed = true;
        fail('closed', `${url}: closed during the handshake`);
      });
      if (head.length > 0) onData(head);
    });
    req.end();
  });
}

/** Writes one masked client frame (clients must mask, RFC 6455 §5.3). */
function sendFrame(sock: Socket, opcode: number, payload: Buffer): void {
  if (sock.destroyed || !sock.writable) return;
  const mask = randomBytes(4);
  const len = payload.length;
  const header = len < 126 ? Buffer.alloc(6) : Buffer.alloc(8);
  header[0] = 0x80 | opcode;
  if (len < 126) {
    header[1] = 0x80 | len;
    mask.copy(header, 2);
  } else {
    header[1] = 0x80 | 126;
    header.writeUInt16BE(len, 2);
    mask.copy(header, 4);
  }
  const body = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) body[i] = payload[i] ^ mask[i & 3];
  sock.write(Buffer.concat([header, body]));
}

/**
 * The publishing members' hot path: one allocation per frame and a zero masking key (legal, RFC 6455 §5.3 only asks
 * the client to mask; XOR with zero leaves the payload as is), so the generator spends its CPU on the servers' load.
 */
function sendTextZeroMask(sock: Socket, text: string): void {
  if (sock.destroyed || !sock.writable) return;
  const len = Buffer.byteLength(text);
  const headerLen = len < 126 ? 6 : 8;
  const frame = Buffer.allocUnsafe(headerLen + len);
  frame[0] = 0x80 | OP_TEXT;
  if (len < 126) frame[1] = 0x80 | len;
  else {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(len, 2);
  }
  frame.writeUInt32BE(0, headerLen - 4);
  frame.write(text, headerLen);
  sock.write(frame);
}
