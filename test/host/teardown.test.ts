/**
 * Host setup/teardown are per RUN (issue 14): a run's teardown stops exactly what that run's setup
 * started, by pid (same start time, same program), never what another run started or what was
 * already running; a daemon another LIVE run uses is handed to that run instead of stopped.
 *
 * For real, with the real scripts, but on a separate set of services so the host's own dockerd,
 * registry (127.0.0.1:5000) and referrers registry (127.0.0.1:5001) are never touched: its own
 * STELLA_HOST_STATE, free loopback ports for both registries, and a second dockerd with its own
 * socket, pidfile, data-root and exec-root (and no bridge/iptables, so it leaves the host's network
 * alone). Each run's owner (the process it is "live" for) is a `sleep` this test controls.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/net.ts';
import { skipUnless } from '../helpers/tools.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const root = process.getuid?.() === 0;
const skip = skipUnless(
  ['dockerd', 'docker', 'docker-registry', 'go', 'curl', 'flock', { name: 'root', ok: root, hint: 'host-setup must run as root' }],
  'host setup/teardown per run',
);

interface Run {
  readonly code: number | null;
  readonly out: string;
}
const SVCS = ['dockerd', 'registry', 'referrers-registry'] as const;

describe.skipIf(skip)('host setup/teardown stop only what their own run started', () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  let registry: string;
  let referrers: string;
  let sock: string;
  let bridge = '';
  // Whether the host daemon had its default bridge when this file started.
  const hostBridge = (() => {
    try {
      execFileSync('ip', ['link', 'show', 'docker0'], { stdio: 'pipe' });
      return true;
    } catch {
      return false;
    }
  })();
  const owners: ChildProcess[] = [];

  beforeAll(async () => {
    // Short path: dockerd's exec-root holds containerd's unix socket (108-byte limit).
    dir = mkdtempSync('/tmp/sht-');
    registry = `127.0.0.1:${await freePort()}`;
    referrers = `127.0.0.1:${await freePort()}`;
    sock = join(dir, 'docker.sock');
    // The second dockerd gets a bridge of its own. With --bridge=none, dockerd DELETES an existing
    // docker0 at start (it "cleans up" the default bridge), which cuts the host daemon's containers off.
    bridge = `sht${process.pid % 100000}`;
    execFileSync('ip', ['link', 'add', bridge, 'type', 'bridge']);
    env = {
      ...process.env,
      STELLA_HOST_STATE: join(dir, 'state'),
      STELLA_REGISTRY_ADDR: registry,
      STELLA_REGISTRY_ROOT: join(dir, 'registry'),
      STELLA_REFERRERS_ADDR: referrers,
      STELLA_REFERRERS_ROOT: join(dir, 'referrers'),
      STELLA_DOCKER_SOCK: sock,
      STELLA_DOCKER_PIDFILE: join(dir, 'docker.pid'),
      STELLA_DOCKER_DATA_ROOT: join(dir, 'docker-data'),
      STELLA_DOCKER_EXEC_ROOT: join(dir, 'x'),
      STELLA_DOCKERD_EXTRA_ARGS: `--bridge=${bridge} --iptables=false --ip-masq=false --ip-forward=false`,
      STELLA_TEARDOWN_WAIT: '20',
    };
  });

  afterAll(async () => {
    // Whatever a failed assertion left running in THIS test's state: stop it through the scripts.
    for (const id of existsSync(join(dir, 'state/runs')) ? readdirSync(join(dir, 'state/runs')) : []) {
      for (const svc of SVCS) {
        const f = join(dir, 'state/runs', id, `${svc}.pid`);
        if (existsSync(f)) await sh('scripts/host-teardown.sh', id, {});
      }
    }
    for (const o of owners) o.kill('SIGKILL');
    if (bridge) execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });

  function sh(script: string, id: string, extra: NodeJS.ProcessEnv): Promise<Run> {
    return new Promise((done, fail) => {
      const p = spawn('bash', [script], { cwd: ROOT, env: { ...env, STELLA_HOST_RUN_ID: id, ...extra }, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => (out += String(d)));
      p.stderr.on('data', (d) => (out += String(d)));
      p.on('error', fail);
      p.on('exit', (code) => done({ code, out }));
    });
  }
  /** A process standing for the run's owner (a CI job, a developer's shell). */
  function owner(): ChildProcess {
    const o = spawn('sleep', ['3600'], { stdio: 'ignore' });
    owners.push(o);
    return o;
  }
  async function setup(id: string, o: ChildProcess): Promise<Run> {
    const r = await sh('scripts/host-setup.sh', id, { STELLA_HOST_OWNER_PID: String(o.pid) });
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain(`STELLA_HOST_RUN_ID=${id}`);
    return r;
  }
  async function teardown(id: string): Promise<Run> {
    const r = await sh('scripts/host-teardown.sh', id, {});
    expect(r.code, r.out).toBe(0);
    return r;
  }
  const runDir = (id: string) => join(dir, 'state/runs', id);
  const started = (id: string) => SVCS.filter((s) => existsSync(join(runDir(id), `${s}.pid`)));
  const pidOf = (id: string, svc: string) => Number(readFileSync(join(runDir(id), `${svc}.pid`), 'utf8').split(' ')[0]);
  const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');

  function dockerPing(): Promise<boolean> {
    return new Promise((done) => {
      const req = request({ socketPath: sock, path: '/_ping', timeout: 3000 }, (res) => {
        res.resume();
        done(res.statusCode === 200);
      });
      req.on('error', () => done(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
  }
  async function answers(): Promise<Record<string, boolean>> {
    const get = async (url: string) => {
      try {
        return (await fetch(url, { signal: AbortSignal.timeout(3000) })).status === 200;
      } catch {
        return false;
      }
    };
    return {
      dockerd: await dockerPing(),
      registry: await get(`http://${registry}/v2/`),
      // The referrers API itself (OCI 1.1), not just /v2/.
      'referrers-registry': await get(`http://${referrers}/v2/stella/probe/referrers/sha256:${'0'.repeat(64)}`),
    };
  }
  const ALL_UP = { dockerd: true, registry: true, 'referrers-registry': true };
  const ALL_DOWN = { dockerd: false, registry: false, 'referrers-registry': false };

  it('a second run (setup + teardown, as .ci/run does) leaves the first run\'s daemons running; the first run\'s teardown then stops them', async () => {
    expect(await answers()).toEqual(ALL_DOWN);
    const o1 = owner();
    const s1 = await setup('run-1', o1);
    expect(s1.out).toMatch(/docker engine \.\.\. ok \(started by this run, pid \d+/);
    expect(started('run-1')).toEqual([...SVCS]);
    const pids = SVCS.map((s) => pidOf('run-1', s));
    expect(await answers()).toEqual(ALL_UP);
    const env1 = readFileSync(join(runDir('run-1'), 'env.sh'), 'utf8');
    expect(env1).toContain('STELLA_HOST_RUN_ID=run-1');
    expect(readFileSync(join(dir, 'state/env.sh'), 'utf8')).toContain(`STELLA_REFERRERS_REGISTRY='${referrers}'`);

    // Run 2 finds everything running: it uses it, records nothing as its own, and its teardown stops nothing.
    const o2 = owner();
    const s2 = await setup('run-2', o2);
    expect(s2.out).toMatch(/already running, started by live run run-1/);
    expect(started('run-2')).toEqual([]);
    const t2 = await teardown('run-2');
    expect(t2.out).toMatch(/registry \.\.\. not started by run run-2 .*left running/);
    expect(existsSync(runDir('run-2'))).toBe(false);
    expect(await answers()).toEqual(ALL_UP);
    for (const p of pids) expect(alive(p)).toBe(true);

    // A teardown without a run id stops nothing.
    const none = await sh('scripts/host-teardown.sh', '', {});
    expect(none.code).toBe(2);
    expect(await answers()).toEqual(ALL_UP);

    const t1 = await teardown('run-1');
    for (const s of SVCS) expect(t1.out).toMatch(new RegExp(`${s} \\.\\.\\. stopped \\(pid \\d+, started by run run-1\\)`));
    expect(await answers()).toEqual(ALL_DOWN);
    for (const p of pids) expect(alive(p)).toBe(false);
    expect(existsSync(runDir('run-1'))).toBe(false);
    // Safe to run twice.
    expect((await teardown('run-1')).out).toContain('nothing to stop');
  }, 600_000);

  it('the first run tearing down while a second run still uses its daemons hands them over; the second run\'s teardown stops them', async () => {
    const o1 = owner();
    await setup('a', o1);
    const pids = SVCS.map((s) => pidOf('a', s));
    const o2 = owner();
    await setup('b', o2);
    const ta = await teardown('a');
    for (const s of SVCS) expect(ta.out).toContain(`${s} ... pid ${pidOf('b', s)} is used by live run b: left running`);
    expect(await answers()).toEqual(ALL_UP);
    expect(SVCS.map((s) => pidOf('b', s))).toEqual(pids);
    const tb = await teardown('b');
    expect(tb.out).toMatch(/dockerd \.\.\. stopped/);
    expect(await answers()).toEqual(ALL_DOWN);
  }, 600_000);

  it('a run whose owner has exited does not keep daemons alive; a pid record pointing at another program is never killed', async () => {
    const o1 = owner();
    await setup('c', o1);
    const o2 = owner();
    await setup('d', o2);
    o2.kill('SIGKILL');
    await new Promise((r) => o2.once('exit', r));
    // Run d's owner is gone: it no longer counts as using c's daemons.
    const tc = await teardown('c');
    expect(tc.out).toMatch(/registry \.\.\. stopped/);
    expect(await answers()).toEqual(ALL_DOWN);
    // A forged record (a live pid that is not the recorded program) is dropped as stale, the process left alone.
    const victim = owner();
    const stat = readFileSync(`/proc/${victim.pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    writeFileSync(join(runDir('d'), 'registry.pid'), `${victim.pid} ${stat[19]} /usr/bin/docker-registry\n`);
    const td = await teardown('d');
    expect(td.out).toMatch(new RegExp(`registry \\.\\.\\. pid ${victim.pid} no longer runs /usr/bin/docker-registry \\(stale record removed\\)`));
    expect(alive(victim.pid!)).toBe(true);
  }, 600_000);

  it('two setups at the same time: exactly one starts each daemon, and the other run\'s teardown leaves them', async () => {
    const [o1, o2] = [owner(), owner()];
    const [r1, r2] = await Promise.all([sh('scripts/host-setup.sh', 'p', { STELLA_HOST_OWNER_PID: String(o1.pid) }), sh('scripts/host-setup.sh', 'q', { STELLA_HOST_OWNER_PID: String(o2.pid) })]);
    expect(r1.code, r1.out).toBe(0);
    expect(r2.code, r2.out).toBe(0);
    const [first, second] = started('p').length > 0 ? ['p', 'q'] : ['q', 'p'];
    expect(started(first!)).toEqual([...SVCS]);
    expect(started(second!)).toEqual([]);
    await teardown(second!);
    expect(await answers()).toEqual(ALL_UP);
    await teardown(first!);
    expect(await answers()).toEqual(ALL_DOWN);
  }, 600_000);
  // Skipped only where the host daemon itself runs without a default bridge: nothing to protect then.
  it.skipIf(!hostBridge)('the host\'s own docker0 bridge survives a second daemon coming and going', () => {
    // dockerd --bridge=none deletes docker0 at start; the second daemon here has its own bridge.
    expect(() => execFileSync('ip', ['link', 'show', 'docker0'], { stdio: 'pipe' })).not.toThrow();
  });
});
