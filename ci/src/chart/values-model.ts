/**
 * The chart's values as one typed tree: every value with its type, default, bounds,
 * choices and description. values.yaml (commented), values.schema.json (strict:
 * `additionalProperties: false` on every object the chart owns) and the values
 * reference (README.md, docs/install/helm-prod.md) are all rendered from it
 * (./render.ts), so they cannot disagree.
 */

export type LeafType = 'string' | 'integer' | 'boolean' | 'number';

export interface Leaf {
  readonly kind: 'leaf';
  readonly type: LeafType;
  readonly doc: string;
  readonly default: string | number | boolean;
  readonly choices?: readonly string[];
  readonly minimum?: number;
  readonly maximum?: number;
  readonly pattern?: string;
}

export interface Obj {
  readonly kind: 'object';
  readonly doc: string;
  readonly props: Readonly<Record<string, Node>>;
}

/** A free-form map (labels, annotations, nodeSelector): string values, or any (Kubernetes objects). */
export interface FreeMap {
  readonly kind: 'map';
  readonly doc: string;
  readonly values: 'string' | 'any';
  readonly default: Readonly<Record<string, unknown>>;
}

export interface List {
  readonly kind: 'list';
  readonly doc: string;
  /** `string` items, or `object` items (Kubernetes objects, passed through). */
  readonly items: 'string' | 'object';
  readonly default: readonly unknown[];
}

export type Node = Leaf | Obj | FreeMap | List;

export const str = (def: string, doc: string, more: Partial<Pick<Leaf, 'choices' | 'pattern'>> = {}): Leaf => ({ kind: 'leaf', type: 'string', doc, default: def, ...more });
export const int = (def: number, doc: string, min?: number, max?: number): Leaf => ({ kind: 'leaf', type: 'integer', doc, default: def, minimum: min, maximum: max });
export const bool = (def: boolean, doc: string): Leaf => ({ kind: 'leaf', type: 'boolean', doc, default: def });
export const obj = (doc: string, props: Record<string, Node>): Obj => ({ kind: 'object', doc, props });
export const map = (doc: string, values: 'string' | 'any' = 'string', def: Record<string, unknown> = {}): FreeMap => ({ kind: 'map', doc, values, default: def });
export const list = (doc: string, items: 'string' | 'object' = 'object', def: unknown[] = []): List => ({ kind: 'list', doc, items, default: def });

/** The default value tree of a node (what values.yaml holds). */
export function defaults(n: Node): unknown {
  switch (n.kind) {
    case 'leaf':
      return n.default;
    case 'map':
      return { ...n.default };
    case 'list':
      return [...n.default];
    case 'object':
      return Object.fromEntries(Object.entries(n.props).map(([k, v]) => [k, defaults(v)]));
  }
}

/** Every leaf (and map/list) with its dotted path, depth first, in declaration order. */
export function walk(n: Node, path: string[] = []): { path: string; node: Exclude<Node, Obj> }[] {
  if (n.kind !== 'object') return [{ path: path.join('.'), node: n }];
  return Object.entries(n.props).flatMap(([k, v]) => walk(v, [...path, k]));
}

/** The node at a dotted path, or undefined. */
export function nodeAt(root: Node, path: string): Node | undefined {
  let n: Node | undefined = root;
  for (const part of path.split('.')) {
    if (!n || n.kind !== 'object') return undefined;
    n = n.props[part];
  }
  return n;
}

/** Draft-07 JSON schema of a node: strict objects, typed leaves with bounds and choices. */
export function schemaOf(n: Node): Record<string, unknown> {
  switch (n.kind) {
    case 'leaf': {
      const s: Record<string, unknown> = { type: n.type, description: n.doc };
      if (n.choices) s.enum = [...n.choices];
      if (n.minimum !== undefined) s.minimum = n.minimum;
      if (n.maximum !== undefined) s.maximum = n.maximum;
      if (n.pattern) s.pattern = n.pattern;
      return s;
    }
    case 'map':
      return { type: 'object', description: n.doc, additionalProperties: n.values === 'string' ? { type: 'string' } : true };
    case 'list':
      return { type: 'array', description: n.doc, items: n.items === 'string' ? { type: 'string' } : { type: 'object' } };
    case 'object':
      return {
        type: 'object',
        description: n.doc,
        additionalProperties: false,
        properties: Object.fromEntries(Object.entries(n.props).map(([k, v]) => [k, schemaOf(v)])),
      };
  }
}
