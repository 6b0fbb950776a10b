/** The pure parts of recovery: the envelope that carries a seq, and the rule that decides whether a gap can be filled. */
import { classify, historyKey, parseReadReply } from '../../service/backplane/history';
import { decodeEnvelope, isOwnEcho, roomChannel } from '../../service/backplane/types';

describe('envelopes', () => {
  it('reads `<instanceId>#<seq> <frame>` with the epoch at the frame\'s end, and keeps the plain `<instanceId> <frame>` form', () => {
    const frame = '{"type":"message","seq":"42","epoch":"E1"}';
    const numbered = decodeEnvelope(Buffer.from(`relay-a#42 ${frame}`));
    expect(numbered).toEqual({ instanceId: 'relay-a', position: { seq: 42, epoch: 'E1' }, frame: Buffer.from(frame) });
    expect(decodeEnvelope(Buffer.from('relay-a#42 {"type":"message"}'))).toBeNull();
    const plain = decodeEnvelope(Buffer.from('relay-a 0'));
    expect(plain).toEqual({ instanceId: 'relay-a', frame: Buffer.from('0') });
    expect(decodeEnvelope(Buffer.from('relay-a#x {}'))).toBeNull();
    expect(decodeEnvelope(Buffer.from('#1 {}'))).toBeNull();
    expect(decodeEnvelope(Buffer.from('no-space'))).toBeNull();
  });

  it('skips only its own un-numbered envelopes: numbered ones are delivered from the channel by every instance', () => {
    expect(isOwnEcho({ instanceId: 'me' }, 'me')).toBe(true);
    expect(isOwnEcho({ instanceId: 'me', position: { seq: 1, epoch: 'E' } }, 'me')).toBe(false);
    expect(isOwnEcho({ instanceId: 'other' }, 'me')).toBe(false);
  });
});

describe('history keys', () => {
  it('share the hash tag of the room channel, and broadcast keys cannot collide with a room', () => {
    expect(roomChannel('app', 'lobby')).toBe('app:room:{lobby}');
    expect(historyKey('app', 'lobby')).toBe('app:history:{lobby}');
    expect(historyKey('app', null)).toBe('{app:broadcast}:history');
  });
});

describe('classify', () => {
  const epoch = 'E';
  it.each([
    ['no since', undefined, 'none'],
    ['another epoch', { seq: '5', epoch: 'F' }, 'epoch'],
    ['up to date', { seq: '20', epoch }, 'ok'],
    ['in the future', { seq: '21', epoch }, 'future'],
    ['within the 10 kept', { seq: '10', epoch }, 'ok'],
    ['older than the 10 kept', { seq: '9', epoch }, 'trimmed'],
  ] as const)('%s → %s', (_what, since, outcome) => {
    expect(classify(since, epoch, 20, 10, 100)).toBe(outcome);
  });

  it('refuses a gap over the replay cap even when it is retained', () => {
    expect(classify({ seq: '10', epoch }, epoch, 20, 100, 9)).toBe('cap');
    expect(classify({ seq: '11', epoch }, epoch, 20, 100, 9)).toBe('ok');
  });
});

describe('parseReadReply', () => {
  it('turns the read script reply into a position, an outcome and the frames', () => {
    const reply = [Buffer.from('E'), Buffer.from('3'), Buffer.from('ok'), Buffer.from('{"seq":"3"}')];
    expect(parseReadReply(reply)).toEqual({ position: { seq: '3', epoch: 'E' }, outcome: 'ok', frames: [Buffer.from('{"seq":"3"}')] });
  });

  it('rejects a reply that is not the script’s shape', () => {
    expect(() => parseReadReply('OK')).toThrow('unexpected history read reply: OK');
    expect(() => parseReadReply(['E', '3', 'maybe'])).toThrow('unexpected history read outcome: maybe');
  });
});
