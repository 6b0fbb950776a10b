import { redactUrl } from '../../service/redact';
import { redactUrl as backplaneRedactUrl } from '../../service/backplane/redis-common';

describe('redactUrl', () => {
  it.each([
    // The attack: the old pattern stopped at the first "@" and printed "ss@host".
    ['redis://:pa@ss@host', 'redis://:***@host'],
    ['rediss://:pa@ss@cache.example.com:6379/0', 'rediss://:***@cache.example.com:6379/0'],
    ['rediss://user:p@w:rd@h:1', 'rediss://user:***@h:1'],
    ['redis://:a:b:c@h', 'redis://:***@h'],
    ['redis://:p%40ss@host', 'redis://:***@host'],
    ['redis://u:pw@h/x@y', 'redis://u:***@h/x@y'],
    ['redis://:pw@h?x=@y', 'redis://:***@h?x=@y'],
    // A user name alone may be the password (some clients put the AUTH token there).
    ['redis://secret@host:6379', 'redis://***@host:6379'],
    // Nothing to hide: unchanged, byte for byte.
    ['redis://host:6379', 'redis://host:6379'],
    ['rediss://cache.example.com:6379', 'rediss://cache.example.com:6379'],
    // Unparseable: everything between the scheme and the last "@" goes.
    ['redis://:pa/ss@host', 'redis://:***@host'],
    ['redis://:pw@[::1', 'redis://:***@[::1'],
    ['not a url :pw@x', 'not a url :***@x'],
  ])('%s → %s', (url, expected) => {
    expect(redactUrl(url)).toBe(expected);
  });

  it('is what the Redis backplane logs with', () => {
    expect(backplaneRedactUrl('redis://:pa@ss@host')).toBe('redis://:***@host');
  });
});
