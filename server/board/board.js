// The swarmlog board (SPEC §8): the state of a swarm, live, for the people who run it.
//
// How it stays right:
// - State comes from the server's own read routes, never from rules re-implemented here.
//   An event only tells the page which collections to read again (coalesced, so a burst
//   of events costs one read per collection), and heartbeats and lock waiters, which are
//   not events, are read again every few seconds.
// - The feed follows GET /v1/events over SSE through fetch (EventSource cannot send an
//   Authorization header) from the head the page started at, and resumes with
//   Last-Event-ID after a dropped connection or a server restart: no gap, no duplicate.
// - The time slider reads every collection with ?at=SEQ, the state right after that event.
// - A token lives in this tab's sessionStorage and travels only in a header.

const TOKEN_KEY = 'swarmlog.token';
const FEED_LIMIT = 500; // events kept in the feed (and in its table)
const MESSAGES_LIMIT = 100;
const REFRESH_DELAY_MS = 100; // how long events are gathered before the page reads again
// ...at least; after a slow read it waits as long as that read took, so a busy swarm with a
// big board costs the page and the server at most half their time in re-reads.
const POLL_MS = 3000; // agents' leases and lock waiters change without events
const DAG_LIMIT = 150; // the dependency drawing is for one session's tasks
const STATUSES = ['blocked', 'awaiting_approval', 'pending', 'claimed', 'completed', 'failed', 'cancelled'];
const AGENT_STATUSES = ['active', 'expired', 'killed', 'deregistered'];

// The collections the board shows: where each is read, and whether it takes ?session=.
const COLLECTIONS = {
  agents: { path: '/v1/agents' },
  tasks: { path: '/v1/tasks', bySession: true },
  locks: { path: '/v1/locks' },
  findings: { path: '/v1/findings', bySession: true },
  hypotheses: { path: '/v1/hypotheses', bySession: true },
  proposals: { path: '/v1/proposals' },
  messages: { path: '/v1/messages', query: { limit: MESSAGES_LIMIT } },
  sessions: { path: '/v1/sessions' },
};
const ALL = Object.keys(COLLECTIONS);

// Which collections an event can change (an agent leaving releases its locks and claims).
const AFFECTS = [
  [/^task\./, ['tasks', 'sessions']],
  [/^agent\./, ['agents', 'tasks', 'locks', 'sessions']],
  [/^lock\./, ['locks']],
  [/^finding\./, ['findings']],
  [/^hypothesis\./, ['hypotheses']],
  [/^(proposal|vote)\./, ['proposals']],
  [/^message\./, ['messages']],
  [/^session\./, ['sessions']],
];

// Which panels show which collections.
const PANELS = {
  agents: ['agents', 'tasks', 'sessions'],
  tasks: ['tasks'],
  locks: ['locks'],
  blackboard: ['findings', 'hypotheses'],
  consensus: ['proposals'],
  messages: ['messages'],
  sessions: ['sessions'],
};

const view = {
  token: sessionStorage.getItem(TOKEN_KEY),
  role: null,
  agent: null,
  branch: null,
  skewMs: 0, // the server's clock minus ours
  head: 0, // the newest seq this page knows of
  lastSeq: 0, // the newest seq the feed has (Last-Event-ID)
  at: null, // null: live; else the seq whose state is shown
  atTime: null, // the time of event `at`
  session: '',
  statusFilter: null,
  data: Object.fromEntries(ALL.map((name) => [name, []])),
  feed: [], // live events, oldest first, at most FEED_LIMIT
  pastFeed: [], // the events up to `at`
  pausedAt: null, // while the feed is paused: the newest seq it shows
  unseen: 0, // events that arrived while paused
  feedTypes: null, // a RegExp from the type filter
  selectedSeq: null,
  generation: 0, // bumped on every travel, so a late answer for an old position is dropped
  rendered: false,
};

// ---- small helpers -------------------------------------------------------------------

const $ = (selector) => document.querySelector(selector);
const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const badge = (text, kind = text) => `<span class="badge ${esc(kind)}">${esc(text)}</span>`;
const now = () => (view.at === null ? Date.now() + view.skewMs : view.atTime ?? Date.now());

// One formatter for every time shown: making one per call (toLocaleTimeString) costs more
// than drawing the row it is for.
const TIME = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
function timeOf(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : TIME.format(date);
}

// Code-point order, for ids and ISO timestamps (a locale's collation is slower and not needed).
const byText = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

// "42s", "3m 05s", "1h 02m"; negative spans read "0s".
function span(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
}

// A time left until `iso`, kept counting by `tick`.
const until = (iso) => (iso ? `<span class="until" data-until="${esc(iso)}">${countdown(iso)}</span>` : '');
function countdown(iso) {
  const left = Date.parse(iso) - now();
  return left > 0 ? span(left) : 'due';
}

function tick() {
  for (const element of document.querySelectorAll('[data-until]')) {
    element.textContent = countdown(element.dataset.until);
    element.classList.toggle('late', element.textContent === 'due');
  }
}

function toast(text, error = false) {
  const element = $('#toast');
  element.textContent = text;
  element.classList.toggle('error', error);
  element.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (element.hidden = true), error ? 8000 : 3000);
}

// Comma-separated globs (`task.*,lock.acquired`) as one RegExp, or null for "all".
function globs(text) {
  const parts = text.split(',').map((part) => part.trim()).filter(Boolean);
  if (parts.length === 0) return null;
  const one = (glob) => glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^(${parts.map(one).join('|')})$`);
}

// ---- the API ---------------------------------------------------------------------------

class Unauthorized extends Error {}

class ApiError extends Error {
  constructor(status, error) {
    super(error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error?.code ?? 'http_error';
  }
}

function url(path, params = {}) {
  const query = new URLSearchParams();
  if (view.branch) query.set('branch', view.branch);
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== '') query.set(key, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

async function api(path, { method = 'GET', body, headers = {}, signal } = {}) {
  const request = new Headers(headers);
  if (view.token) request.set('Authorization', `Bearer ${view.token}`);
  if (body !== undefined) request.set('Content-Type', 'application/json');
  const response = await fetch(path, {
    method,
    headers: request,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    signal,
  });
  if (response.status === 401) throw new Unauthorized();
  if (!response.ok) {
    const answer = await response.json().catch(() => null);
    throw new ApiError(response.status, answer?.error);
  }
  return response;
}

const getJson = async (path) => (await api(path)).json();

// NDJSON events in [from, until].
async function readEvents(from, until) {
  if (until < 1) return [];
  const text = await (await api(url('/v1/events', { from: Math.max(1, from), until }))).text();
  return text.split('\n').filter((line) => line.trim()).map((line) => JSON.parse(line));
}

function collectionUrl(name, at) {
  const { path, bySession, query = {} } = COLLECTIONS[name];
  return url(path, { ...query, at, session: bySession ? view.session : null });
}

// Reads `names` (at `view.at`); the answers land only if the page has not moved since.
async function load(names) {
  const generation = view.generation;
  const answers = await Promise.all(names.map((name) => getJson(collectionUrl(name, view.at))));
  if (generation !== view.generation) return false;
  names.forEach((name, index) => (view.data[name] = answers[index][name] ?? []));
  return true;
}

// ---- start, sign-in ------------------------------------------------------------------

async function start() {
  const params = new URLSearchParams(location.search);
  view.branch = params.get('branch');
  view.session = params.get('session') ?? '';
  const at = Number(params.get('at'));
  bindControls();
  let me;
  try {
    const response = await api('/v1/whoami');
    const serverDate = Date.parse(response.headers.get('Date'));
    if (!Number.isNaN(serverDate)) view.skewMs = serverDate - Date.now();
    me = await response.json();
  } catch (error) {
    if (error instanceof Unauthorized) return askForToken(view.token ? 'The server refused that token.' : '');
    return fail(error);
  }
  view.role = me.role;
  view.agent = me.agent;
  $('#who').textContent = me.agent ? `${me.agent} (${me.role})` : `${me.role}, no tokens`;
  $('#forget').hidden = !view.token;
  $('#login').hidden = true;
  $('#board').hidden = false;

  try {
    const head = (await getJson('/v1/audit/head')).seq;
    view.head = head;
    view.lastSeq = head;
    const [feed] = await Promise.all([
      readEvents(head - FEED_LIMIT + 1, head),
      at >= 1 && at < head ? travel(at) : load(ALL),
    ]);
    view.feed = feed;
  } catch (error) {
    return fail(error);
  }
  if (view.at === null) renderAll(); // travel() has drawn the past
  firstRender();
  follow();
  setInterval(tick, 1000);
  setInterval(() => view.at === null && refresh(['agents', 'locks']), POLL_MS);
  showCluster();
  setInterval(showCluster, POLL_MS);
}

// On a cluster node, which node this is, whether it writes, and how far it lags behind the
// shared history (GET /healthz); nothing on a lone server.
async function showCluster() {
  let cluster;
  try {
    cluster = (await (await fetch('/healthz', { cache: 'no-store' })).json()).cluster;
  } catch {
    return; // the feed's indicator already says the server is unreachable
  }
  const element = $('#cluster');
  element.hidden = !cluster;
  if (!cluster) return;
  element.dataset.role = cluster.role;
  const writer = cluster.role === 'writer' ? '' : ` of ${cluster.writer ? cluster.writer.node : 'no writer yet'}`;
  const lag = cluster.lag_events > 0 ? `, ${cluster.lag_events} behind` : '';
  element.textContent = `${cluster.node}: ${cluster.role}${writer}${lag}`;
}

function firstRender() {
  performance.mark('swarmlog:first-render');
  document.documentElement.dataset.ready = 'true';
}

// The board cannot open: says why, where it stays in sight.
function fail(error) {
  const banner = $('#banner');
  banner.hidden = false;
  banner.textContent = error instanceof ApiError
    ? `The board cannot open: ${error.code}: ${error.message}`
    : `The board cannot reach the server: ${error.message}. Reload to try again.`;
}

function askForToken(message) {
  $('#board').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message;
  $('#token').focus();
}

// ---- the live feed -------------------------------------------------------------------

function setConnection(state) {
  const element = $('#connection');
  element.dataset.state = state;
  element.textContent = { live: 'live', 'catching-up': 'catching up', reconnecting: 'reconnecting…', connecting: 'connecting' }[state];
}

// Follows the SSE feed forever, resuming after the last event seen.
// Follows the SSE feed until the page is hidden, resuming after the last event seen.
// A browser allows six connections to one server over HTTP/1.1, and the feed holds one for
// as long as it runs: a page that is left (or parked in the back/forward cache) closes its
// feed, so reloads and visits never queue behind old feeds.
let following = null; // the AbortController of the running feed
window.addEventListener('pagehide', () => following?.abort());
window.addEventListener('pageshow', (event) => {
  if (event.persisted && view.role !== null) {
    follow();
    refresh(ALL);
  }
});

async function follow() {
  const controller = new AbortController();
  following = controller;
  let backoff = 250;
  while (!controller.signal.aborted) {
    setConnection(view.lastSeq ? 'catching-up' : 'connecting');
    try {
      const response = await api(url('/v1/events'), {
        headers: { Accept: 'text/event-stream', 'Last-Event-ID': String(view.lastSeq) },
        signal: controller.signal,
      });
      backoff = 250;
      await readSse(response.body, onSse);
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error instanceof Unauthorized) return askForToken('The server no longer accepts this token.');
      if (error instanceof ApiError && error.code === 'invalid_last_event_id') {
        // Another history now (a server restarted on other data): start again.
        return location.reload();
      }
    }
    setConnection('reconnecting');
    await sleep(backoff);
    backoff = Math.min(backoff * 2, 5000);
    refresh(ALL); // what changed while the server was away is read again
  }
}

// Parses a text/event-stream body and hands each event to `dispatch`.
async function readSse(body, dispatch) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = { data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, '');
      buffer = buffer.slice(end + 1);
      if (line === '') {
        if (event.data.length) dispatch({ ...event, data: event.data.join('\n') });
        event = { data: [] };
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'data') event.data.push(text);
        else if (field === 'event' || field === 'id') event[field] = text;
      }
    }
  }
}

function onSse(event) {
  if (event.event === 'caught_up') {
    setConnection('live');
    return;
  }
  const envelope = JSON.parse(event.data);
  if (envelope.seq <= view.lastSeq) return;
  view.lastSeq = envelope.seq;
  view.head = Math.max(view.head, envelope.seq);
  view.feed.push(envelope);
  if (view.feed.length > FEED_LIMIT) view.feed.splice(0, view.feed.length - FEED_LIMIT);
  if (view.pausedAt !== null) view.unseen += 1;
  scheduleFeed();
  if (view.at === null) {
    for (const [pattern, names] of AFFECTS) {
      if (pattern.test(envelope.type)) refresh(names);
    }
  }
}

let feedFrame = null;
function scheduleFeed() {
  if (feedFrame === null) {
    feedFrame = requestAnimationFrame(() => {
      feedFrame = null;
      renderTimeline();
      if (view.at === null) {
        renderFeed();
        renderLocks(); // recent deadlocks come from the feed
      }
    });
  }
}

// Reads `names` again soon; requests made meanwhile join the same read.
const dirty = new Set();
let refreshTimer = null;
let refreshing = false;
let lastReadMs = 0;
function refresh(names) {
  names.forEach((name) => dirty.add(name));
  if (refreshTimer === null && !refreshing && dirty.size) {
    refreshTimer = setTimeout(runRefresh, Math.max(REFRESH_DELAY_MS, lastReadMs));
  }
}

async function runRefresh() {
  refreshTimer = null;
  if (view.at !== null) return dirty.clear();
  const names = [...dirty];
  dirty.clear();
  refreshing = true;
  const started = performance.now();
  try {
    if (await load(names)) render(names);
    lastReadMs = performance.now() - started;
  } catch (error) {
    if (error instanceof Unauthorized) askForToken('The server no longer accepts this token.');
    else names.forEach((name) => dirty.add(name)); // tried again with the next refresh
  } finally {
    refreshing = false;
    refresh([]);
  }
}

// ---- the time slider and the session filter --------------------------------------------

async function travel(at) {
  const generation = ++view.generation;
  view.at = at;
  syncLocation();
  const [loaded, past] = await Promise.all([load(ALL), readEvents(at - FEED_LIMIT + 1, at)]);
  if (!loaded || generation !== view.generation) return;
  view.pastFeed = past;
  view.atTime = past.length ? Date.parse(past[past.length - 1].ts) : null;
  renderAll();
}

async function goLive() {
  const generation = ++view.generation;
  view.at = null;
  view.atTime = null;
  syncLocation();
  renderTimeline();
  if (await load(ALL) && generation === view.generation) renderAll();
}

function syncLocation() {
  const params = new URLSearchParams();
  if (view.branch) params.set('branch', view.branch);
  if (view.session) params.set('session', view.session);
  if (view.at !== null) params.set('at', view.at);
  const query = params.toString();
  history.replaceState(null, '', query ? `/?${query}` : '/');
}

function bindControls() {
  $('#login-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('#token').value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    location.reload();
  });
  $('#forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  let travelTimer = null;
  // While a person drags the slider, new events must not move it under their pointer.
  $('#slider').addEventListener('change', (event) => delete event.target.dataset.dragging);
  $('#slider').addEventListener('input', (event) => {
    event.target.dataset.dragging = 'true';
    const seq = Number(event.target.value);
    $('#at-label').textContent = seq >= view.head ? 'live' : `after #${seq}`;
    clearTimeout(travelTimer);
    travelTimer = setTimeout(() => (seq >= view.head ? goLive() : travel(seq)), 150);
  });
  $('#live').addEventListener('click', goLive);
  $('#session').addEventListener('change', async (event) => {
    view.session = event.target.value;
    view.generation += 1;
    syncLocation();
    if (await load(ALL)) renderAll();
  });
  $('#feed-filter').addEventListener('input', (event) => {
    view.feedTypes = globs(event.target.value);
    renderFeed();
  });
  $('#pause').addEventListener('click', () => {
    view.pausedAt = view.pausedAt === null ? view.lastSeq : null;
    view.unseen = 0;
    renderFeed();
  });
  $('#status-chips').addEventListener('click', (event) => {
    const status = event.target.closest('button')?.dataset.status;
    if (status === undefined) return;
    view.statusFilter = view.statusFilter === status || status === '' ? null : status;
    renderTasks();
  });
  $('#feed .body').addEventListener('click', (event) => {
    const row = event.target.closest('tr[data-seq]');
    if (row) showEnvelope(Number(row.dataset.seq));
  });
  $('#close-envelope').addEventListener('click', () => {
    view.selectedSeq = null;
    $('#envelope').hidden = true;
    renderFeed();
  });
  $('#board').addEventListener('click', onAction);
}

// ---- admin actions ---------------------------------------------------------------------

const ACTIONS = {
  kill: {
    ask: (id) => `Kill agent ${id}? Its locks are released, its claimed tasks go back to pending, and it cannot write again until an admin registers it.`,
    path: (id) => `/v1/agents/${encodeURIComponent(id)}/kill`,
    done: (id) => `Agent ${id} killed.`,
  },
  cancel: {
    ask: (id) => `Cancel task ${id}? Tasks that depend on it are cancelled too.`,
    path: (id) => `/v1/tasks/${encodeURIComponent(id)}/cancel`,
    done: (id) => `Task ${id} cancelled.`,
  },
};

async function onAction(event) {
  const button = event.target.closest('button[data-action]');
  if (!button || view.role !== 'admin') return;
  const action = ACTIONS[button.dataset.action];
  const id = button.dataset.id;
  if (!action || !window.confirm(action.ask(id))) return;
  try {
    await api(url(action.path(id)), { method: 'POST', body: {} });
    toast(action.done(id));
  } catch (error) {
    toast(error instanceof ApiError ? `${error.code}: ${error.message}` : String(error), true);
  }
}

const canAct = () => view.role === 'admin' && view.at === null;
const actionButton = (action, id, label) =>
  canAct() ? `<button type="button" class="danger" data-action="${action}" data-id="${esc(id)}">${label}</button>` : '';

// ---- rendering -------------------------------------------------------------------------

function renderAll() {
  const started = performance.now();
  render(ALL);
  const feedStarted = performance.now();
  renderFeed();
  performance.measure('swarmlog:render:feed', { start: feedStarted });
  renderTimeline();
  performance.measure('swarmlog:render-all', { start: started }); // read by benches/board
}

function render(names) {
  const changed = new Set(names);
  const renderers = { agents: renderAgents, tasks: renderTasks, locks: renderLocks, blackboard: renderBlackboard,
    consensus: renderConsensus, messages: renderMessages, sessions: renderSessions };
  for (const [panel, sources] of Object.entries(PANELS)) {
    if (sources.some((source) => changed.has(source))) {
      const started = performance.now();
      renderers[panel]();
      performance.measure(`swarmlog:render:${panel}`, { start: started });
    }
  }
  const started = performance.now();
  tick();
  performance.measure('swarmlog:render:tick', { start: started });
}

function fill(panel, summary, html) {
  $(`#${panel} .summary`).textContent = summary;
  $(`#${panel} .body`).innerHTML = html;
}

const table = (headings, rows, empty) =>
  rows.length === 0
    ? `<p class="empty">${esc(empty)}</p>`
    : `<table><thead><tr>${headings.map((h) => `<th${h.startsWith('#') ? ' class="num"' : ''}>${esc(h.replace(/^#/, ''))}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;

function counts(items, key, order) {
  const tally = Object.fromEntries(order.map((name) => [name, 0]));
  for (const item of items) tally[item[key]] = (tally[item[key]] ?? 0) + 1;
  return tally;
}

const sessionOf = () => view.data.sessions.find((session) => session.id === view.session);

function renderAgents() {
  const session = sessionOf();
  const members = session ? new Set(session.agents) : null;
  const agents = view.data.agents.filter((agent) => !members || members.has(agent.id));
  const working = new Map();
  for (const task of view.data.tasks) {
    if (task.status === 'claimed' && task.agent) working.set(task.agent, [...(working.get(task.agent) ?? []), task.id]);
  }
  const order = (agent) => AGENT_STATUSES.indexOf(agent.status);
  agents.sort((a, b) => order(a) - order(b) || byText(a.id, b.id));
  const rows = agents.map((agent) => `<tr data-id="${esc(agent.id)}">
    <td class="mono">${esc(agent.id)}<div class="muted">${esc(agent.type)}</div></td>
    <td>${badge(agent.status)}</td>
    <td>${agent.status === 'active' ? until(agent.lease_expires_at) : ''}</td>
    <td class="mono">${esc((working.get(agent.id) ?? []).join(', '))}</td>
    <td>${esc((agent.capabilities ?? []).join(', '))}</td>
    <td>${agent.status === 'active' ? actionButton('kill', agent.id, 'Kill') : ''}</td></tr>`);
  const tally = counts(agents, 'status', AGENT_STATUSES);
  const summary = AGENT_STATUSES.filter((status) => tally[status]).map((status) => `${tally[status]} ${status}`).join(' · ');
  fill('agents', summary, table(['agent', 'status', 'lease left', 'working on', 'capabilities', ''], rows, 'No agents.'));
}

function renderTasks() {
  const tasks = view.data.tasks;
  const tally = counts(tasks, 'status', STATUSES);
  $('#status-chips').innerHTML = [`<button type="button" data-status="" aria-pressed="${view.statusFilter === null}">all ${tasks.length}</button>`,
    ...STATUSES.map((status) => `<button type="button" data-status="${status}" aria-pressed="${view.statusFilter === status}">${status.replace('_', ' ')} ${tally[status]}</button>`)].join('');
  const shown = tasks
    .filter((task) => view.statusFilter === null || task.status === view.statusFilter)
    .sort((a, b) => STATUSES.indexOf(a.status) - STATUSES.indexOf(b.status) || b.priority - a.priority || byText(a.created_at, b.created_at));
  const rows = shown.map((task) => `<tr data-id="${esc(task.id)}">
    <td class="mono">${esc(task.id)}${task.title ? `<div>${esc(task.title)}</div>` : ''}</td>
    <td>${badge(task.status)}</td>
    <td class="num">${task.priority}</td>
    <td class="mono">${esc((task.depends_on ?? []).join(', '))}</td>
    <td class="mono">${esc(task.agent ?? '')}</td>
    <td class="num">${task.claimed_at || task.attempt > 1 ? `${task.attempt}/${task.max_attempts}` : ''}</td>
    <td>${task.status === 'claimed' ? until(task.lease_expires_at) : ''}</td>
    <td>${['completed', 'failed', 'cancelled'].includes(task.status) ? '' : actionButton('cancel', task.id, 'Cancel')}</td></tr>`);
  const active = STATUSES.slice(0, 4).reduce((sum, status) => sum + tally[status], 0);
  fill('tasks', `${tasks.length} in all, ${active} open`, table(['task', 'status', '#priority', 'depends on', 'claimant', '#attempt', 'lease left', ''], rows, 'No tasks.'));
  renderDag(tasks);
}

// The dependencies of one session's tasks: columns by depth, an arrow from each
// dependency to its dependent.
function renderDag(tasks) {
  const element = $('#dag');
  if (!view.session || tasks.length === 0 || tasks.length > DAG_LIMIT) {
    element.hidden = true;
    element.innerHTML = '';
    return;
  }
  const byId = new Map(tasks.map((task) => [task.id, task]));
  const depth = new Map();
  const depthOf = (task, seen = new Set()) => {
    if (depth.has(task.id)) return depth.get(task.id);
    seen.add(task.id);
    const parents = (task.depends_on ?? []).map((id) => byId.get(id)).filter((parent) => parent && !seen.has(parent.id));
    const value = parents.length ? 1 + Math.max(...parents.map((parent) => depthOf(parent, seen))) : 0;
    depth.set(task.id, value);
    return value;
  };
  const columns = [];
  for (const task of tasks) (columns[depthOf(task)] ??= []).push(task);
  const [w, h, gapX, gapY] = [150, 26, 50, 10];
  const position = new Map();
  columns.forEach((column, x) => column.forEach((task, y) => position.set(task.id, [x * (w + gapX), y * (h + gapY)])));
  const width = columns.length * (w + gapX) - gapX;
  const height = Math.max(...columns.map((column) => column.length)) * (h + gapY) - gapY;
  const edges = tasks.flatMap((task) => (task.depends_on ?? []).filter((id) => position.has(id)).map((id) => {
    const [x1, y1] = position.get(id);
    const [x2, y2] = position.get(task.id);
    return `<path class="edge" d="M${x1 + w} ${y1 + h / 2} C${x1 + w + gapX / 2} ${y1 + h / 2} ${x2 - gapX / 2} ${y2 + h / 2} ${x2 - 2} ${y2 + h / 2}"/>`;
  }));
  const nodes = tasks.map((task) => {
    const [x, y] = position.get(task.id);
    const label = task.id.length > 20 ? `${task.id.slice(0, 19)}…` : task.id;
    return `<g class="node ${esc(task.status)}" transform="translate(${x} ${y})"><title>${esc(`${task.id}: ${task.status}`)}</title><rect width="${w}" height="${h}"/><text x="8" y="17">${esc(label)}</text></g>`;
  });
  element.innerHTML = `<svg width="${width + 4}" height="${height + 4}" role="img" aria-label="Task dependencies of session ${esc(view.session)}">
    <defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" orient="auto"><path d="M0 0L8 4L0 8z" fill="#98a2b3"/></marker></defs>
    ${edges.join('')}${nodes.join('')}</svg>`;
  element.hidden = false;
}

function renderLocks() {
  const locks = view.data.locks;
  const live = view.at === null;
  const items = locks.map((lock) => `<div class="item" data-id="${esc(lock.resource)}">
    <div class="head"><strong class="mono">${esc(lock.resource)}</strong>${badge(lock.mode, 'granted')}<span class="muted">expires in ${until(lock.expires_at)}</span></div>
    <ul>${(lock.holders ?? []).map((holder) => `<li><span class="mono">${esc(holder.owner)}</span> · fencing token <span class="token">${holder.token}</span> · ${until(holder.expires_at)} left</li>`).join('')}</ul>
    ${live && lock.waiters?.length ? `<div class="muted">waiting, in order: ${lock.waiters.map((waiter, index) => `${index + 1}. <span class="mono">${esc(waiter.owner)}</span> (${esc(waiter.mode)})`).join(', ')}</div>` : ''}
  </div>`);
  const deadlocks = currentFeed().filter((event) => event.type === 'lock.deadlock_detected').slice(-5).reverse();
  const recent = deadlocks.length
    ? `<h3>Deadlocks refused (recent)</h3>${deadlocks.map((event) => `<div class="item late">#${event.seq} ${timeOf(event.ts)}: ${esc((event.data?.cycle ?? []).map((edge) => `${edge.owner} waits for ${edge.resource} (held by ${edge.held_by})`).join('; '))}</div>`).join('')}`
    : '';
  const waiting = locks.reduce((sum, lock) => sum + (lock.waiters?.length ?? 0), 0);
  fill('locks', `${locks.length} held${live && waiting ? `, ${waiting} waiting` : ''}`, (items.length ? items.join('') : '<p class="empty">No locks held.</p>') + recent);
}

function renderBlackboard() {
  const { findings, hypotheses } = view.data;
  const meter = (value) => `<meter min="0" max="1" value="${Number(value ?? 0)}"></meter> ${Number(value ?? 0).toFixed(2)}`;
  const content = new Map(findings.map((finding) => [finding.id, finding.content]));
  const hypothesisItems = hypotheses.map((hypothesis) => `<div class="item" data-id="${esc(hypothesis.id)}">
    <div class="head"><strong>${esc(hypothesis.description)}</strong>${badge(hypothesis.status)}<span>${meter(hypothesis.confidence)}</span><span class="muted">prior ${Number(hypothesis.prior ?? 0).toFixed(2)}</span></div>
    <ul>${(hypothesis.evidence ?? []).map((evidence) => `<li>${badge(evidence.supports ? 'supports' : 'refutes')} <span class="mono">${esc(evidence.finding)}</span> ×${evidence.weight}${content.has(evidence.finding) ? ` <span class="muted">${esc(content.get(evidence.finding))}</span>` : ''}</li>`).join('')}</ul>
  </div>`);
  const findingItems = [...findings].reverse().map((finding) => `<div class="item" data-id="${esc(finding.id)}">
    <div class="head">${badge(finding.category)}<span>${esc(finding.content)}</span></div>
    <div class="muted"><span class="mono">${esc(finding.agent)}</span> · ${timeOf(finding.reported_at)}${finding.confidence !== undefined && finding.confidence !== null ? ` · confidence ${meter(finding.confidence)}` : ''}${finding.tags?.length ? ` · ${esc(finding.tags.join(', '))}` : ''}</div>
    ${finding.evidence?.length ? `<ul>${finding.evidence.map((evidence) => `<li><span class="mono">${esc(evidence.source)}</span>${evidence.query ? `: ${esc(evidence.query)}` : ''}${evidence.result !== undefined ? ` → ${esc(JSON.stringify(evidence.result))}` : ''}</li>`).join('')}</ul>` : ''}
  </div>`);
  fill('blackboard', `${hypotheses.length} hypotheses, ${findings.length} findings`,
    `<h3>Hypotheses, by confidence</h3>${hypothesisItems.join('') || '<p class="empty">No hypotheses.</p>'}<h3>Findings, newest first</h3>${findingItems.join('') || '<p class="empty">No findings.</p>'}`);
}

function renderConsensus() {
  const proposals = [...view.data.proposals].sort((a, b) => (a.status === b.status ? 0 : a.status === 'open' ? -1 : 1));
  const items = proposals.map((proposal) => {
    const voted = new Set((proposal.votes ?? []).map((vote) => vote.agent));
    const missing = (proposal.voters ?? []).filter((voter) => !voted.has(voter));
    const action = typeof proposal.action === 'string' ? proposal.action : JSON.stringify(proposal.action);
    return `<div class="item" data-id="${esc(proposal.id)}">
      <div class="head"><strong>${esc(action)}</strong>${badge(proposal.status)}${proposal.decision ? badge(proposal.decision) : ''}<span class="muted">${esc(proposal.quorum)}${proposal.threshold ? ` ${proposal.threshold}` : ''}</span>
      ${proposal.status === 'open' ? `<span class="muted">deadline in ${until(proposal.deadline_at)}</span>` : ''}</div>
      <div>${proposal.votes_for} for · ${proposal.votes_against} against · ${proposal.abstentions} abstaining</div>
      <ul>${(proposal.votes ?? []).map((vote) => `<li><span class="mono">${esc(vote.agent)}</span> ${badge(vote.vote)}${vote.reason ? ` <span class="muted">${esc(vote.reason)}</span>` : ''}</li>`).join('')}</ul>
      ${proposal.status === 'open' && missing.length ? `<div class="muted">still to vote: ${missing.map((agent) => `<span class="mono">${esc(agent)}</span>`).join(', ')}</div>` : ''}
    </div>`;
  });
  const open = proposals.filter((proposal) => proposal.status === 'open').length;
  fill('consensus', `${open} open, ${proposals.length - open} decided`, items.join('') || '<p class="empty">No proposals.</p>');
}

function renderMessages() {
  const session = sessionOf();
  const members = session ? new Set(session.agents) : null;
  const messages = view.data.messages.filter((message) => !members || members.has(message.from) || members.has(message.to));
  const rows = messages.map((message) => `<tr data-id="${esc(message.id)}">
    <td class="mono">${timeOf(message.sent_at)}</td>
    <td class="mono">${esc(message.from)} → ${esc(message.to === '*' ? 'everyone' : message.to)}</td>
    <td>${esc(message.type)}</td>
    <td class="mono">${esc(JSON.stringify(message.payload ?? null).slice(0, 160))}</td>
    <td>${message.requires_ack ? `${message.acked_by?.length ?? 0}/${message.recipients?.length ?? 0} acked` : ''}</td></tr>`);
  fill('messages', messages.length ? `${messages.length}, newest first` : '', table(['sent', 'from → to', 'type', 'payload', 'acks'], rows, 'No messages.'));
}

function renderSessions() {
  const select = $('#session');
  const options = ['<option value="">all sessions</option>', ...view.data.sessions.map((session) =>
    `<option value="${esc(session.id)}">${esc(session.id)} · ${esc(session.status)} · ${Math.round(session.progress_percent ?? 0)}%</option>`)];
  select.innerHTML = options.join('');
  select.value = view.session;
  if (select.value !== view.session) {
    // A session the URL named that does not exist (yet): keep it selectable.
    select.insertAdjacentHTML('beforeend', `<option value="${esc(view.session)}">${esc(view.session)}</option>`);
    select.value = view.session;
  }
}

const currentFeed = () => (view.at === null ? view.feed : view.pastFeed);

function renderFeed() {
  const all = currentFeed();
  const live = view.at === null;
  const shown = all.filter((event) => (!view.feedTypes || view.feedTypes.test(event.type))
    && (!view.session || event.session === view.session)
    && (!live || view.pausedAt === null || event.seq <= view.pausedAt));
  const rows = shown.slice().reverse().map((event) => `<tr data-seq="${event.seq}"${event.seq === view.selectedSeq ? ' class="selected"' : ''}>
    <td class="seq num">${event.seq}</td><td class="mono">${timeOf(event.ts)}</td><td>${esc(event.type)}</td>
    <td class="mono">${esc(event.stream)}</td><td class="mono">${esc(event.actor)}</td><td class="mono">${esc(event.session ?? '')}</td></tr>`);
  $('#pause').textContent = view.pausedAt !== null ? `Resume${view.unseen ? ` (${view.unseen} new)` : ''}` : 'Pause';
  const where = live ? 'live' : `up to #${view.at}`;
  fill('feed', `${shown.length} shown of the last ${all.length}, ${where}`, table(['#seq', 'time', 'type', 'stream', 'actor', 'session'], rows, 'No events yet.'));
}

function renderTimeline() {
  const slider = $('#slider');
  slider.max = String(view.head);
  slider.min = view.head ? '1' : '0';
  slider.disabled = view.head === 0;
  if (view.at === null && !slider.dataset.dragging) slider.value = String(view.head);
  $('#head').textContent = `head #${view.head}`;
  $('#live').hidden = view.at === null;
  const banner = $('#banner');
  if (view.at === null) {
    $('#at-label').textContent = 'live';
    banner.hidden = true;
  } else {
    $('#at-label').textContent = `after #${view.at}`;
    banner.hidden = false;
    banner.textContent = `Showing the board as it was right after event #${view.at}${view.atTime ? ` (${new Date(view.atTime).toLocaleString()})` : ''}. New events keep arriving; "Back to live" returns.`;
  }
}

function showEnvelope(seq) {
  const event = currentFeed().find((candidate) => candidate.seq === seq);
  if (!event) return;
  view.selectedSeq = seq;
  $('#envelope .seq').textContent = `#${seq} ${event.type}`;
  $('#envelope pre').textContent = JSON.stringify(event, null, 2);
  $('#envelope').hidden = false;
  renderFeed();
}

start();
