import { catalog as theCatalog, dependencyConfig } from './catalog.ts';
import type { ConfigKey, ServiceName, ServiceSpec, Catalog } from './types.ts';
import { StellaError } from '../errors.ts';

/** Every configuration key a service reads: shared keys, its dependencies' keys, its own. */
export function configFor(s: ServiceSpec, c: Catalog = theCatalog): ConfigKey[] {
  const port: ConfigKey = { key: 'STELLA_HTTP_PORT', type: 'integer', group: 'Runtime', default: s.http.port, min: 1, max: 65535, description: 'Port of the HTTP listener (health, version, metrics and the API or UI).' };
  const deps = s.dependsOn.flatMap((d) => dependencyConfig[d] ?? []);
  return [port, ...c.sharedConfig, ...deps, ...s.config];
}

export function serviceByName(name: string, c: Catalog = theCatalog): ServiceSpec {
  const s = c.services.find((x) => x.name === name);
  if (!s) {
    throw new StellaError('INVALID_ARGUMENT', `unknown service "${name}"; the catalog has: ${c.services.map((x) => x.name).join(', ')}`);
  }
  return s;
}

/** Parses a comma-separated service selection ("" or "all" = every service), keeping catalog order. */
export function selectServices(selection: string | readonly string[] | undefined, c: Catalog = theCatalog): ServiceSpec[] {
  const raw = typeof selection === 'string' ? selection.split(',') : (selection ?? []);
  const names = raw.map((x) => x.trim()).filter(Boolean);
  if (names.length === 0 || (names.length === 1 && names[0] === 'all')) return [...c.services];
  const wanted = new Set<ServiceName>(names.map((n) => serviceByName(n, c).name));
  return c.services.filter((s) => wanted.has(s.name));
}
