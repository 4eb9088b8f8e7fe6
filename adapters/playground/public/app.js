// The Imagine playground page: a prompt box, live job cards fed by one EventSource, the same
// buttons as the chat platforms, and a history of this browser's jobs kept in localStorage.
// Plain DOM, no dependencies; everything user-supplied goes in through textContent.

const historyKey = 'imagine-playground-history';
const historyLimit = 50;
const statusRank = { queued: 0, running: 1, completed: 2, failed: 2, cancelled: 2 };

const form = document.getElementById('prompt-form');
const input = document.getElementById('prompt');
const submit = document.getElementById('submit');
const jobsList = document.getElementById('jobs');
const emptyText = document.getElementById('empty');
const notices = document.getElementById('notices');
const connection = document.getElementById('connection');
const template = document.getElementById('job-template');

/** job id → { element, rank, view } */
const cards = new Map();

// One id per tab, kept across reloads so that the event stream of running jobs survives them.
const clientId = sessionStorage.getItem('imagine-client') ?? makeClientId();
sessionStorage.setItem('imagine-client', clientId);

function makeClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

// ---- text: the commands write chat markdown (**bold**, `code`); render just those two ----

function appendRichText(target, text) {
  target.replaceChildren();
  const pattern = /(\*\*[^*]+\*\*|`[^`]+`)/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) target.append(text.slice(last, match.index));
    const token = match[0];
    const element = document.createElement(token.startsWith('**') ? 'strong' : 'code');
    element.textContent = token.startsWith('**') ? token.slice(2, -2) : token.slice(1, -1);
    target.append(element);
    last = match.index + token.length;
  }
  if (last < text.length) target.append(text.slice(last));
}

function notify(text, { error = false } = {}) {
  const notice = document.createElement('div');
  notice.className = error ? 'notice error' : 'notice';
  if (error) notice.setAttribute('role', 'alert');
  const body = document.createElement('div');
  appendRichText(body, text);
  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.className = 'dismiss quiet';
  dismiss.textContent = '×';
  dismiss.setAttribute('aria-label', 'Dismiss message');
  dismiss.addEventListener('click', () => {
    notice.remove();
    input.focus();
  });
  notice.append(body, dismiss);
  notices.prepend(notice);
  while (notices.children.length > 4) notices.lastElementChild.remove();
}

// ---- history ----

function readHistory() {
  try {
    const items = JSON.parse(localStorage.getItem(historyKey) ?? '[]');
    return Array.isArray(items) ? items.filter((item) => item && typeof item.id === 'string') : [];
  } catch {
    return [];
  }
}

function remember(view) {
  const items = readHistory().filter((item) => item.id !== view.id);
  items.unshift({ id: view.id, prompt: view.prompt, createdAt: view.createdAt });
  localStorage.setItem(historyKey, JSON.stringify(items.slice(0, historyLimit)));
}

function forget(id) {
  localStorage.setItem(historyKey, JSON.stringify(readHistory().filter((item) => item.id !== id)));
}

// ---- job cards ----

function cardFor(id, placement = 'top') {
  let card = cards.get(id);
  if (card) return card;
  const element = template.content.firstElementChild.cloneNode(true);
  element.id = `job-${id}`;
  element.dataset.jobId = id;
  const cancel = element.querySelector('.job-cancel');
  cancel.addEventListener('click', () => cancelJob(cancel, id));
  const title = element.querySelector('.job-title');
  title.id = `job-${id}-title`;
  title.textContent = 'Loading…';
  element.querySelector('article').setAttribute('aria-labelledby', title.id);
  card = { element, rank: -1, view: undefined };
  cards.set(id, card);
  if (placement === 'top') jobsList.prepend(element);
  else jobsList.append(element);
  emptyText.hidden = true;
  return card;
}

function part(card, name) {
  return card.element.querySelector(`.job-${name}`);
}

function describeKind(view) {
  if (view.kind === 'upscale') return `Upscale of image ${view.parent?.index ?? '?'}`;
  if (view.kind === 'variation') return `Variations (${view.strength ?? 'strong'}) of image ${view.parent?.index ?? '?'}`;
  if (view.kind === 'reroll') return 'Re-roll';
  return 'Imagine';
}

/** Renders a job view from the server, unless the card already shows a later state. */
function renderView(view) {
  const card = cardFor(view.id);
  const rank = statusRank[view.status] ?? 0;
  if (rank < card.rank) return card;
  const sameState = rank === card.rank;
  card.rank = rank;
  card.view = view;
  card.element.dataset.status = view.status;
  part(card, 'title').textContent = view.prompt;
  const meta = [describeKind(view), view.aspectRatio, `seed ${view.seed}`, new Date(view.createdAt).toLocaleTimeString()];
  part(card, 'meta').textContent = meta.filter(Boolean).join(' · ');
  if (view.status === 'queued' || view.status === 'running') {
    // Live events say more (position, percentage) than a record; keep their text.
    if (!sameState || !part(card, 'status').textContent) part(card, 'status').textContent = view.status === 'queued' ? 'Waiting in the queue…' : 'Generating…';
  } else if (view.status === 'completed') {
    part(card, 'status').textContent = '';
  } else {
    part(card, 'status').textContent = view.status === 'cancelled' ? 'Cancelled.' : '';
  }
  part(card, 'status').hidden = part(card, 'status').textContent === '';
  part(card, 'progress').hidden = rank !== 1;
  part(card, 'cancel').hidden = rank >= 2;
  part(card, 'cancel').setAttribute('aria-label', `Cancel the job “${view.prompt}”`);
  if (view.status === 'completed' && view.imageUrl) showImage(card, view.imageUrl, view.alt);
  const error = part(card, 'error');
  error.hidden = !view.error;
  error.textContent = view.error ?? '';
  const caption = part(card, 'caption');
  if (view.caption) appendRichText(caption, view.caption);
  renderButtons(card, view.buttons ?? []);
  return card;
}

function showImage(card, url, alt) {
  const figure = part(card, 'figure');
  const image = part(card, 'image');
  if (image.getAttribute('src') !== url) image.src = url;
  image.alt = alt;
  if (card.view) {
    image.width = card.view.imageWidth ?? 0;
    image.height = card.view.imageHeight ?? 0;
  }
  part(card, 'link').href = url;
  part(card, 'link').setAttribute('aria-label', `Open full size: ${alt}`);
  figure.hidden = false;
}

function renderButtons(card, rows) {
  const container = part(card, 'buttons');
  container.replaceChildren();
  container.hidden = rows.length === 0;
  container.setAttribute('aria-label', `Actions for “${card.view?.prompt ?? 'this job'}”`);
  for (const row of rows) {
    const rowElement = document.createElement('div');
    rowElement.className = 'button-row';
    for (const spec of row) {
      const button = document.createElement('button');
      button.type = 'button';
      // An emoji-only label (🔄) also gets its words, for fonts without emoji and for clarity.
      button.textContent = /^[\p{L}\p{N}]/u.test(spec.label) ? spec.label : `${spec.label} ${(spec.ariaLabel ?? '').split(':')[0]}`.trim();
      button.className = spec.style === 'primary' ? 'primary' : '';
      button.dataset.customId = spec.customId;
      if (spec.ariaLabel && spec.ariaLabel !== spec.label) button.setAttribute('aria-label', spec.ariaLabel);
      if (spec.description) button.title = spec.description;
      button.addEventListener('click', () => pressButton(button, spec));
      rowElement.append(button);
    }
    container.append(rowElement);
  }
}

function applyEvent(event) {
  const card = cardFor(event.jobId);
  if (event.type === 'completed' || event.type === 'failed') {
    if (event.type === 'failed') {
      const error = part(card, 'error');
      error.hidden = false;
      error.textContent = event.text;
    }
    // The full record (buttons, caption) comes from the server.
    void refresh(event.jobId);
    return;
  }
  const rank = event.type === 'queued' ? 0 : 1;
  if (rank < card.rank) return;
  card.rank = rank;
  card.element.dataset.status = rank === 0 ? 'queued' : 'running';
  part(card, 'status').textContent = event.text;
  part(card, 'status').hidden = false;
  part(card, 'cancel').hidden = false;
  const progress = part(card, 'progress');
  progress.hidden = rank !== 1;
  if (event.type === 'progress') {
    progress.value = event.fraction;
    progress.setAttribute('aria-label', `Progress: ${Math.round(event.fraction * 100)}%`);
  }
  if (!card.view) void refresh(event.jobId);
}

async function refresh(id) {
  const response = await fetch(`/jobs/${encodeURIComponent(id)}`);
  if (response.status === 404) {
    forget(id);
    cards.get(id)?.element.remove();
    cards.delete(id);
    emptyText.hidden = cards.size > 0;
    return undefined;
  }
  if (!response.ok) return undefined;
  const view = await response.json();
  renderView(view);
  remember(view);
  return view;
}

// ---- commands and buttons ----

async function post(path, body) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, client: clientId }),
  });
  if (!response.ok && response.headers.get('content-type')?.includes('application/json') !== true) {
    return { kind: 'message', ephemeral: true, text: `The playground server answered ${response.status}.` };
  }
  return response.json();
}

function handleReply(reply) {
  if (reply.kind === 'job') {
    const card = renderView(reply.job);
    remember(reply.job);
    if (reply.text && card.rank === 0) {
      part(card, 'status').textContent = reply.text;
      part(card, 'status').hidden = false;
    }
    return card;
  }
  notify(reply.text, { error: reply.ephemeral && reply.error === true });
  return undefined;
}

async function cancelJob(button, id) {
  button.disabled = true;
  try {
    const reply = await post('/api/command', { text: `/cancel ${id}` });
    notify(reply.text);
    await refresh(id);
  } catch (error) {
    notify(`Could not reach the playground server (${error.message}).`, { error: true });
  } finally {
    button.disabled = false;
  }
}

async function pressButton(button, spec) {
  button.disabled = true;
  try {
    const reply = await post('/api/button', { customId: spec.customId });
    const card = handleReply(reply);
    card?.element.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  } catch (error) {
    notify(`Could not reach the playground server (${error.message}).`, { error: true });
  } finally {
    button.disabled = false;
  }
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text) return;
  submit.disabled = true;
  try {
    const reply = await post('/api/command', { text });
    handleReply(reply);
    if (reply.kind === 'job') input.value = '';
  } catch (error) {
    notify(`Could not reach the playground server (${error.message}).`, { error: true });
  } finally {
    submit.disabled = false;
    input.focus();
  }
});

document.getElementById('clear-history').addEventListener('click', () => {
  localStorage.removeItem(historyKey);
  for (const card of cards.values()) card.element.remove();
  cards.clear();
  emptyText.hidden = false;
  input.focus();
});

// ---- live events ----

function connect() {
  const source = new EventSource(`/events?client=${clientId}`);
  source.addEventListener('open', () => {
    connection.dataset.state = 'open';
    connection.textContent = 'Live';
  });
  source.addEventListener('error', () => {
    connection.dataset.state = source.readyState === EventSource.CLOSED ? 'closed' : 'connecting';
    connection.textContent = source.readyState === EventSource.CLOSED ? 'Disconnected' : 'Reconnecting…';
  });
  source.addEventListener('job', (message) => {
    try {
      applyEvent(JSON.parse(message.data));
    } catch {
      // A malformed event must not stop the stream.
    }
  });
}

// Jobs of an earlier page whose events went to another tab: poll until they finish.
async function follow(id) {
  for (let attempt = 0; attempt < 900; attempt += 1) {
    const card = cards.get(id);
    if (!card || card.rank >= 2) return;
    await new Promise((resolve) => setTimeout(resolve, 2000));
    if ((cards.get(id)?.rank ?? 2) >= 2) return;
    await refresh(id);
  }
}

async function restoreHistory() {
  const items = readHistory();
  emptyText.hidden = items.length > 0;
  for (const item of items) cardFor(item.id, 'bottom');
  await Promise.all(items.map(async (item) => {
    const view = await refresh(item.id).catch(() => undefined);
    if (view && (view.status === 'queued' || view.status === 'running')) void follow(item.id);
  }));
  emptyText.hidden = cards.size > 0;
}

connect();
void restoreHistory();
