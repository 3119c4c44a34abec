/**
 * How both front ends name things: functions and arguments are camelCase in
 * TypeScript and kebab-case on a command line (`dagger call build-base
 * --oci-layout …`, `stella-release build-base --oci-layout …`). The one
 * converter of the code base.
 */

/** `buildBase` → `build-base`. */
export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** `registryPassword` → `--registry-password`. */
export function flag(name: string): string {
  return `--${kebab(name)}`;
}
