/**
 * DOM building without innerHTML: every piece of data becomes a text node or an attribute value set
 * through the DOM, so nothing a run, a log line or a definition contains is ever parsed as HTML.
 */

/** Only same-origin paths (and in-page anchors or queries) become links. */
export function safeHref(value) {
  const href = String(value ?? '');
  return /^(\/(?![/\\])|\?|#)/.test(href) ? href : '#';
}

export function append(parent, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/**
 * `h('a', {class: 'x', href: '/runs/1', onclick: fn}, 'text', otherNode)`. Attribute names come
 * from this code only; values are data and are set as attribute values or properties.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = Array.isArray(value) ? value.filter(Boolean).join(' ') : String(value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'value') el.value = String(value);
    else if (name === 'checked' || name === 'selected') el[name] = Boolean(value);
    else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'href') el.setAttribute('href', safeHref(value));
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  return append(el, children);
}

/** Replaces an element's children, skipping null/undefined/false like h() does. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A CSS-safe token for a status (`compensation_failed` → `compensation_failed`). */
export function token(value) {
  return String(value ?? 'unknown')
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, '');
}

export function statusBadge(status, extra) {
  return h(
    'span',
    { class: ['badge', `status-${token(status)}`, extra] },
    String(status ?? 'unknown').replace('_', ' '),
  );
}

export function shortId(id) {
  return String(id ?? '').slice(0, 8);
}

export function mono(text, props = {}) {
  return h('code', { ...props, class: ['mono', props.class] }, text);
}

/** `12 ms`, `3.4 s`, `2 min 5 s`, `1 h 3 min`, `2 d 4 h`. */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export function durationBetween(from, to) {
  if (!from) return null;
  const end = to ? Date.parse(to) : Date.now();
  return end - Date.parse(from);
}

/** `just now`, `12 s ago`, `5 min ago`, `in 3 h`, then the date. */
export function relativeTime(iso, now = Date.now()) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return '—';
  const diff = now - t;
  const abs = Math.abs(diff);
  const say = (n, unit) => (diff >= 0 ? `${n} ${unit} ago` : `in ${n} ${unit}`);
  if (abs < 5_000) return diff >= 0 ? 'just now' : 'in a moment';
  if (abs < 60_000) return say(Math.round(abs / 1000), 's');
  if (abs < 3_600_000) return say(Math.round(abs / 60_000), 'min');
  if (abs < 86_400_000) return say(Math.round(abs / 3_600_000), 'h');
  if (abs < 7 * 86_400_000) return say(Math.round(abs / 86_400_000), 'd');
  return new Date(t).toISOString().slice(0, 10);
}

/** A <time> showing relative time, with the ISO instant in its title; kept fresh by tickTimes. */
export function timeEl(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: iso, dataset: { relative: '' } }, relativeTime(iso));
}

/** Refreshes every relative <time> on the page every few seconds. */
export function tickTimes() {
  setInterval(() => {
    const now = Date.now();
    for (const el of document.querySelectorAll('time[data-relative]')) {
      const text = relativeTime(el.getAttribute('datetime'), now);
      if (el.textContent !== text) el.textContent = text;
    }
  }, 5_000);
}

export function jsonText(value) {
  if (value === undefined) return '';
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

export function jsonBlock(value, props = {}) {
  return h('pre', { ...props, class: ['json', props.class] }, jsonText(value));
}

/** A step or run error (object with code/message, or anything) as one line. */
export function errorLine(error) {
  if (error === null || error === undefined) return '';
  if (typeof error === 'string') return error;
  if (typeof error === 'object') {
    const code = error.code ? String(error.code) : '';
    const message = error.message ? String(error.message) : '';
    if (code || message) return code && message ? `${code}: ${message}` : code || message;
  }
  return jsonText(error);
}

export function notice(kind, ...children) {
  return h('div', { class: ['notice', kind], role: kind === 'error' ? 'alert' : 'status' }, ...children);
}

/** An ApiError's message with each detail (`path: message`) on its own line. */
export function problemList(err) {
  const details = Array.isArray(err?.details) ? err.details : [];
  return h(
    'div',
    { class: 'problems' },
    h('p', null, err?.message || String(err)),
    details.length
      ? h(
          'ul',
          null,
          details.map((d) =>
            h('li', null, d && typeof d === 'object' && d.path ? [mono(d.path), ' ', d.message] : jsonText(d)),
          ),
        )
      : null,
  );
}

/**
 * A run's tags as chips, each a link to the runs list filtered by it (`/?tag=key:value`);
 * `onpick(tag, event)`, when given, handles a click instead (the runs list adds the filter in place).
 */
export function tagChips(tags, { onpick } = {}) {
  // By key: PostgreSQL returns jsonb keys shortest first.
  const entries = Object.entries(tags ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  if (!entries.length) return null;
  return h(
    'span',
    { class: 'tags' },
    entries.map(([key, value]) => {
      const tag = `${key}:${value}`;
      return h(
        'a',
        {
          class: 'tag-chip',
          href: `/?${new URLSearchParams({ tag })}`,
          title: `Runs tagged ${tag}`,
          dataset: { tag },
          onclick: onpick
            ? (event) => {
                event.preventDefault();
                onpick(tag, event);
              }
            : undefined,
        },
        h('span', { class: 'tag-key' }, key),
        value,
      );
    }),
  );
}
