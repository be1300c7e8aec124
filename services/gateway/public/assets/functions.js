import { api, ApiError, AuthRequired, describeApiError } from './api.js';
import { h, jsonText, mono, notice, replace, timeEl } from './dom.js';
import { poller } from './live.js';

/**
 * Functions and their queues from GET /v1/functions (depth per state, workers, replicas, paused),
 * refreshed every 5 s, with a pause/resume button per function (POST /v1/functions/:name/pause|resume).
 * A gateway without that route still shows the functions its workflows name.
 */

const STATES = ['waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed'];

function count(value) {
  return h(
    'td',
    { class: ['num', value > 0 && 'nonzero'] },
    value === null || value === undefined ? '—' : String(value),
  );
}

function cellValue(value) {
  if (value === null || value === undefined) return h('span', { class: 'muted' }, '—');
  if (typeof value === 'object') return mono(jsonText(value).replace(/\s+/g, ' '));
  return String(value);
}

export function mount(main, { signal }) {
  const status = h('div');
  const flash = h('div', { id: 'functions-flash' });
  const table = h('div', { class: 'card table-card' });
  main.append(
    h(
      'div',
      { class: 'page-head' },
      h('h1', null, 'Functions'),
      h('span', { class: 'spacer' }),
      h('a', { href: '/admin/queues', class: 'button' }, 'Open the queue board'),
    ),
    status,
    flash,
    table,
  );

  /** The placeholder: the functions the stored workflows name, without live numbers. */
  const fromDefinitions = async () => {
    const { workflows } = await api('/v1/workflows', { signal });
    const used = new Map();
    for (const w of workflows) {
      for (const s of w.steps) {
        if (!s.function || s.function.startsWith('baton.')) continue;
        used.set(s.function, [...(used.get(s.function) ?? []), w.name]);
      }
    }
    replace(
      table,
      h(
        'table',
        { class: 'table', id: 'functions-table' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            ['Function', 'Queue', 'Used by', 'Depth', 'Workers', 'Replicas'].map((t) => h('th', { scope: 'col' }, t)),
          ),
        ),
        h(
          'tbody',
          null,
          [...used.keys()]
            .sort()
            .map((name) =>
              h(
                'tr',
                null,
                h('td', null, mono(name)),
                h('td', null, mono(`{fn.${name}}`)),
                h('td', { class: 'muted' }, [...new Set(used.get(name))].join(', ')),
                h('td', { class: 'muted' }, '—'),
                h('td', { class: 'muted' }, '—'),
                h('td', { class: 'muted' }, '—'),
              ),
            ),
        ),
      ),
      used.size ? null : h('p', { class: 'empty' }, 'No workflow names a function yet.'),
    );
  };

  /** Pause or resume one function, then refresh the table. */
  const setPaused = async (button, name, paused) => {
    button.disabled = true;
    flash.replaceChildren();
    try {
      let body;
      if (paused) {
        const reason = window.prompt(
          `Pause ${name}? Its queue hands out no job until resumed; running ones finish.\nReason (optional):`,
        );
        if (reason === null) return;
        body = reason.trim() ? { reason: reason.trim() } : {};
      }
      const f = await api(`/v1/functions/${encodeURIComponent(name)}/${paused ? 'pause' : 'resume'}`, {
        method: 'POST',
        body,
        signal,
      });
      replace(flash, notice('info', `${f.name} ${f.paused ? 'paused' : 'resumed'}.`));
      polling.refresh();
    } catch (err) {
      if (err instanceof AuthRequired) return;
      replace(flash, notice('error', describeApiError(err)));
    } finally {
      button.disabled = false;
    }
  };

  const pauseCell = (f) => {
    if (typeof f.paused !== 'boolean') return h('td', { class: 'muted' }, '—');
    const button = h(
      'button',
      {
        type: 'button',
        class: ['button', 'small', !f.paused && 'danger'],
        dataset: { action: f.paused ? 'resume' : 'pause' },
      },
      f.paused ? 'Resume' : 'Pause',
    );
    button.addEventListener('click', () => setPaused(button, f.name, !f.paused));
    return h(
      'td',
      { class: 'fn-state' },
      f.paused
        ? h(
            'span',
            {
              class: 'badge status-compensating fn-paused',
              title: f.pauseReason ? `Paused: ${f.pauseReason}` : 'Paused',
            },
            'paused',
          )
        : h('span', { class: 'badge status-running fn-running' }, 'running'),
      f.paused && f.pausedAt ? h('span', { class: 'muted' }, ' since ', timeEl(f.pausedAt)) : null,
      f.paused && f.pauseReason ? h('div', { class: 'muted pause-reason' }, f.pauseReason) : null,
      ' ',
      button,
    );
  };

  const render = (data) => {
    const functions = Array.isArray(data?.functions) ? data.functions : [];
    const known = new Set([
      'name',
      'queue',
      'jobs',
      'workers',
      'replicas',
      'lastSeenAt',
      'paused',
      'pausedAt',
      'pauseReason',
    ]);
    const extra = [...new Set(functions.flatMap((f) => Object.keys(f ?? {})).filter((k) => !known.has(k)))];
    replace(
      table,
      h(
        'table',
        { class: 'table', id: 'functions-table' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            h('th', { scope: 'col' }, 'Function'),
            h('th', { scope: 'col' }, 'State'),
            h('th', { scope: 'col' }, 'Queue'),
            STATES.map((s) => h('th', { scope: 'col', class: 'num' }, s)),
            h('th', { scope: 'col', class: 'num' }, 'Workers'),
            h('th', { scope: 'col', class: 'num' }, 'Replicas'),
            h('th', { scope: 'col' }, 'Last seen'),
            extra.map((k) => h('th', { scope: 'col' }, k)),
          ),
        ),
        h(
          'tbody',
          null,
          functions.map((f) =>
            h(
              'tr',
              { dataset: { function: String(f.name ?? ''), paused: String(f.paused === true) } },
              h('td', null, mono(String(f.name ?? '?'))),
              pauseCell(f),
              h('td', null, f.queue ? mono(String(f.queue)) : '—'),
              STATES.map((s) => count(f.jobs?.[s])),
              h('td', { class: ['num', f.workers === 0 && 'warn'] }, f.workers ?? '—'),
              h(
                'td',
                { class: 'num' },
                f.replicas && typeof f.replicas === 'object'
                  ? `${f.replicas.ready ?? '?'}/${f.replicas.desired ?? '?'}`
                  : '—',
              ),
              h('td', null, f.lastSeenAt ? timeEl(f.lastSeenAt) : h('span', { class: 'muted' }, 'never')),
              extra.map((k) => h('td', null, cellValue(f[k]))),
            ),
          ),
        ),
      ),
      functions.length ? null : h('p', { class: 'empty' }, 'No function has reported and no workflow names one yet.'),
    );
  };

  let available = true;
  const polling = poller(
    async () => {
      if (!available) return false;
      try {
        const data = await api('/v1/functions', { signal });
        replace(
          status,
          data?.kubernetes === false
            ? h(
                'p',
                { class: 'muted note' },
                'Replicas come from Kubernetes: this gateway is not running in a cluster.',
              )
            : '',
        );
        render(data);
      } catch (err) {
        if (err instanceof AuthRequired) throw err;
        if (err instanceof ApiError && err.status === 404) {
          available = false;
          replace(
            status,
            notice(
              'info',
              h('strong', null, 'Function overview not available. '),
              'This gateway does not serve ',
              mono('GET /v1/functions'),
              ' yet, so queue depth, workers and replicas are not shown here. The functions below are the ones the stored workflows name; the ',
              h('a', { href: '/admin/queues' }, 'queue board'),
              ' shows each queue live.',
            ),
          );
          await fromDefinitions().catch((e) => {
            if (!(e instanceof AuthRequired)) replace(table, notice('error', e.message));
          });
          return false;
        }
        replace(status, notice('error', describeApiError(err)));
        throw err;
      }
      return true;
    },
    { interval: 5000, signal },
  );
}
