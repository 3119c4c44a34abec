/**
 * SPDX 2.3 document validation: structural checks in code (always) and, when the
 * SPDX 2.3 JSON schema is available, full JSON Schema validation (ajv, draft-07).
 * The schema is never copied into the project: it is read from `schemaPath`, else
 * from env SPDX_SCHEMA, else from `../shared/schemas/spdx-2.3.schema.json` next to the
 * repository; when none exists the schema step is skipped and the report says why.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import * as ajvFormats from 'ajv-formats';
import { PackageURL } from 'packageurl-js';
import { StellaError } from '../errors.ts';
import { isSpdxExpression, licenseRefsIn } from './license.ts';
import { DOCUMENT_ID } from './spdx.ts';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** Where the shared SPDX 2.3 schema lives by default, relative to the repository root. */
export const DEFAULT_SPDX_SCHEMA = resolve(REPO_ROOT, '../shared/schemas/spdx-2.3.schema.json');

const RELATIONSHIP_TYPES = new Set([
  'VARIANT_OF', 'COPY_OF', 'PATCH_FOR', 'TEST_DEPENDENCY_OF', 'CONTAINED_BY', 'DATA_FILE_OF', 'OPTIONAL_COMPONENT_OF', 'ANCESTOR_OF',
  'GENERATES', 'CONTAINS', 'OPTIONAL_DEPENDENCY_OF', 'FILE_ADDED', 'REQUIREMENT_DESCRIPTION_FOR', 'DEV_DEPENDENCY_OF', 'DEPENDENCY_OF',
  'BUILD_DEPENDENCY_OF', 'DESCRIBES', 'PREREQUISITE_FOR', 'HAS_PREREQUISITE', 'PROVIDED_DEPENDENCY_OF', 'DYNAMIC_LINK', 'DESCRIBED_BY',
  'METAFILE_OF', 'DEPENDENCY_MANIFEST_OF', 'PATCH_APPLIED', 'RUNTIME_DEPENDENCY_OF', 'TEST_OF', 'TEST_TOOL_OF', 'DEPENDS_ON',
  'SPECIFICATION_FOR', 'FILE_MODIFIED', 'DISTRIBUTION_ARTIFACT', 'AMENDS', 'DOCUMENTATION_OF', 'GENERATED_FROM', 'STATIC_LINK', 'OTHER',
  'BUILD_TOOL_OF', 'TEST_CASE_OF', 'PACKAGE_OF', 'DESCENDANT_OF', 'FILE_DELETED', 'EXPANDED_FROM_ARCHIVE', 'DEV_TOOL_OF', 'EXAMPLE_OF',
]);
const CHECKSUM_HEX: Readonly<Record<string, number>> = { SHA1: 40, SHA224: 56, SHA256: 64, SHA384: 96, SHA512: 128, MD5: 32 };
const SPDXID = /^SPDXRef-[A-Za-z0-9.-]+$/;
const DOCREF = /^DocumentRef-[A-Za-z0-9.-]+$/;
const CREATED = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

export interface SpdxValidationOptions {
  /** Path of the SPDX 2.3 JSON schema; when given it must exist. */
  readonly schemaPath?: string;
  /** Names the document in messages (default: its name and namespace). */
  readonly what?: string;
}

export interface SpdxValidationReport {
  readonly problems: readonly string[];
  /** The schema file used, or why the schema step did not run. */
  readonly schema: { readonly checked: true; readonly path: string } | { readonly checked: false; readonly reason: string };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isAbsoluteUri(v: unknown): boolean {
  if (typeof v !== 'string') return false;
  try {
    new URL(v);
    return true;
  } catch {
    return false;
  }
}

const compiled = new Map<string, ValidateFunction>();

function schemaValidator(path: string): ValidateFunction {
  let v = compiled.get(path);
  if (!v) {
    const ajv = new Ajv({ allErrors: true, strict: false });
    (ajvFormats.default as unknown as (a: Ajv) => Ajv)(ajv);
    v = ajv.compile(JSON.parse(readFileSync(path, 'utf8')) as object);
    compiled.set(path, v);
  }
  return v;
}

/** Which schema file to use, or why there is none. Explicit paths (option, env) must exist. */
export function locateSpdxSchema(schemaPath?: string): { path: string } | { reason: string } {
  const explicit = schemaPath ?? process.env.SPDX_SCHEMA;
  if (explicit) {
    if (!existsSync(explicit)) throw new StellaError('INVALID_ARGUMENT', `SPDX schema ${explicit} (from ${schemaPath ? 'schemaPath' : 'env SPDX_SCHEMA'}) does not exist`);
    return { path: explicit };
  }
  if (existsSync(DEFAULT_SPDX_SCHEMA)) return { path: DEFAULT_SPDX_SCHEMA };
  return { reason: `no SPDX 2.3 schema at ${DEFAULT_SPDX_SCHEMA} and SPDX_SCHEMA is not set` };
}

function structuralProblems(doc: Record<string, unknown>, problems: string[]): void {
  const need = (ok: boolean, msg: string): void => {
    if (!ok) problems.push(msg);
  };
  need(doc.spdxVersion === 'SPDX-2.3', `$.spdxVersion: expected "SPDX-2.3", got ${JSON.stringify(doc.spdxVersion)}`);
  need(doc.dataLicense === 'CC0-1.0', `$.dataLicense: expected "CC0-1.0", got ${JSON.stringify(doc.dataLicense)}`);
  need(doc.SPDXID === DOCUMENT_ID, `$.SPDXID: expected "${DOCUMENT_ID}", got ${JSON.stringify(doc.SPDXID)}`);
  need(typeof doc.name === 'string' && doc.name !== '', '$.name: expected a non-empty string');
  need(isAbsoluteUri(doc.documentNamespace) && !String(doc.documentNamespace).includes('#'), `$.documentNamespace: expected an absolute URI without "#", got ${JSON.stringify(doc.documentNamespace)}`);
  const ci = doc.creationInfo;
  if (!isObject(ci)) problems.push('$.creationInfo: expected an object with created and creators');
  else {
    need(typeof ci.created === 'string' && CREATED.test(ci.created), `$.creationInfo.created: expected YYYY-MM-DDThh:mm:ssZ, got ${JSON.stringify(ci.created)}`);
    need(Array.isArray(ci.creators) && ci.creators.length > 0 && ci.creators.every((c) => typeof c === 'string' && /^(Tool|Organization|Person): \S/.test(c)),
      `$.creationInfo.creators: expected a non-empty list of "Tool: …", "Organization: …" or "Person: …", got ${JSON.stringify(ci.creators)}`);
  }

  // Elements and external documents.
  const ids = new Map<string, string>([[DOCUMENT_ID, '$']]);
  const docRefs = new Set<string>();
  const extRefs = doc.externalDocumentRefs;
  if (extRefs !== undefined) {
    if (!Array.isArray(extRefs)) problems.push('$.externalDocumentRefs: expected an array');
    else extRefs.forEach((r, i) => {
      const p = `$.externalDocumentRefs[${i}]`;
      if (!isObject(r)) return void problems.push(`${p}: expected an object`);
      if (typeof r.externalDocumentId !== 'string' || !DOCREF.test(r.externalDocumentId)) problems.push(`${p}.externalDocumentId: expected DocumentRef-<letters, digits, . or ->, got ${JSON.stringify(r.externalDocumentId)}`);
      else if (docRefs.has(r.externalDocumentId)) problems.push(`${p}.externalDocumentId: ${r.externalDocumentId} is declared twice`);
      else docRefs.add(r.externalDocumentId);
      need(isAbsoluteUri(r.spdxDocument), `${p}.spdxDocument: expected the referenced document's namespace URI, got ${JSON.stringify(r.spdxDocument)}`);
      checkChecksum(r.checksum, `${p}.checksum`, problems);
    });
  }
  const declaredRefs = new Set<string>();
  if (doc.hasExtractedLicensingInfos !== undefined) {
    if (!Array.isArray(doc.hasExtractedLicensingInfos)) problems.push('$.hasExtractedLicensingInfos: expected an array');
    else doc.hasExtractedLicensingInfos.forEach((l, i) => {
      if (!isObject(l) || typeof l.licenseId !== 'string' || !/^LicenseRef-[A-Za-z0-9.-]+$/.test(l.licenseId) || typeof l.extractedText !== 'string' || l.extractedText === '') {
        problems.push(`$.hasExtractedLicensingInfos[${i}]: expected { licenseId: LicenseRef-…, extractedText }`);
      } else declaredRefs.add(l.licenseId);
    });
  }
  const packages = doc.packages;
  if (packages !== undefined && !Array.isArray(packages)) problems.push('$.packages: expected an array');
  const pkgList = Array.isArray(packages) ? packages : [];
  pkgList.forEach((pkg, i) => {
    const p = `$.packages[${i}]`;
    if (!isObject(pkg)) return void problems.push(`${p}: expected an object`);
    const where = typeof pkg.name === 'string' ? `${p} (${pkg.name})` : p;
    if (typeof pkg.SPDXID !== 'string' || !SPDXID.test(pkg.SPDXID)) problems.push(`${where}.SPDXID: expected SPDXRef-<letters, digits, . or ->, got ${JSON.stringify(pkg.SPDXID)}`);
    else if (ids.has(pkg.SPDXID)) problems.push(`${where}.SPDXID: ${pkg.SPDXID} is already used by ${ids.get(pkg.SPDXID)}`);
    else ids.set(pkg.SPDXID, p);
    need(typeof pkg.name === 'string' && pkg.name !== '', `${p}.name: expected a non-empty string`);
    need(typeof pkg.downloadLocation === 'string' && pkg.downloadLocation !== '', `${where}.downloadLocation: expected a URL, NOASSERTION or NONE`);
    if (pkg.checksums !== undefined) {
      if (!Array.isArray(pkg.checksums)) problems.push(`${where}.checksums: expected an array`);
      else pkg.checksums.forEach((c, j) => checkChecksum(c, `${where}.checksums[${j}]`, problems));
    }
    if (Array.isArray(pkg.externalRefs)) {
      pkg.externalRefs.forEach((r, j) => {
        if (isObject(r) && r.referenceType === 'purl') {
          try {
            PackageURL.fromString(String(r.referenceLocator));
          } catch (err) {
            problems.push(`${where}.externalRefs[${j}]: "${String(r.referenceLocator)}" is not a valid purl (${err instanceof Error ? err.message : String(err)})`);
          }
        }
      });
    }
    for (const field of ['licenseDeclared', 'licenseConcluded'] as const) {
      const v = pkg[field];
      if (v === undefined || v === 'NOASSERTION' || v === 'NONE') continue;
      if (typeof v !== 'string' || !isSpdxExpression(v)) {
        problems.push(`${where}.${field}: ${JSON.stringify(v)} is not an SPDX license expression, NOASSERTION or NONE`);
        continue;
      }
      for (const ref of licenseRefsIn(v)) {
        if (!declaredRefs.has(ref)) problems.push(`${where}.${field}: ${ref} has no entry in hasExtractedLicensingInfos (expected its text there)`);
      }
    }
  });
  for (const [key, list] of [['files', doc.files], ['snippets', doc.snippets]] as const) {
    if (Array.isArray(list)) list.forEach((e, i) => {
      if (isObject(e) && typeof e.SPDXID === 'string') {
        if (ids.has(e.SPDXID)) problems.push(`$.${key}[${i}].SPDXID: ${e.SPDXID} is already used by ${ids.get(e.SPDXID)}`);
        else ids.set(e.SPDXID, `$.${key}[${i}]`);
      }
    });
  }

  // Relationships resolve, and the document describes something.
  const resolves = (ref: unknown, allowSpecial: boolean): string | undefined => {
    if (typeof ref !== 'string') return 'is not a string';
    if (allowSpecial && (ref === 'NONE' || ref === 'NOASSERTION')) return undefined;
    const ext = /^(DocumentRef-[A-Za-z0-9.-]+):(SPDXRef-[A-Za-z0-9.-]+)$/.exec(ref);
    if (ext) return docRefs.has(ext[1]!) ? undefined : `refers to ${ext[1]}, which externalDocumentRefs does not declare`;
    return ids.has(ref) ? undefined : 'does not refer to any element of the document (expected SPDXRef-DOCUMENT, a package SPDXID or DocumentRef-…:SPDXRef-…)';
  };
  const described = new Set<string>();
  if (Array.isArray(doc.documentDescribes)) {
    doc.documentDescribes.forEach((d, i) => {
      const why = resolves(d, false);
      if (why) problems.push(`$.documentDescribes[${i}]: ${JSON.stringify(d)} ${why}`);
      else described.add(String(d));
    });
  }
  const rels = doc.relationships;
  if (rels !== undefined && !Array.isArray(rels)) problems.push('$.relationships: expected an array');
  (Array.isArray(rels) ? rels : []).forEach((r, i) => {
    const p = `$.relationships[${i}]`;
    if (!isObject(r)) return void problems.push(`${p}: expected an object`);
    if (typeof r.relationshipType !== 'string' || !RELATIONSHIP_TYPES.has(r.relationshipType)) problems.push(`${p}.relationshipType: ${JSON.stringify(r.relationshipType)} is not an SPDX 2.3 relationship type`);
    const a = resolves(r.spdxElementId, false);
    if (a) problems.push(`${p}.spdxElementId: ${JSON.stringify(r.spdxElementId)} ${a}`);
    const b = resolves(r.relatedSpdxElement, true);
    if (b) problems.push(`${p}.relatedSpdxElement: ${JSON.stringify(r.relatedSpdxElement)} ${b}`);
    if (r.spdxElementId === DOCUMENT_ID && r.relationshipType === 'DESCRIBES' && !b) described.add(String(r.relatedSpdxElement));
  });
  if (described.size === 0) problems.push(`$.relationships: no "${DOCUMENT_ID} DESCRIBES <element>" relationship (nor documentDescribes): expected the document to say what it describes`);
}

function checkChecksum(c: unknown, path: string, problems: string[]): void {
  if (!isObject(c)) return void problems.push(`${path}: expected { algorithm, checksumValue }`);
  const len = typeof c.algorithm === 'string' ? CHECKSUM_HEX[c.algorithm] : undefined;
  if (typeof c.checksumValue !== 'string' || !/^[0-9a-f]+$/.test(c.checksumValue)) problems.push(`${path}.checksumValue: expected lower-case hex, got ${JSON.stringify(c.checksumValue)}`);
  else if (len !== undefined && c.checksumValue.length !== len) problems.push(`${path}.checksumValue: a ${c.algorithm} has ${len} hex digits, got ${c.checksumValue.length}`);
}

/** Every problem of a document (structural, then schema), and whether the schema step ran. */
export function spdxReport(doc: unknown, o: SpdxValidationOptions = {}): SpdxValidationReport {
  const problems: string[] = [];
  if (!isObject(doc)) return { problems: ['$: expected an SPDX document object'], schema: { checked: false, reason: 'not an object' } };
  structuralProblems(doc, problems);
  const located = locateSpdxSchema(o.schemaPath);
  if (!('path' in located)) return { problems, schema: { checked: false, reason: located.reason } };
  const validate = schemaValidator(located.path);
  if (!validate(doc)) {
    for (const e of validate.errors ?? []) {
      const at = `$${e.instancePath.replace(/\/(\d+)(?=\/|$)/g, '[$1]').replace(/\//g, '.')}`;
      const extra = e.keyword === 'additionalProperties' ? ` (${String((e.params as { additionalProperty?: string }).additionalProperty)})` : e.keyword === 'enum' ? ` (allowed: ${((e.params as { allowedValues?: unknown[] }).allowedValues ?? []).slice(0, 8).join(', ')}…)` : '';
      problems.push(`schema: ${at} ${e.message ?? e.keyword}${extra}`);
    }
  }
  return { problems, schema: { checked: true, path: located.path } };
}

/**
 * Validates an SPDX 2.3 document; throws SBOM_INVALID listing every problem. Returns
 * the report (which says whether the JSON schema step ran) when the document is valid.
 */
export function validateSpdx(doc: unknown, o: SpdxValidationOptions = {}): SpdxValidationReport {
  const report = spdxReport(doc, o);
  if (report.problems.length > 0) {
    const d = isObject(doc) ? doc : {};
    const what = o.what ?? `SPDX document ${JSON.stringify(d.name ?? '?')} (${String(d.documentNamespace ?? 'no namespace')})`;
    const shown = report.problems.slice(0, 20).join('; ');
    throw new StellaError('SBOM_INVALID', `${what} is invalid (${report.problems.length} problem${report.problems.length === 1 ? '' : 's'}): ${shown}${report.problems.length > 20 ? `; and ${report.problems.length - 20} more` : ''}`);
  }
  return report;
}
