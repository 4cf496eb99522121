'use strict';
// The sockit web page: every call is one of the JSON API under /api/ (docs/DOORS.md).
// Requests that change something carry X-Sockit: 1, which no other site can add.

const $ = (id) => document.getElementById(id);
const CHUNK = 8 * 1024 * 1024;
let cwd = '/';

async function api(method, url, body) {
  const opts = { method, headers: { 'X-Sockit': '1' }, credentials: 'same-origin' };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(url, opts);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = new Error(data.error || r.statusText);
    e.status = r.status;
    e.data = data;
    throw e;
  }
  return data;
}

function join(dir, name) { return (dir.endsWith('/') ? dir : dir + '/') + name; }

function human(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

function say(text, error) {
  const m = $('message');
  m.textContent = text;
  m.className = error ? 'error' : '';
}

function showLogin() {
  $('files-view').hidden = true;
  $('logout').hidden = true;
  $('who').textContent = '';
  $('quota').textContent = '';
  $('login-view').hidden = false;
}

async function show(path) {
  let listing;
  try {
    listing = await api('GET', '/api/list?path=' + encodeURIComponent(path));
  } catch (e) {
    if (e.status === 401) { showLogin(); return; }
    say(e.message, true);
    return;
  }
  cwd = listing.path;
  $('login-view').hidden = true;
  $('files-view').hidden = false;
  $('logout').hidden = false;
  $('who').textContent = listing.user;
  $('quota').textContent = listing.quota == null
    ? human(listing.used) + ' used'
    : human(listing.used) + ' of ' + human(listing.quota) + ' used';
  crumbs();
  const body = $('list');
  body.replaceChildren();
  for (const entry of listing.entries) body.append(row(entry));
}

function crumbs() {
  const nav = $('crumbs');
  nav.replaceChildren();
  const parts = cwd.split('/').filter(Boolean);
  const link = (label, path) => {
    const a = document.createElement('a');
    a.href = '#';
    a.textContent = label;
    a.addEventListener('click', (ev) => { ev.preventDefault(); show(path); });
    nav.append(a, ' / ');
  };
  link('home', '/');
  parts.forEach((p, i) => link(p, '/' + parts.slice(0, i + 1).join('/')));
}

function row(entry) {
  const tr = document.createElement('tr');
  tr.dataset.name = entry.name;
  const path = join(cwd, entry.name);
  const name = document.createElement('td');
  const a = document.createElement('a');
  a.textContent = entry.kind === 'dir' ? entry.name + '/' : entry.name;
  if (entry.kind === 'dir') {
    a.href = '#';
    a.addEventListener('click', (ev) => { ev.preventDefault(); show(path); });
  } else {
    a.href = '/api/file?path=' + encodeURIComponent(path);
    a.download = entry.name;
    a.className = 'download';
  }
  name.append(a);
  const size = document.createElement('td');
  size.className = 'size';
  size.textContent = entry.kind === 'dir' ? '' : human(entry.size);
  const when = document.createElement('td');
  when.textContent = new Date(entry.modified * 1000).toLocaleString();
  const actions = document.createElement('td');
  actions.className = 'actions';
  const rename = document.createElement('button');
  rename.textContent = 'Rename';
  rename.className = 'rename';
  rename.addEventListener('click', async () => {
    const to = prompt('New name for ' + entry.name, entry.name);
    if (!to || to === entry.name) return;
    try {
      await api('POST', '/api/rename', { from: path, to: join(cwd, to) });
      say('Renamed ' + entry.name + ' to ' + to);
    } catch (e) { say(e.message, true); }
    show(cwd);
  });
  const del = document.createElement('button');
  del.textContent = 'Delete';
  del.className = 'delete';
  del.addEventListener('click', async () => {
    if (!confirm('Delete ' + entry.name + (entry.kind === 'dir' ? ' and all in it' : '') + '?')) return;
    try {
      await api('POST', '/api/delete', { path });
      say('Deleted ' + entry.name);
    } catch (e) { say(e.message, true); }
    show(cwd);
  });
  actions.append(rename, ' ', del);
  tr.append(name, size, when, actions);
  return tr;
}

// One chunk by XMLHttpRequest, whose upload events give the progress bar.
function sendChunk(url, blob, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    xhr.setRequestHeader('X-Sockit', '1');
    xhr.upload.addEventListener('progress', (ev) => onProgress(ev.loaded));
    xhr.addEventListener('load', () => {
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) { resolve(data); return; }
      const e = new Error(data.error || ('HTTP ' + xhr.status));
      e.status = xhr.status;
      e.data = data;
      reject(e);
    });
    xhr.addEventListener('error', () => reject(new Error('the connection failed')));
    xhr.send(blob);
  });
}

// Uploads a file in chunks, from what the server already holds: a dropped connection
// or a restarted upload goes on where it stopped.
async function upload(file) {
  const dir = cwd;
  const path = join(dir, file.name);
  const li = document.createElement('li');
  li.dataset.name = file.name;
  const label = document.createElement('span');
  label.textContent = file.name;
  const bar = document.createElement('progress');
  bar.max = 100;
  bar.value = 0;
  const pct = document.createElement('span');
  pct.className = 'pct';
  pct.textContent = '0%';
  li.append(label, bar, pct);
  $('uploads').append(li);
  const shown = (n) => {
    const p = file.size ? Math.floor((n * 100) / file.size) : 100;
    bar.value = p;
    pct.textContent = p + '%';
  };
  const base = '/api/upload?path=' + encodeURIComponent(path) + '&size=' + file.size;
  try {
    let { offset } = await api('GET', base);
    let done = false;
    let tries = 0;
    while (!done) {
      const end = Math.min(offset + CHUNK, file.size);
      const from = offset;
      try {
        const r = await sendChunk(base + '&offset=' + from, file.slice(from, end), (n) => shown(from + n));
        offset = r.offset;
        done = r.done;
        tries = 0;
      } catch (e) {
        if (e.status === 409 && e.data && typeof e.data.offset === 'number') {
          offset = e.data.offset;
        } else if (tries++ < 5 && !(e.status >= 400 && e.status < 500) && e.status !== 507) {
          await new Promise((r) => setTimeout(r, 1000 * tries));
          offset = (await api('GET', base)).offset;
        } else {
          throw e;
        }
      }
      shown(offset);
    }
    shown(file.size);
    li.classList.add('done');
  } catch (e) {
    pct.textContent = e.message;
    pct.className = 'error';
  }
  if (cwd === dir) show(dir);
}

async function uploadAll(files) {
  for (const file of files) await upload(file);
}

document.addEventListener('DOMContentLoaded', () => {
  $('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('login-error').textContent = '';
    try {
      await api('POST', '/api/login', { user: $('user').value, password: $('password').value });
      $('password').value = '';
      show('/');
    } catch (e) {
      $('login-error').textContent = e.message;
    }
  });
  $('logout').addEventListener('click', async () => {
    await api('POST', '/api/logout').catch(() => {});
    showLogin();
  });
  $('picker').addEventListener('change', (ev) => {
    const files = Array.from(ev.target.files);
    ev.target.value = '';
    uploadAll(files);
  });
  $('mkdir').addEventListener('click', async () => {
    const name = prompt('Name of the new folder');
    if (!name) return;
    try { await api('POST', '/api/mkdir', { path: join(cwd, name) }); } catch (e) { say(e.message, true); }
    show(cwd);
  });
  const drop = $('drop');
  document.addEventListener('dragover', (ev) => { ev.preventDefault(); drop.classList.add('over'); });
  document.addEventListener('dragleave', () => drop.classList.remove('over'));
  document.addEventListener('drop', (ev) => {
    ev.preventDefault();
    drop.classList.remove('over');
    uploadAll(Array.from(ev.dataTransfer.files));
  });
  show('/');
});
