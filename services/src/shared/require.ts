/** Service-level configuration rules: keys a service's role cannot work without. */
import type { Config } from '../runtime/config.ts';

/** Problems for each of `keys` that is unset (each naming the key and how to set it). */
export function requireKeys(config: Config, service: string, keys: readonly string[]): string[] {
  return keys
    .filter((k) => !config.has(k))
    .map((k) => `${k} is required by ${service} but is not set (set ${k}, ${k}_FILE or the file ${k} in STELLA_CONFIG_DIR)`);
}
