/** stella-excitator (Vexer): VEX aggregator; immutable source records, links, never merges. */
import { runService } from '../runtime/service.ts';
import { aggregatorService } from '../shared/aggregator.ts';

/** A VEX statement's identity: its id, else vulnerability + product. */
const statementId = (doc: unknown): string | undefined => {
  if (!doc || typeof doc !== 'object') return undefined;
  const d = doc as Record<string, unknown>;
  if (typeof d.id === 'string') return d.id;
  if (typeof d.vulnerability === 'string' && typeof d.product === 'string') return `${d.vulnerability}@${d.product}`;
  return undefined;
};

await runService(aggregatorService({ name: 'excitator', kind: 'VEX statement', seedFile: 'vex.json', documentId: statementId }));
