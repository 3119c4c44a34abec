// The Compose quickstart's one-shot init steps, run by the StellaOps API image's node (the images
// have no shell). Hand-written; no dependencies beyond Node's standard library.
//
//   stella-init.mjs secrets   (as root, no network) .secrets/ (mounted at /in) → /state/secrets/ in the
//                             stella-state volume: each file owned by the user of the container that
//                             reads it, mode 0400, plus what is derived from them (connection URLs,
//                             redis.conf, SeaweedFS's s3.json), and the tls profile's certificate
//                             and key for nginx. Runs at every `up`; idempotent.
//   stella-init.mjs bucket    (as 65532) creates the object store's bucket with a SigV4-signed
//                             PUT; an existing bucket is fine. Retries until the store answers.
//   stella-init.mjs untar DIR (as root; restore) extracts the tar on stdin (what `docker cp
//                             CONTAINER:/data/. -` wrote) into DIR keeping owners and modes;
//                             refuses absolute names, `..`, and links that leave DIR.
import { createHash, createHmac } from 'node:crypto';
import { chmodSync, chownSync, existsSync, lchownSync, linkSync, mkdirSync, readFileSync, readdirSync, renameSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize, resolve } from 'node:path';

const IN = '/in';
const OUT = '/state/secrets';
/** uid of each image's user: the StellaOps images and SeaweedFS 65532, PostgreSQL and Redis 999, nginx 101. */
const STELLA = 65532;
const POSTGRES = 999;
const REDIS = 999;
const OBJECT_STORE = 65532;
const NGINX = 101;

function fail(message) {
  process.stderr.write(`stella-init: ${message}\n`);
  process.exit(1);
}

function source(name) {
  const p = join(IN, name);
  if (!existsSync(p)) fail(`.secrets/${name} is missing: run ./quickstart.sh (it generates the secrets on the first run), or restore a backup`);
  const v = readFileSync(p, 'utf8').replace(/\r?\n$/, '');
  if (!v) fail(`.secrets/${name} is empty`);
  return v;
}

function put(name, content, uid) {
  const path = join(OUT, name);
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, content, { mode: 0o400 });
  chownSync(tmp, uid, uid);
  chmodSync(tmp, 0o400);
  renameSync(tmp, path);
}

function secrets() {
  mkdirSync(OUT, { recursive: true, mode: 0o755 });
  chmodSync(OUT, 0o755);
  const db = source('postgres-password');
  const redis = source('redis-password');
  const access = source('object-store-access-key');
  const secret = source('object-store-secret-key');
  const admin = source('admin-password');
  for (const [n, v] of [['postgres-password', db], ['redis-password', redis], ['object-store-access-key', access], ['object-store-secret-key', secret]]) {
    if (!/^[A-Za-z0-9_-]+$/.test(v)) fail(`.secrets/${n} must be URL-safe (A-Z a-z 0-9 _ -): it goes into connection URLs and configuration files`);
  }
  put('postgres-password', `${db}\n`, POSTGRES);
  put('database-url', `postgres://stella:${db}@postgres:5432/stella\n`, STELLA);
  put('redis.conf', `# written by stella-init from .secrets/redis-password\ninclude /etc/redis/stella.conf\nrequirepass ${redis}\n`, REDIS);
  put('redis-url', `redis://:${redis}@redis:6379/0\n`, STELLA);
  put('object-store-access-key', `${access}\n`, STELLA);
  put('object-store-secret-key', `${secret}\n`, STELLA);
  put('s3.json', `${JSON.stringify({ identities: [{ name: 'stella', credentials: [{ accessKey: access, secretKey: secret }], actions: ['Admin', 'Read', 'List', 'Tagging', 'Write'] }] }, null, 2)}\n`, OBJECT_STORE);
  put('admin-password', `${admin}\n`, STELLA);
  // The tls profile (quickstart.sh --tls): the certificate (chain) and key, for nginx only.
  const cert = join(IN, 'tls-cert.pem');
  const key = join(IN, 'tls-key.pem');
  if (existsSync(cert) !== existsSync(key)) fail('.secrets/tls-cert.pem and .secrets/tls-key.pem go together: give both (quickstart.sh --tls-cert FILE --tls-key FILE) or remove both (quickstart.sh --tls generates them)');
  if (existsSync(cert)) {
    const c = readFileSync(cert);
    const k = readFileSync(key);
    if (!/-----BEGIN CERTIFICATE-----/.test(c.toString('latin1'))) fail('.secrets/tls-cert.pem is not a PEM certificate');
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(k.toString('latin1'))) fail('.secrets/tls-key.pem is not a PEM private key');
    put('tls-cert.pem', c, NGINX);
    put('tls-key.pem', k, NGINX);
  }
  // Secrets the user adds (e.g. ai-api-key for STELLA_AI_API_KEY_FILE) are passed on as they are.
  const known = new Set(['postgres-password', 'redis-password', 'object-store-access-key', 'object-store-secret-key', 'admin-password']);
  for (const f of readdirSync(IN)) if (!known.has(f) && /^[a-z0-9-]+$/.test(f)) put(f, readFileSync(join(IN, f)), STELLA);
  process.stdout.write(`stella-init: secrets written to the stella-state volume\n`);
}

const sha256 = (s) => createHash('sha256').update(s).digest('hex');
const hmac = (k, s) => createHmac('sha256', k).update(s).digest();

/** A SigV4-signed request without a body (S3, path style). */
async function s3(method, endpoint, path, access, secret, region) {
  const url = new URL(path, endpoint);
  const now = new Date().toISOString().replace(/[:-]|\.\d{3}/g, '');
  const day = now.slice(0, 8);
  const payload = sha256('');
  const headers = { host: url.host, 'x-amz-content-sha256': payload, 'x-amz-date': now };
  const names = Object.keys(headers).sort();
  const canonical = [method, url.pathname, '', ...names.map((n) => `${n}:${headers[n]}`), '', names.join(';'), payload].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', now, scope, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  const authorization = `AWS4-HMAC-SHA256 Credential=${access}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  const res = await fetch(url, { method, headers: { ...headers, authorization }, signal: AbortSignal.timeout(5000) });
  return { status: res.status, text: await res.text() };
}

async function bucket() {
  const endpoint = process.env.ENDPOINT ?? 'http://object-store:9000';
  const name = process.env.BUCKET ?? 'stella';
  const region = process.env.REGION ?? 'us-east-1';
  const read = (n) => readFileSync(`/run/stella/secrets/${n}`, 'utf8').trim();
  const access = read('object-store-access-key');
  const secret = read('object-store-secret-key');
  const deadline = Date.now() + Number(process.env.TIMEOUT_SECONDS ?? 120) * 1000;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const head = await s3('HEAD', endpoint, `/${name}`, access, secret, region);
      if (head.status === 200) {
        process.stdout.write(`stella-init: bucket ${name} exists at ${endpoint}\n`);
        return;
      }
      const r = await s3('PUT', endpoint, `/${name}`, access, secret, region);
      if (r.status === 200 || /BucketAlreadyOwnedByYou/.test(r.text)) continue;
      last = `PUT /${name} answered HTTP ${r.status}: ${r.text.slice(0, 200)}`;
    } catch (e) {
      last = `${endpoint}: ${e.cause?.code ?? e.message}`;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  fail(`the object store did not accept bucket ${name} in time (last: ${last})`);
}

async function untar(dir) {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  const buf = Buffer.concat(chunks);
  const root = resolve(dir);
  const inside = (name) => {
    if (isAbsolute(name) || normalize(name).split('/').includes('..')) fail(`tar entry "${name}" leaves ${dir}`);
    return resolve(root, name);
  };
  const field = (h, off, len) => h.subarray(off, off + len).toString('utf8').replace(/\0.*$/s, '');
  const octal = (h, off, len) => parseInt(field(h, off, len).trim() || '0', 8);
  let pax = {};
  let longName;
  let count = 0;
  for (let off = 0; off + 512 <= buf.length; ) {
    const h = buf.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const size = pax.size !== undefined ? Number(pax.size) : octal(h, 124, 12);
    const type = String.fromCharCode(h[156] || 48);
    const body = buf.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
    if (type === 'x') {
      pax = {};
      for (const rec of body.toString('utf8').split('\n').filter(Boolean)) {
        const kv = rec.slice(rec.indexOf(' ') + 1);
        pax[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
      }
      continue;
    }
    if (type === 'g') continue;
    if (type === 'L') {
      longName = body.toString('utf8').replace(/\0.*$/s, '');
      continue;
    }
    const prefix = field(h, 345, 155);
    const name = pax.path ?? longName ?? (prefix ? `${prefix}/${field(h, 0, 100)}` : field(h, 0, 100));
    const link = pax.linkpath ?? field(h, 157, 100);
    const uid = pax.uid !== undefined ? Number(pax.uid) : octal(h, 108, 8);
    const gid = pax.gid !== undefined ? Number(pax.gid) : octal(h, 116, 8);
    const mode = octal(h, 100, 8) & 0o7777;
    const mtime = pax.mtime !== undefined ? Number(pax.mtime) : octal(h, 136, 12);
    pax = {};
    longName = undefined;
    const target = inside(name);
    if (target === root && type === '5') {
      chownSync(root, uid, gid);
      chmodSync(root, mode);
      continue;
    }
    mkdirSync(dirname(target), { recursive: true });
    if (type === '5') {
      mkdirSync(target, { recursive: true });
      chownSync(target, uid, gid);
      chmodSync(target, mode);
    } else if (type === '0' || type === '7') {
      writeFileSync(target, body, { mode });
      chownSync(target, uid, gid);
      chmodSync(target, mode);
      utimesSync(target, mtime, mtime);
    } else if (type === '2') {
      if (isAbsolute(link) || !resolve(dirname(target), link).startsWith(root + '/')) fail(`symlink "${name}" → "${link}" leaves ${dir}`);
      symlinkSync(link, target);
      lchownSync(target, uid, gid);
    } else if (type === '1') {
      linkSync(inside(link), target);
    } else fail(`tar entry "${name}": unsupported type ${type}`);
    count++;
  }
  process.stdout.write(`stella-init: restored ${count} entries into ${dir}\n`);
}

const step = process.argv[2];
if (step === 'secrets') secrets();
else if (step === 'bucket') await bucket();
else if (step === 'untar') await untar(process.argv[3] ?? fail('untar needs a directory'));
else fail(`unknown step "${step}" (expected secrets, bucket or untar)`);
