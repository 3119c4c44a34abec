import { createHash } from 'node:crypto';

/**
 * The console's "Export pack to production": the tenant's data as a Task Pack (the pack
 * format of services/seed/task-pack.json, described by ./task-pack.schema.json) that carries
 * the data and its SHA-256; its steps are `echo` steps that report what it carries.
 */
export function taskPack(id: string, tenant: string, target: string, producedBy: { service: string; version: string }, data: Record<string, unknown[]>) {
  const counts = Object.entries(data).map(([k, v]) => `${v.length} ${k}`).join(', ');
  const digest = createHash('sha256').update(JSON.stringify(data)).digest('hex');
  return {
    apiVersion: 'stellaops.io/v1',
    kind: 'TaskPack',
    id: `pack-quickstart-export-${id.slice(0, 8)}`,
    name: `Quickstart data of tenant ${tenant}, for a ${target} tenant`,
    version: '1.0.0',
    source: { exportId: id, tenant, target, producedBy, createdAt: new Date().toISOString() },
    steps: [
      { id: 'summary', kind: 'echo', text: `Quickstart export ${id} of tenant ${tenant}: ${counts}` },
      { id: 'verify', kind: 'echo', text: `data sha256 ${digest} (SHA-256 of JSON.stringify(data))` },
    ],
    data,
    digest: { algorithm: 'sha256', data: digest },
  };
}
