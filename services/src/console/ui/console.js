// The StellaOps console: sign-in, the welcome wizard, the Vulnerability Explorer and, in
// quickstart mode, the "Connected to Quickstart" banner. Plain JS, no framework.
const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem('stella-token') || '', quickstart: false, config: {}, welcome: null, apiToken: '' };

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function showError(e) {
  const msg = e && e.message ? e.message : String(e);
  $('error-text').textContent = msg;
  $('error').hidden = false;
  if (e instanceof ApiError && e.status === 401 && state.token) {
    // The session token was refused (expired or revoked): back to the sign-in.
    signOut(`Your session ended (${msg}). Sign in again to continue.`);
  }
}

function clearError() {
  $('error').hidden = true;
  $('error-text').textContent = '';
}

async function api(path, options = {}, token = state.token) {
  const headers = { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) };
  let res;
  try {
    res = await fetch(path, { ...options, headers: { ...headers, ...(options.headers || {}) } });
  } catch (e) {
    throw new ApiError(0, `The console did not answer (${e.message}): is the console running?`);
  }
  const text = await res.text();
  let body = {};
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    body = { error: text.slice(0, 200) };
  }
  if (!res.ok) {
    const why = body.error || `HTTP ${res.status}`;
    if (res.status === 502 || res.status === 504) throw new ApiError(res.status, `The API is not reachable: ${why}. Check that the api service is running (docker compose ps api).`);
    if (res.status === 401) throw new ApiError(401, `Refused by the API: ${why}`);
    throw new ApiError(res.status, `${options.method || 'GET'} ${path} failed: ${why}`);
  }
  return body;
}

function setStatus(step, text) {
  $(`status-${step}`).textContent = text;
}

function show(section, on = true) {
  $(section).hidden = !on;
}

// ------------------------------------------------------------------ CLI commands ("Copy CLI")

function cliBinary() {
  return (localStorage.getItem('stella-cli-binary') || '').trim();
}

/** The shell command for a `stella` CLI command: the local binary when one is set, else the container image. */
function cliCommand(command) {
  const bin = cliBinary();
  if (bin) return `STELLA_API_URL=${location.origin} ${bin} ${command}`;
  // The quickstart's own stella image (the console image is the stella CLI), on the stack's network.
  return `(cd deploy/compose && docker compose run --rm --no-deps -e STELLAOPS_TOKEN console /app/main.js ${command})`;
}

const CLI = [
  { id: 'whoami', label: 'Check the token: who it belongs to' },
  { id: 'import-scan', label: 'Run the sample scan import' },
  { id: 'findings', label: 'List the findings' },
  { id: 'export-pack', label: 'Export the Task Pack (to stdout)' },
];

function renderCli() {
  const bin = cliBinary();
  $('cli-form-note').textContent = bin
    ? `Commands use your local CLI (${bin}), talking to this console at ${location.origin}. Set STELLAOPS_TOKEN to an API token first.`
    : 'No local stella CLI is set: the commands run the stella container image of this install (from the checkout\'s root, where deploy/compose is). Set STELLAOPS_TOKEN to an API token first (step 2 of the welcome wizard makes one).';
  const items = CLI.filter((c) => state.quickstart || c.id !== 'import-scan').map((c) => {
    const li = document.createElement('li');
    const label = document.createElement('span');
    label.textContent = `${c.label}: `;
    const code = document.createElement('code');
    code.className = 'cli';
    code.id = `cli-${c.id}`;
    code.textContent = cliCommand(c.id);
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'secondary copy-cli';
    button.textContent = 'Copy CLI';
    button.setAttribute('aria-label', `Copy CLI: ${c.label}`);
    button.onclick = () => copy(code.textContent, button);
    li.append(label, code, ' ', button);
    return li;
  });
  $('cli-commands').replaceChildren(...items);
  $('cli-binary').value = bin;
}

async function copy(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    const was = button.textContent;
    button.textContent = 'Copied';
    setTimeout(() => (button.textContent = was), 1500);
  } catch (e) {
    showError(new Error(`Could not copy to the clipboard (${e.message}); select the text and copy it by hand.`));
  }
}

// ------------------------------------------------------------------ wizard

const LABELS = {
  STELLA_API_URL: 'API (as the console reaches it)',
  STELLA_QUEUE_URL: 'Queue (NATS JetStream)',
  STELLA_OBJECT_STORE_ENDPOINT: 'Object store (S3)',
  STELLA_OBJECT_STORE_BUCKET: 'Object store bucket',
  STELLA_OBJECT_STORE_REGION: 'Object store region',
  STELLA_AUTHORITY_ISSUER: 'Authority (OIDC issuer)',
};

function renderEndpoints() {
  const rows = [['Console (this page)', '—', location.origin], ['API (from this browser)', '—', `${location.origin}/api/v1`]];
  const discovered = { STELLA_API_URL: state.config.STELLA_API_URL, ...(state.welcome?.dependencies || {}) };
  for (const [key, label] of Object.entries(LABELS)) {
    const v = discovered[key];
    rows.push([label, key, v === null || v === undefined || v === '' ? 'not configured' : String(v)]);
  }
  const trs = rows.map((r) => {
    const tr = document.createElement('tr');
    for (const v of r) {
      const td = document.createElement('td');
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  });
  $('endpoints').tBodies[0].replaceChildren(...trs);
}

const NEXT = {
  'confirm-endpoints': 'Next: generate an API token (step 2).',
  'generate-token': 'Next: run the sample scan import (step 3).',
  'import-sample-scan': 'Next: open the Vulnerability Explorer (step 4).',
  'open-vuln-explorer': 'The welcome steps are done.',
};

function renderWizard() {
  const steps = state.welcome?.steps || [];
  const current = steps.find((s) => !s.done);
  for (const s of steps) {
    const li = document.querySelector(`li[data-step="${s.id}"]`);
    if (!li) continue;
    li.classList.toggle('done', s.done);
    if (current && s.id === current.id) li.setAttribute('aria-current', 'step');
    else li.removeAttribute('aria-current');
    if (s.done && !$(`status-${s.id}`).textContent) setStatus(s.id, `Done${s.doneAt ? ` (${new Date(s.doneAt).toLocaleString()})` : ''}. ${NEXT[s.id]}`);
  }
  renderEndpoints();
}

async function loadWelcome() {
  try {
    state.welcome = await api('/welcome');
    return true;
  } catch (e) {
    // Outside quickstart mode the API has no welcome wizard (404): that is not an error.
    if (e instanceof ApiError && e.status === 404) return false;
    throw e;
  }
}

function focusStep(id) {
  const h = $(`step-${id}`);
  if (h) h.focus();
}

async function afterStep(step, message) {
  await loadWelcome();
  renderWizard();
  setStatus(step, `${message} ${NEXT[step]}`);
  const next = (state.welcome?.steps || []).find((s) => !s.done);
  if (next) focusStep(next.id);
}

async function confirmEndpoints() {
  clearError();
  await api('/welcome/steps/confirm-endpoints', { method: 'POST' });
  await afterStep('confirm-endpoints', 'Endpoints confirmed and recorded.');
}

async function generateToken(ev) {
  ev.preventDefault();
  clearError();
  const form = new FormData(ev.target);
  const r = await api('/api/v1/tokens', { method: 'POST', body: JSON.stringify({ username: form.get('username'), password: form.get('password') }) }, '');
  ev.target.reset();
  state.apiToken = r.token;
  $('token-value').value = r.token;
  $('token-result').hidden = false;
  await afterStep('generate-token', `Token generated; it expires ${new Date(r.expiresAt).toLocaleString()}. It is shown only now: copy it and keep it like a password (export STELLAOPS_TOKEN=<token> for the CLI).`);
  $('token-value').focus();
  $('token-value').select();
}

async function importScan() {
  clearError();
  setStatus('import-sample-scan', 'Importing…');
  const r = await api('/api/v1/scans/import', { method: 'POST', body: '{}' });
  await afterStep('import-sample-scan', `Imported ${r.findings} findings from ${r.sboms} SBOMs; the Findings Ledger records them and Notifications announces the import.`);
}

async function openExplorer() {
  clearError();
  const n = await explorer();
  await afterStep('open-vuln-explorer', `The explorer below lists ${n} findings.`);
  $('explorer-title').focus();
}

// ------------------------------------------------------------------ explorer

async function explorer() {
  const { findings } = await api('/api/v1/findings');
  const rows = findings.map((f) => {
    const tr = document.createElement('tr');
    for (const v of [f.advisory_id, f.component, f.severity, f.vex_status || '—', f.sbom_id]) {
      const td = document.createElement('td');
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  });
  $('findings').replaceChildren(...rows);
  $('explorer-summary').textContent = findings.length
    ? `${findings.length} findings.`
    : state.quickstart
      ? 'No findings yet: run the sample scan import (welcome step 3).'
      : 'No findings yet.';
  show('explorer');
  return findings.length;
}

// ------------------------------------------------------------------ export pack (banner)

async function exportPack() {
  clearError();
  const status = $('export-status');
  if (!state.token) {
    status.textContent = 'Sign in first: the export runs as you.';
    $('signin-password').focus();
    return;
  }
  status.textContent = 'Asking the Export Center for a Task Pack of this tenant\'s data…';
  const r = await api('/api/v1/exports', { method: 'POST', body: JSON.stringify({ target: 'production', format: 'json', kind: 'task-pack' }) });
  let st = { status: r.status };
  for (let i = 0; i < 60 && st.status !== 'written'; i++) {
    await new Promise((res) => setTimeout(res, 1000));
    st = await api(`/api/v1/exports/${r.exportId}`);
    if (st.status !== 'written') status.textContent = `Export ${r.exportId} queued; waiting for the Export Center (${i + 1} s)…`;
  }
  if (st.status !== 'written') throw new Error(`The Export Center did not write export ${r.exportId} within 60 s. Is the export service running (docker compose ps export)?`);
  const res = await fetch(`/api/v1/exports/${r.exportId}/download`, { headers: { authorization: `Bearer ${state.token}` } });
  if (!res.ok) throw new ApiError(res.status, `Downloading export ${r.exportId} failed: HTTP ${res.status} ${(await res.text()).slice(0, 200)}`);
  const blob = await res.blob();
  const name = `stella-task-pack-${r.exportId}.json`;
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  status.textContent = `Downloaded ${name} (${blob.size} bytes, sha256 ${st.sha256.slice(0, 12)}…): the Task Pack with this tenant's SBOMs, advisories, VEX, policies and findings. Next: take it to your production install.`;
}

// ------------------------------------------------------------------ session

function signOut(message) {
  state.token = '';
  sessionStorage.removeItem('stella-token');
  for (const s of ['wizard', 'explorer', 'cli']) show(s, false);
  $('sign-out').hidden = true;
  $('who').textContent = '';
  show('signin');
  $('signin-hint').textContent = message || signinHint();
  $('signin-password').focus();
}

function signinHint() {
  return state.quickstart
    ? 'Quickstart: sign in as admin with the password quickstart.sh printed (also in deploy/compose/.secrets/admin-password).'
    : 'Sign in with a StellaOps account.';
}

async function signIn(ev) {
  ev.preventDefault();
  clearError();
  const form = new FormData(ev.target);
  const r = await api('/api/v1/tokens', { method: 'POST', body: JSON.stringify({ username: form.get('username'), password: form.get('password'), purpose: 'console-session' }) }, '').catch((e) => {
    // A refused password is cleared, ready to be typed again.
    $('signin-password').value = '';
    $('signin-password').focus();
    throw e;
  });
  state.token = r.token;
  sessionStorage.setItem('stella-token', r.token);
  ev.target.reset();
  await home();
}

/** After sign-in: the wizard until its steps are done (quickstart), else the explorer. */
async function home() {
  const who = await api('/api/v1/auth/whoami');
  $('who').textContent = `signed in as ${who.username} (tenant ${who.tenant})`;
  $('sign-out').hidden = false;
  show('signin', false);
  const hasWizard = state.quickstart && (await loadWelcome());
  renderCli();
  show('cli');
  if (hasWizard && !state.welcome.complete) {
    renderWizard();
    show('wizard');
    const next = state.welcome.steps.find((s) => !s.done);
    if (next) focusStep(next.id);
    if (state.welcome.steps.find((s) => s.id === 'open-vuln-explorer')?.done) await explorer();
  } else {
    show('wizard', false);
    $('show-wizard').hidden = !hasWizard;
    await explorer();
  }
}

const handle = (fn) => (ev) => Promise.resolve(fn(ev)).catch(showError);

async function main() {
  const cfg = await api('/config', {}, '');
  $('version').textContent = `console ${cfg.version}`;
  state.config = cfg.config || {};
  state.quickstart = state.config.STELLA_QUICKSTART_MODE === true;
  if (state.quickstart) {
    show('quickstart-banner');
    if (state.config.STELLA_DOCS_URL) $('view-docs').href = state.config.STELLA_DOCS_URL;
  }
  $('signin-form').onsubmit = handle(signIn);
  $('sign-out').onclick = () => signOut('Signed out.');
  $('error-dismiss').onclick = clearError;
  $('confirm-endpoints').onclick = handle(confirmEndpoints);
  $('token-form').onsubmit = handle(generateToken);
  $('copy-token').onclick = () => copy($('token-value').value, $('copy-token'));
  $('import-scan').onclick = handle(importScan);
  $('open-explorer').onclick = handle(openExplorer);
  $('refresh-explorer').onclick = handle(explorer);
  $('show-wizard').onclick = handle(async () => {
    renderWizard();
    show('wizard');
    $('wizard-title').focus();
  });
  $('export-pack').onclick = handle(exportPack);
  $('cli-save').onclick = () => {
    localStorage.setItem('stella-cli-binary', $('cli-binary').value.trim());
    renderCli();
  };
  if (state.token) await home().catch((e) => (e instanceof ApiError && e.status === 401 ? signOut('Your session ended: sign in again.') : Promise.reject(e)));
  else signOut(signinHint());
}

main().catch(showError);
