/**
 * Docker credential helpers (`credHelpers`, `credsStore` in config.json) run as
 * Docker runs them — `docker-credential-<name> get`, the server URL on stdin,
 * `{ServerURL,Username,Secret}` on stdout — against a real distribution 2.8
 * behind an authenticating proxy (Basic and the bearer-token flow). The helpers
 * are real shell scripts on PATH in a temp dir.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient } from '../../ci/src/registry/index.ts';
import { sha256Digest } from '../../ci/src/oci/types.ts';
import { StellaError } from '../../ci/src/errors.ts';
import { registryAvailable, REGISTRY_BIN, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { CHECK_RUNS_IN, underCi } from '../helpers/tools.ts';

const PASSWORD = 'canary-helper-secret-8c41d2';
const USER = 'helper-bot';
const TOKEN = 'canary-helper-token-51aa7e';
const CI = underCi();
const runnable = registryAvailable() || CI;

describe.skipIf(!runnable)(`Docker credential helpers${runnable ? '' : ` (skipped: ${REGISTRY_BIN} is missing; scripts/host-setup.sh installs it; this check runs in ${CHECK_RUNS_IN})`}`, () => {
  let registry: TestRegistry;
  let bearer: FaultProxy;
  let basic: FaultProxy;
  let dir: string;
  let savedPath: string | undefined;
  const blob = new TextEncoder().encode('pushed with helper credentials');

  /** A helper script: answers for `host` with the canary credentials, "not found" for anything else; logs what it was asked. */
  function helper(name: string, body: string): void {
    const file = join(dir, 'bin', `docker-credential-${name}`);
    writeFileSync(file, `#!/bin/sh\n${body}\n`);
    chmodSync(file, 0o755);
  }

  function config(name: string, cfg: unknown): string {
    const file = join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify(cfg));
    return file;
  }

  /** The StellaError `fn` ends with: thrown by the constructor (helper) or by the request. */
  async function failure(fn: () => Promise<unknown>): Promise<StellaError> {
    const e = await Promise.resolve().then(fn).then(() => undefined, (err: unknown) => err);
    expect(e).toBeInstanceOf(StellaError);
    return e as StellaError;
  }

  beforeAll(async () => {
    registry = await startRegistry();
    bearer = await startFaultProxy({ upstream: registry.host, auth: { mode: 'bearer', username: USER, password: PASSWORD, token: TOKEN } });
    basic = await startFaultProxy({ upstream: registry.host, auth: { mode: 'basic', username: USER, password: PASSWORD, token: TOKEN } });
    dir = mkdtempSync(join(tmpdir(), 'stella-credhelpers-'));
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, 'bin'));
    const answer = (host: string) =>
      `read url; echo "get $url" >> "${dir}/asked.log"\nif [ "$url" = "${host}" ]; then printf '{"ServerURL":"%s","Username":"${USER}","Secret":"${PASSWORD}"}' "$url"; else echo "credentials not found in native keychain"; exit 1; fi`;
    helper('stella-bearer', answer(bearer.host));
    helper('stella-basic', answer(basic.host));
    helper('stella-none', 'read url; echo "credentials not found in native keychain"; exit 1');
    helper('stella-broken', `read url; echo "keychain locked" >&2; exit 3`);
    helper('stella-garbled', `read url; echo "Secret=${PASSWORD} (not JSON)"`);
    savedPath = process.env.PATH;
    process.env.PATH = `${join(dir, 'bin')}:${process.env.PATH ?? ''}`;
  });
  afterAll(async () => {
    process.env.PATH = savedPath;
    await bearer?.stop();
    await basic?.stop();
    await registry?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('credHelpers[host] wins over credsStore and auths: the bearer-token flow gets its credentials from the helper', async () => {
    const cfg = config('helpers', {
      credsStore: 'not-installed-anywhere',
      credHelpers: { [bearer.host]: 'stella-bearer' },
      auths: { [bearer.host]: { auth: Buffer.from(`${USER}:wrong-password`).toString('base64') } },
    });
    const client = new RegistryClient({ registry: bearer.host, dockerConfig: cfg });
    expect(await client.pushBlob('helper/bearer', blob, sha256Digest(blob))).toBe('pushed');
    expect(await client.getBlob('helper/bearer', sha256Digest(blob))).toEqual(blob);
    expect(bearer.tokenCalls.granted).toBeGreaterThan(0);
    expect(bearer.tokenCalls.refused).toBe(0);
    // The helper was asked once (by the constructor), with the registry host on stdin.
    expect(readFileSync(join(dir, 'asked.log'), 'utf8').trim().split('\n')).toEqual([`get ${bearer.host}`]);
  });

  it('credsStore is used when no credHelpers entry names the registry (Basic auth)', async () => {
    const cfg = config('store', { credsStore: 'stella-basic', credHelpers: { 'other.example': 'stella-bearer' } });
    const client = new RegistryClient({ registry: basic.host, dockerConfig: cfg });
    expect(await client.pushBlob('helper/basic', blob, sha256Digest(blob))).toBe('pushed');
    expect(basic.requests.some((r) => r.authorization === `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`)).toBe(true);
  });

  it('a helper answering "credentials not found" means anonymous: the registry then refuses, saying no credentials were given', async () => {
    const cfg = config('none', { credsStore: 'stella-none' });
    const e = await failure(() => new RegistryClient({ registry: bearer.host, dockerConfig: cfg, retry: { attempts: 1, baseMs: 0, maxMs: 0 } }).ping());
    expect(e.code).toBe('REGISTRY_AUTH');
    expect(e.message).toMatch(/no credentials were given/);
    // And anonymous really works where the registry allows it.
    expect(await new RegistryClient({ registry: registry.host, dockerConfig: cfg }).ping()).toBe(true);
  });

  it('a helper missing from PATH is a clear error naming the helper and the registry', async () => {
    const cfg = config('missing', { credHelpers: { [bearer.host]: 'not-installed-anywhere' } });
    const e = await failure(() => new RegistryClient({ registry: bearer.host, dockerConfig: cfg }).ping());
    expect(e.code).toBe('REGISTRY_AUTH');
    expect(e.message).toContain('docker-credential-not-installed-anywhere');
    expect(e.message).toContain(`registry ${bearer.host}`);
    expect(e.message).toMatch(/is not on PATH/);
  });

  it('a failing helper is a clear error with its exit status; a garbled answer never shows what the helper printed', async () => {
    const broken = await failure(() => new RegistryClient({ registry: bearer.host, dockerConfig: config('broken', { credsStore: 'stella-broken' }) }).ping());
    expect(broken.code).toBe('REGISTRY_AUTH');
    expect(broken.message).toContain('docker-credential-stella-broken');
    expect(broken.message).toContain(`registry ${bearer.host}`);
    expect(broken.message).toMatch(/failed \(exit 3\): keychain locked/);

    const garbled = await failure(() => new RegistryClient({ registry: bearer.host, dockerConfig: config('garbled', { credsStore: 'stella-garbled' }) }).ping());
    expect(garbled.message).toContain('docker-credential-stella-garbled');
    expect(garbled.message).toMatch(/not JSON/);
    expect(`${garbled.message}\n${garbled.stack}`).not.toContain(PASSWORD);
  });

  it('the helper-provided secret never shows in errors or events', async () => {
    const events: string[] = [];
    const cfg = config('redact', { credHelpers: { [basic.host]: 'stella-basic' } });
    const client = new RegistryClient({ registry: basic.host, dockerConfig: cfg, onEvent: (e) => events.push(JSON.stringify(e)), retry: { attempts: 1, baseMs: 0, maxMs: 0 } });
    // A server that echoes the Authorization header it got in its error body.
    basic.fault({ method: 'GET', path: /\/blobs\//, action: { kind: 'status', status: 400, body: `bad request with Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')} and ${PASSWORD}` } });
    const e = await failure(() => client.getBlob('helper/basic', sha256Digest(blob)));
    const visible = `${e.message}\n${e.stack}\n${events.join('\n')}`;
    expect(visible).not.toContain(PASSWORD);
    expect(visible).not.toContain(Buffer.from(`${USER}:${PASSWORD}`).toString('base64'));
  });
});
