/** What a release needs to know about the checkout: the commit and its time. */
import { execFileSync } from 'node:child_process';
import { StellaError } from '../errors.ts';

export interface SourceRevision {
  readonly commit: string;
  /** Committer time, seconds: SOURCE_DATE_EPOCH of everything built from it. */
  readonly time: number;
  /** Working tree has changes not in the commit (the release then cannot claim to be that commit). */
  readonly dirty: boolean;
}

export function sourceRevision(dir: string): SourceRevision {
  const git = (...args: string[]) => execFileSync('git', ['-C', dir, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  try {
    const commit = git('rev-parse', 'HEAD');
    const time = Number(git('log', '-1', '--format=%ct', 'HEAD'));
    const dirty = git('status', '--porcelain', '--untracked-files=no') !== '';
    return { commit, time, dirty };
  } catch (e) {
    throw new StellaError('INVALID_ARGUMENT', `${dir} is not a git checkout with a commit (${(e as Error).message.split('\n')[0]}); pass --git-commit and --source-date-epoch explicitly`);
  }
}
