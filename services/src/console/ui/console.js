// The StellaOps console: onboarding wizard and quickstart banner. Plain JS, no framework.
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem('stella-token') || '';

function showError(e) {
  $('error').textContent = String(e && e.message ? e.message : e);
  $('error').hidden = false;
}

async function api(path, options = {}) {
  const headers = { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) };
  const res = await fetch(path, { ...options, headers: { ...headers, ...(options.headers || {}) } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || `${path}: HTTP ${res.status}`);
  return body;
}

function render(welcome) {
  for (const step of welcome.steps || []) {
    const li = document.querySelector(`li[data-step="${step.id}"]`);
    if (li) li.classList.toggle('done', step.done);
  }
  const dl = $('endpoints');
  dl.replaceChildren();
  for (const [name, path] of Object.entries({ console: location.origin, ...(welcome.endpoints || {}) })) {
    const dt = document.createElement('dt');
    dt.textContent = name;
    const dd = document.createElement('dd');
    dd.textContent = path;
    dl.append(dt, dd);
  }
}

async function refresh() {
  const welcome = await api('/welcome');
  $('wizard').hidden = !welcome.quickstart;
  render(welcome);
}

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
  $('explorer').hidden = false;
}

async function main() {
  const cfg = await (await fetch('/config')).json();
  $('version').textContent = `console ${cfg.version}`;
  const c = cfg.config || {};
  if (c.STELLA_QUICKSTART_MODE) {
    $('quickstart-banner').hidden = false;
    if (c.STELLA_DOCS_URL) $('view-docs').href = c.STELLA_DOCS_URL;
  }
  $('confirm-endpoints').onclick = () => api('/welcome/steps/confirm-endpoints', { method: 'POST' }).then(refresh).catch(showError);
  $('token-form').onsubmit = (ev) => {
    ev.preventDefault();
    const form = new FormData(ev.target);
    api('/api/v1/tokens', { method: 'POST', body: JSON.stringify({ username: form.get('username'), password: form.get('password') }) })
      .then((r) => {
        token = r.token;
        sessionStorage.setItem('stella-token', token);
        $('token').textContent = `${r.token}\n(expires ${r.expiresAt}; shown once)`;
        $('token').hidden = false;
      })
      .then(refresh)
      .catch(showError);
  };
  $('import-scan').onclick = () =>
    api('/api/v1/scans/import', { method: 'POST', body: '{}' })
      .then((r) => ($('import-status').textContent = `${r.findings} findings in ${r.sboms} SBOMs`))
      .then(refresh)
      .catch(showError);
  $('open-explorer').onclick = () => explorer().then(refresh).catch(showError);
  $('export-pack').onclick = () =>
    api('/api/v1/exports', { method: 'POST', body: JSON.stringify({ target: 'production', format: 'json' }) })
      .then((r) => ($('export-status').textContent = `export ${r.exportId} ${r.status}`))
      .catch(showError);
  // The wizard and its state exist only in quickstart mode (the API answers 404 otherwise).
  if (c.STELLA_QUICKSTART_MODE) await refresh();
}

main().catch(showError);
