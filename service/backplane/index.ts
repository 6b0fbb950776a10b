import type { Logger } from 'pino';
import type { ServiceConfig } from '../config';
import { ClusterBackplane } from './cluster';
import { MemoryBackplane } from './memory';
import { RedisBackplane } from './redis';
import type { Backplane } from './types';

export type { Backplane, BackplaneState, BackplaneStatus, FrameHandler, Target } from './types';
export { BackplaneUnavailableError } from './types';

/** Picks the backplane the configuration asks for: in-memory without REDIS_URL, else Redis (standalone or cluster). */
export function createBackplane(config: ServiceConfig, logger: Logger): Backplane {
  const history = { size: config.historySize, ttlSeconds: config.historyTtlSeconds, replayMax: config.historyReplayMax };
  if (!config.redisUrl) return new MemoryBackplane(history, logger.child({ component: 'backplane' }));
  const opts = {
    history,
    url: config.redisUrl,
    authToken: config.redisAuthToken,
    tlsCaFile: config.redisTlsCaFile,
    channelPrefix: config.channelPrefix,
    instanceId: config.instanceId,
    logger: logger.child({ component: 'backplane' }),
  };
  return config.redisMode === 'cluster' ? new ClusterBackplane(opts) : new RedisBackplane(opts);
}
