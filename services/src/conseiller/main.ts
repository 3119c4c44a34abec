/** stella-conseiller (Feedser): advisory aggregator; immutable source records, links, never merges. */
import { runService } from '../runtime/service.ts';
import { aggregatorService } from '../shared/aggregator.ts';

const advisoryId = (doc: unknown): string | undefined => {
  if (!doc || typeof doc !== 'object') return undefined;
  const d = doc as Record<string, unknown>;
  const id = d.id ?? d.cve ?? (d.document as Record<string, unknown> | undefined)?.tracking;
  return typeof id === 'string' ? id : undefined;
};

await runService(aggregatorService({ name: 'conseiller', kind: 'advisory', seedFile: 'advisories.json', documentId: advisoryId }));
