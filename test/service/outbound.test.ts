/** The outbound module's framed writes (service/core/outbound.ts): the same bytes ws itself would send. */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { Outbound, textFrameHeader, type OutboundPeer } from '../../service/core/outbound';

/** ws's own frame builder (not in its type definitions): returns [header, payload] for an unmasked server frame. */
const wsFrame = (WebSocket as unknown as { Sender: { frame(this: void, data: Buffer, opts: Record<string, unknown>): Buffer[] } }).Sender.frame;

test.each([0, 1, 125, 126, 127, 65_535, 65_536, 70_000])('the header of a %i-byte text frame is the one ws builds', (length) => {
  const payload = Buffer.alloc(length, 0x61);
  const [header] = wsFrame(payload, { fin: true, rsv1: false, opcode: 1, mask: false, readOnly: false });
  expect(textFrameHeader(length)).toEqual(header);
});

test('a header for a payload over 4 GiB carries the full 64-bit length', () => {
  const header = textFrameHeader(2 ** 32 + 5);
  expect([...header]).toEqual([0x81, 127, 0, 0, 0, 1, 0, 0, 0, 5]);
});

test('one payload sent to several sockets arrives intact at each, between frames ws sends itself', async () => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  const url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}`;
  const peers: OutboundPeer[] = [];
  wss.on('connection', (ws) => peers.push({ ws, closing: false, corked: false, overSince: 0 }));
  const clients = await Promise.all([0, 1, 2].map(async () => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    await once(ws, 'open');
    return ws;
  }));
  try {
    const received = clients.map((ws) => {
      const texts: string[] = [];
      ws.on('message', (data, isBinary) => texts.push(isBinary ? 'binary!' : (data as Buffer).toString('utf8')));
      return texts;
    });
    const deadline = Date.now() + 10_000;
    while (peers.length < clients.length && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    expect(peers).toHaveLength(clients.length);
    const outbound = new Outbound({ capBytes: 16 * 1024 * 1024, onSlowConsumer: () => undefined });
    const payloads = [Buffer.from('{"small":true}'), Buffer.from(JSON.stringify({ medium: 'm'.repeat(300) })), Buffer.from(JSON.stringify({ large: 'l'.repeat(70_000) }))];
    for (const payload of payloads) {
      for (const peer of peers) expect(outbound.send(peer, payload)).toBe(true);
      for (const peer of peers) expect(outbound.send(peer, '{"text":"a string goes through ws"}')).toBe(true);
    }
    const expected = payloads.flatMap((p) => [p.toString('utf8'), '{"text":"a string goes through ws"}']);
    while (received.some((texts) => texts.length < expected.length) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const texts of received) expect(texts).toEqual(expected);
    outbound.stop();
  } finally {
    for (const ws of clients) ws.terminate();
    await new Promise((r) => wss.close(r));
  }
});
