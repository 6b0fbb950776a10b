/** The recovery settings: defaults, the off switch and the messages for bad values. */
import { ConfigError, loadServiceConfig } from '../../service/config';

describe('recovery configuration', () => {
  it('defaults to a history of 1000 messages per room, 300 s idle TTL and a replay cap of 1000', () => {
    expect(loadServiceConfig({})).toMatchObject({ historySize: 1000, historyTtlSeconds: 300, historyReplayMax: 1000 });
  });

  it('accepts RELAY_HISTORY_SIZE=0 to turn recovery off', () => {
    expect(loadServiceConfig({ RELAY_HISTORY_SIZE: '0', RELAY_HISTORY_TTL_SECONDS: '60', RELAY_HISTORY_REPLAY_MAX: '50' })).toMatchObject({
      historySize: 0,
      historyTtlSeconds: 60,
      historyReplayMax: 50,
    });
  });

  it('fails with one error naming every bad recovery variable, its value and the allowed range', () => {
    let caught: unknown;
    try {
      loadServiceConfig({ RELAY_HISTORY_SIZE: '-1', RELAY_HISTORY_TTL_SECONDS: '0', RELAY_HISTORY_REPLAY_MAX: 'lots' });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const err = caught as ConfigError;
    expect(err.code).toBe('invalid_config');
    expect(err.problems).toEqual([
      { variable: 'RELAY_HISTORY_SIZE', value: '-1', allowed: 'expected an integer from 0 to 1000000 (default 1000)' },
      { variable: 'RELAY_HISTORY_TTL_SECONDS', value: '0', allowed: 'expected an integer from 1 to 604800 (default 300)' },
      { variable: 'RELAY_HISTORY_REPLAY_MAX', value: 'lots', allowed: 'expected an integer from 1 to 1000000 (default 1000)' },
    ]);
    expect(err.message).toContain('  - RELAY_HISTORY_SIZE="-1": expected an integer from 0 to 1000000 (default 1000)');
  });

  it('bounds history bytes per room (1 MiB) and, for the in-memory backplane, in total (256 MiB), and checks they fit each other', () => {
    expect(loadServiceConfig({})).toMatchObject({ historyMaxBytes: 1024 * 1024, historyMemoryMaxBytes: 256 * 1024 * 1024 });
    expect(loadServiceConfig({ RELAY_HISTORY_MAX_BYTES: '65536', RELAY_HISTORY_MEMORY_MAX_BYTES: '1048576' })).toMatchObject({
      historyMaxBytes: 65536,
      historyMemoryMaxBytes: 1048576,
    });
    let caught: unknown;
    try {
      loadServiceConfig({ RELAY_MAX_PAYLOAD_BYTES: '65536', RELAY_HISTORY_MAX_BYTES: '4096', RELAY_HISTORY_MEMORY_MAX_BYTES: '1048576' });
    } catch (err) {
      caught = err;
    }
    expect((caught as ConfigError).problems).toEqual([
      {
        variable: 'RELAY_HISTORY_MAX_BYTES',
        value: '4096',
        allowed: "expected at least RELAY_MAX_PAYLOAD_BYTES (65536) so a room's history can hold its largest message",
      },
    ]);
    expect(() => loadServiceConfig({ RELAY_HISTORY_MAX_BYTES: '8388608', RELAY_HISTORY_MEMORY_MAX_BYTES: '2097152' })).toThrow(
      "RELAY_HISTORY_MEMORY_MAX_BYTES=\"2097152\": expected at least RELAY_HISTORY_MAX_BYTES (8388608) so one room's full history fits",
    );
    expect(() => loadServiceConfig({ RELAY_HISTORY_MAX_BYTES: '12' })).toThrow(
      'RELAY_HISTORY_MAX_BYTES="12": expected an integer from 1024 to 1073741824 (default 1048576)',
    );
  });
});
