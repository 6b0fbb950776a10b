/**
 * The server API's bearer keys (RELAY_API_KEY), held as SHA-256 digests: derived once when the config is loaded, so a
 * request hashes only the key it was given, and the plain keys are not kept.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export class ApiKeys {
  private readonly digests: readonly Buffer[];

  /** One key, or two during a rotation (service/config-fields.ts checks them). */
  constructor(keys: readonly string[]) {
    this.digests = keys.map(digest);
  }

  /** Whether `key` is one of the keys: compared with every key, in constant time over fixed-length digests. */
  accepts(key: string): boolean {
    const given = digest(key);
    let ok = false;
    for (const d of this.digests) ok = timingSafeEqual(given, d) || ok;
    return ok;
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
