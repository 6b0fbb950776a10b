'use strict';
// The fan-out benchmark's floor: the least relay that does the job (ws + node-redis, join and publish only).
// No validation, limits, backpressure or reconnects on purpose. Not shipped.
const { WebSocketServer } = require('ws');
const { createClient } = require('redis');

const prefix = `${process.env.RELAY_CHANNEL_PREFIX || 'floor'}:`;
const pub = createClient({ url: process.env.REDIS_URL });
const sub = pub.duplicate();
const rooms = new Map(); // room -> Set of sockets on this instance
let connections = 0;
process.on('SIGTERM', () => process.exit(0)); // a normal exit, so node --cpu-prof writes its profile

Promise.all([pub.connect(), sub.connect()]).then(() => {
  const wss = new WebSocketServer({ host: process.env.HOST || '127.0.0.1', port: Number(process.env.PORT || 0), path: '/ws', perMessageDeflate: false });
  wss.on('listening', () => console.log(JSON.stringify({ event: 'listening', msg: 'relay listening', port: wss.address().port })));
  wss.on('connection', (ws) => {
    const id = `c${++connections}`;
    const joined = new Set();
    ws.send(JSON.stringify({ type: 'welcome', connectionId: id, instanceId: `floor-${process.pid}`, protocol: 1 }));
    ws.on('message', async (raw) => {
      const f = JSON.parse(raw);
      if (f.type === 'join') {
        let members = rooms.get(f.room);
        if (!members) {
          rooms.set(f.room, (members = new Set()));
          await sub.subscribe(prefix + f.room, (m) => { for (const c of members) c.send(m); });
        }
        members.add(ws);
        joined.add(f.room);
      } else if (f.type === 'publish') {
        await pub.publish(prefix + f.room, JSON.stringify({ type: 'message', room: f.room, data: f.data, from: id }));
      }
      if (f.id !== undefined) ws.send(JSON.stringify({ type: 'ack', id: f.id }));
    });
    ws.on('close', () => { for (const r of joined) rooms.get(r).delete(ws); });
  });
});
