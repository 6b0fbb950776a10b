import { encodeAck, encodeError, encodeMessage, parseClientFrame } from '../../service/protocol';

describe('parseClientFrame', () => {
  it.each([
    ['{"type":"ping"}', { type: 'ping' }],
    ['{"type":"ping","id":"1"}', { type: 'ping', id: '1' }],
    ['{"type":"join","room":"a:b_c.d-1","id":"2"}', { type: 'join', room: 'a:b_c.d-1', id: '2' }],
    ['{"type":"join","room":"r","since":{"seq":"5","epoch":"e"}}', { type: 'join', room: 'r', since: { seq: '5', epoch: 'e' } }],
    ['{"type":"leave","room":"r"}', { type: 'leave', room: 'r' }],
    ['{"type":"publish","room":"r","data":null}', { type: 'publish', room: 'r', data: null }],
    ['{"type":"publish","data":[1,2]}', { type: 'publish', data: [1, 2] }],
  ])('accepts %s', (text, frame) => {
    expect(parseClientFrame(text)).toEqual({ ok: true, frame });
  });

  it.each([
    ['nope', 'bad_json', 'frame is not valid JSON; send one JSON object per text frame, e.g. {"type":"ping"}', undefined],
    ['[1]', 'bad_frame', 'frame must be a JSON object with a "type" field; received an array', undefined],
    ['{"id":"1"}', 'bad_frame', '"type" must be a string (one of join, leave, publish, ping, refresh, presence); received nothing', '1'],
    ['{"type":"ping","id":7}', 'bad_frame', '"id" must be a string of at most 64 characters; received a number', undefined],
    [`{"type":"ping","id":"${'x'.repeat(65)}"}`, 'bad_frame', /"id" must be a string of at most 64 characters/, undefined],
    ['{"type":"publish","room":"r","id":"3"}', 'bad_frame', 'publish needs a "data" field (any JSON value); omit "room" to broadcast to every client', '3'],
    ['{"type":"join","room":5}', 'bad_frame', 'join needs a "room" string; received a number', undefined],
    ['{"type":"join","room":"r","since":{"seq":1}}', 'bad_frame', '"since" must be an object {"seq": string, "epoch": string}; received an object', undefined],
    ['{"type":"shout","id":"4"}', 'unknown_type', 'unknown frame type "shout"; expected one of join, leave, publish, ping, refresh, presence', '4'],
    ['{"type":"join","room":"has space"}', 'invalid_room', 'room "has space" is invalid; use 1-128 characters of A-Z a-z 0-9 : _ . -', undefined],
    ['{"type":"leave","room":""}', 'invalid_room', 'room "" is invalid; use 1-128 characters of A-Z a-z 0-9 : _ . -', undefined],
    [`{"type":"publish","room":"${'r'.repeat(129)}","data":1}`, 'invalid_room', /is invalid; use 1-128 characters/, undefined],
  ])('refuses %s', (text, code, message, id) => {
    const r = parseClientFrame(text);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.code).toBe(code);
    expect(r.id).toBe(id);
    if (typeof message === 'string') expect(r.message).toBe(message);
    else expect(r.message).toMatch(message);
  });
});

describe('server frames', () => {
  it('serialises message frames with and without a room', () => {
    expect(JSON.parse(encodeMessage('lobby', { a: 'é' }, 'c1').toString('utf8'))).toEqual({
      type: 'message',
      room: 'lobby',
      data: { a: 'é' },
      from: 'c1',
    });
    expect(encodeMessage(null, 'hi', 'c1').toString('utf8')).toBe('{"type":"message","data":"hi","from":"c1"}');
  });

  it('omits the id when the request had none', () => {
    expect(encodeAck(undefined)).toBe('{"type":"ack"}');
    expect(encodeAck('9', { recovered: false })).toBe('{"type":"ack","id":"9","recovered":false}');
    expect(encodeError({ code: 'bad_json', message: 'm' })).toBe('{"type":"error","code":"bad_json","message":"m"}');
  });
});
