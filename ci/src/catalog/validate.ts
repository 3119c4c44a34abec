import { StellaError } from '../errors.ts';
import { SERVICE_NAMES, SUPPORT_NAMES, type Catalog, type ConfigKey } from './types.ts';
import { configFor } from './config.ts';

/**
 * Checks the catalog's own consistency. Returns every problem found (empty when
 * valid); `assertValidCatalog` throws them all at once.
 */
export function validateCatalog(c: Catalog): string[] {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const s of [...c.services, ...c.support]) {
    if (names.has(s.name)) problems.push(`duplicate service name "${s.name}"`);
    names.add(s.name);
  }
  const missing = SERVICE_NAMES.filter((n) => !c.services.some((s) => s.name === n));
  if (missing.length) problems.push(`services missing from the catalog: ${missing.join(', ')}`);

  const ports = new Map<number, string>();
  const claim = (port: number, owner: string) => {
    if (!Number.isInteger(port) || port < 1 || port > 65535) problems.push(`${owner}: port ${port} is not a TCP port`);
    const prev = ports.get(port);
    if (prev) problems.push(`port ${port} is used by both ${prev} and ${owner}`);
    else ports.set(port, owner);
  };
  for (const s of c.services) claim(s.http.port, s.name);
  for (const s of c.support) for (const p of s.ports) claim(p.port, `${s.name}/${p.name}`);

  const published = new Map<number, string>();
  for (const s of [...c.services, ...c.support]) {
    if (s.publishedPort === undefined) continue;
    const prev = published.get(s.publishedPort);
    if (prev) problems.push(`published port ${s.publishedPort} is used by both ${prev} and ${s.name}`);
    else published.set(s.publishedPort, s.name);
  }

  const images = new Set<string>();
  for (const s of c.services) {
    if (images.has(s.image)) problems.push(`duplicate image repository "${s.image}"`);
    images.add(s.image);
    if (!/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(s.image)) problems.push(`${s.name}: image name "${s.image}" is not a valid OCI repository component`);
    for (const d of s.dependsOn) {
      const known = (SUPPORT_NAMES as readonly string[]).includes(d) || (SERVICE_NAMES as readonly string[]).includes(d);
      if (!known || !names.has(d)) problems.push(`${s.name}: depends on "${d}", which is not in the catalog`);
      if (d === s.name) problems.push(`${s.name}: depends on itself`);
    }
    const keys = new Set<string>();
    for (const k of configFor(s)) {
      if (keys.has(k.key)) problems.push(`${s.name}: configuration key ${k.key} is declared twice`);
      keys.add(k.key);
      problems.push(...validateKey(s.name, k));
    }
  }
  for (const k of c.sharedConfig) problems.push(...validateKey('shared', k));
  return problems;
}

function validateKey(owner: string, k: ConfigKey): string[] {
  const p: string[] = [];
  const where = `${owner}: ${k.key}`;
  if (!/^STELLA_[A-Z0-9_]+$/.test(k.key)) p.push(`${where}: configuration keys must match STELLA_[A-Z0-9_]+`);
  if (k.key.endsWith('_FILE')) p.push(`${where}: the _FILE suffix is reserved for file-mounted values`);
  if (k.secret && k.default !== undefined) p.push(`${where}: a secret must not have a default`);
  if (k.secret && k.discoverable) p.push(`${where}: a secret must not be discoverable`);
  if (k.required && k.default !== undefined) p.push(`${where}: a required key cannot have a default`);
  if (k.type === 'enum' && (!k.choices || k.choices.length === 0)) p.push(`${where}: an enum needs choices`);
  if (k.type === 'enum' && k.default !== undefined && !k.choices?.includes(String(k.default))) p.push(`${where}: default "${k.default}" is not one of ${k.choices?.join(', ')}`);
  if (k.type === 'integer' && k.default !== undefined && typeof k.default !== 'number') p.push(`${where}: integer default must be a number`);
  if (k.type === 'boolean' && k.default !== undefined && typeof k.default !== 'boolean') p.push(`${where}: boolean default must be true or false`);
  if (k.type === 'integer' && typeof k.default === 'number') {
    if (k.min !== undefined && k.default < k.min) p.push(`${where}: default ${k.default} is below the minimum ${k.min}`);
    if (k.max !== undefined && k.default > k.max) p.push(`${where}: default ${k.default} is above the maximum ${k.max}`);
  }
  if (!k.description.trim()) p.push(`${where}: needs a description`);
  return p;
}

export function assertValidCatalog(c: Catalog): void {
  const problems = validateCatalog(c);
  if (problems.length) {
    throw new StellaError('CATALOG_INVALID', `the service catalog is invalid:\n  - ${problems.join('\n  - ')}`);
  }
}
