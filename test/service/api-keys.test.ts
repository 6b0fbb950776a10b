/** The server API's keys (service/http/api-keys.ts): either key of a rotation is accepted, nothing else, and only digests are kept. */
import { inspect } from 'node:util';
import { expect } from '@jest/globals';
import { ApiKeys } from '../../service/http/api-keys';
import { API_KEY } from '../helpers/server-api';

const NEXT = `${API_KEY}-next-key`;

describe('ApiKeys', () => {
  it('accepts the key it holds and refuses any other, however close', () => {
    const keys = new ApiKeys([API_KEY]);
    expect(keys.accepts(API_KEY)).toBe(true);
    for (const other of [NEXT, API_KEY.slice(0, -1), `${API_KEY} `, API_KEY.toUpperCase(), '']) expect(keys.accepts(other)).toBe(false);
  });

  it('accepts either key of a rotation, whichever comes first, and refuses others', () => {
    for (const keys of [new ApiKeys([API_KEY, NEXT]), new ApiKeys([NEXT, API_KEY])]) {
      expect([keys.accepts(API_KEY), keys.accepts(NEXT), keys.accepts(`${NEXT}-2`), keys.accepts(`${API_KEY},${NEXT}`)]).toEqual([true, true, false, false]);
    }
  });

  it('keeps no plain key: neither a log of it nor its JSON shows one', () => {
    const keys = new ApiKeys([API_KEY, NEXT]);
    for (const shown of [inspect(keys, { depth: Infinity, showHidden: true }), JSON.stringify(keys)]) {
      expect(shown).not.toContain(API_KEY);
      // Nor as bytes: inspect shows a Buffer's bytes as "<Buffer 74 65 73 74 …>".
      expect(shown).not.toContain(inspect(Buffer.from(API_KEY)).slice('<Buffer '.length, 40));
    }
  });
});
