import { api, ApiError, AuthRequired, getApiKey, openWithKey, describeApiError } from './api.js';
import {
  durationBetween,
  errorLine,
  formatDuration,
  h,
  jsonBlock,
  mono,
  notice,
  problemList,
  replace,
  shortId,
  statusBadge,
  tagChips,
  timeEl,
  token,
} from './dom.js';
import { poller } from './live.js';

/**
 * One run: status and the "why it failed" summary first, then the timeline of steps and
 * compensations with their attempts, durations, errors and logs; retry and cancel. Refreshed every
 * 2 s while the run is active.
 */

const ACTIVE = ['pending', 'running', 'compensating'];
const RETRYABLE = ['failed', 'compensated', 'compensation_failed', 'cancelled'];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const LOG_PAGES = 5;
/** Items a "more" click loads (GET /v1/runs/:id/steps/:stepId/items). */
const ITEMS_PAGE = 100;

const OUTCOME = {
  failed: 'The run failed: nothing needed undoing.',
  compensated: 'The run failed; the steps it had completed were undone (compensated).',
  compensation_failed:
    'The run failed and a compensation failed too: some effects may not be undone. A person must look.',
  cancelled: 'The run was cancelled.',
};

/** Logs of the run, oldest first, following the cursor a few pages. */
async function fetchLogs(runId, signal) {
  const logs = [];
  let cursor = null;
  for (let i = 0; i < LOG_PAGES; i += 1) {
    const q = new URLSearchParams({ limit: '1000' });
    if (cursor) q.set('cursor', cursor);
    const page = await api(`/v1/runs/${runId}/logs?${q}`, { signal });
    logs.push(...page.logs);
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  return { logs, truncated: Boolean(cursor) };
}

/** Steps and compensations in the order they were queued, each marked when a later execution replaced it. */
function timelineOf(run) {
  const items = [
    ...run.steps.map((s, i) => ({ ...s, kind: 'step', order: i })),
    ...run.compensations.map((s, i) => ({ ...s, kind: 'compensation', order: run.steps.length + i })),
  ];
  const latest = new Map();
  for (const item of items) latest.set(`${item.kind}:${item.id}`, item.executionId);
  for (const item of items) item.superseded = latest.get(`${item.kind}:${item.id}`) !== item.executionId;
  const at = (item) => Date.parse(item.queuedAt ?? item.startedAt ?? item.finishedAt ?? '') || Infinity;
  return items.sort((a, b) => at(a) - at(b) || a.order - b.order);
}

/** Each log line goes to the execution of its step that was running when it was written. */
function logsByExecution(items, logs) {
  const byExecution = new Map();
  const runLevel = [];
  for (const line of logs) {
    const candidates = items.filter((i) => i.id === line.stepId && i.startedAt);
    const t = Date.parse(line.time);
    const within = candidates.filter(
      (i) => Date.parse(i.startedAt) <= t && (!i.finishedAt || t <= Date.parse(i.finishedAt) + 1000),
    );
    const target = within.at(-1) ?? candidates.filter((i) => Date.parse(i.startedAt) <= t).at(-1) ?? candidates.at(-1);
    if (!target) {
      runLevel.push(line);
      continue;
    }
    const list = byExecution.get(target.executionId) ?? [];
    list.push(line);
    byExecution.set(target.executionId, list);
  }
  return { byExecution, runLevel };
}

/** `14:03:07.412` in local time; the ISO instant goes in the title. */
function clockTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function logTable(lines, { showStep = false } = {}) {
  return h(
    'table',
    { class: 'table logs-table' },
    h(
      'tbody',
      null,
      lines.map((line) =>
        h(
          'tr',
          { class: `log-${token(line.level)}` },
          h('td', { class: 'mono log-time', title: line.time }, clockTime(line.time)),
          h('td', null, h('span', { class: ['level', `level-${token(line.level)}`] }, line.level)),
          showStep ? h('td', null, line.stepId ? mono(line.stepId) : h('span', { class: 'muted' }, 'run')) : null,
          h(
            'td',
            { class: 'log-message' },
            line.message,
            line.data && Object.keys(line.data).length
              ? h('code', { class: 'mono log-data' }, JSON.stringify(line.data))
              : null,
          ),
        ),
      ),
    ),
  );
}

function failureSummary(run) {
  const e = run.error;
  if (!e && !OUTCOME[run.status]) return null;
  const parts = [];
  if (e?.stepId) {
    parts.push(
      h(
        'p',
        { class: 'why-lead' },
        'Step ',
        mono(e.stepId),
        e.function ? [' (function ', mono(e.function), ')'] : null,
        e.attempt ? ` failed on attempt ${e.attempt}` : ' failed',
        e.nonRetryable ? ' and was not retried: the error is non-retryable.' : '.',
      ),
    );
  }
  if (e) {
    parts.push(
      h(
        'p',
        { class: 'why-error' },
        h('span', { class: 'error-code' }, e.code ?? 'ERROR'),
        e.message ? h('span', { class: 'why-message' }, e.message) : null,
      ),
    );
  }
  if (OUTCOME[run.status]) parts.push(h('p', { class: 'muted' }, OUTCOME[run.status]));
  const extra =
    e && typeof e === 'object'
      ? Object.keys(e).filter((k) => !['stepId', 'function', 'attempt', 'code', 'message', 'nonRetryable'].includes(k))
      : [];
  if (extra.length) {
    parts.push(
      h(
        'details',
        null,
        h('summary', null, 'Error details'),
        jsonBlock(Object.fromEntries(extra.map((k) => [k, e[k]]))),
      ),
    );
  }
  return h(
    'section',
    { class: ['card', 'why', `why-${token(run.status)}`], id: 'why' },
    h('h2', null, run.status === 'cancelled' ? 'Why it stopped' : 'Why it failed'),
    parts,
  );
}

function documentLink(run) {
  const url = run.output && typeof run.output === 'object' ? run.output.documentUrl : undefined;
  if (typeof url !== 'string' || !/^\/v1\/documents\/[0-9a-f-]{36}$/i.test(url)) return null;
  const name = `${run.output.invoiceNumber ?? `document-${shortId(url.split('/').at(-1))}`}.pdf`;
  const link = h(
    'a',
    { href: url, class: 'button', id: 'document-link', target: '_blank', rel: 'noopener' },
    'Open the PDF',
  );
  const problem = h('span', { class: 'form-error' });
  link.addEventListener('click', (event) => {
    // A plain link cannot carry the API key: fetch the document with it instead.
    if (!getApiKey()) return;
    event.preventDefault();
    problem.textContent = '';
    openWithKey(url, name).catch((err) => {
      if (!(err instanceof AuthRequired)) problem.textContent = err.message;
    });
  });
  return h(
    'div',
    { class: 'document' },
    h('span', { class: 'doc-icon', 'aria-hidden': 'true' }, 'PDF'),
    link,
    ' ',
    mono(name, { class: 'muted' }),
    problem,
  );
}

function bar(item, window) {
  const span = Math.max(window.end - window.start, 1);
  const pct = (t) => Math.min(100, Math.max(0, ((t - window.start) / span) * 100));
  const queued = Date.parse(item.queuedAt ?? item.startedAt ?? '');
  const started = Date.parse(item.startedAt ?? '');
  const finished = item.finishedAt
    ? Date.parse(item.finishedAt)
    : Number.isFinite(started) && ['running', 'retrying', 'compensating'].includes(item.status)
      ? window.end
      : started;
  const track = h('div', { class: 'bar', 'aria-hidden': 'true' });
  if (Number.isFinite(queued) && Number.isFinite(started) && started > queued) {
    const wait = h('span', { class: 'bar-wait' });
    wait.style.left = `${pct(queued)}%`;
    wait.style.width = `${pct(started) - pct(queued)}%`;
    track.append(wait);
  }
  if (Number.isFinite(started)) {
    const fill = h('span', { class: ['bar-run', `status-${token(item.status)}`] });
    fill.style.left = `${pct(started)}%`;
    fill.style.width = `max(3px, ${pct(finished) - pct(started)}%)`;
    track.append(fill);
  }
  return track;
}

function attemptList(item) {
  if (!item.attemptHistory?.length) return null;
  return h(
    'ol',
    { class: 'attempts' },
    item.attemptHistory.map((a) =>
      h(
        'li',
        { class: `attempt-${token(a.status)}` },
        h('span', { class: 'attempt-no' }, `#${a.attempt}`),
        statusBadge(a.status, 'small'),
        h('span', { class: 'num' }, a.startedAt ? formatDuration(durationBetween(a.startedAt, a.finishedAt)) : '—'),
        a.startedAt ? h('span', { class: 'muted' }, 'started ', timeEl(a.startedAt)) : null,
        a.workerId ? h('span', { class: 'muted' }, 'on ', mono(a.workerId)) : null,
        a.error ? h('span', { class: 'attempt-error' }, errorLine(a.error)) : null,
      ),
    ),
  );
}

/**
 * A forEach/repeat step's progress in one line: `12 succeeded · 1 failed · 3 running of 30 items`,
 * then the counts that are not zero among pending, cancelled and compensated.
 */
export function progressText(f) {
  const unit = f.mode === 'repeat' ? 'iteration' : 'item';
  const main = `${f.succeeded} succeeded · ${f.failed} failed · ${f.running} running of ${f.total} ${unit}${f.total === 1 ? '' : 's'}`;
  const rest = [
    ['pending', f.pending],
    ['cancelled', f.cancelled],
    ['compensated', f.compensated],
  ]
    .filter(([, n]) => n > 0)
    .map(([what, n]) => `${n} ${what}`);
  return rest.length ? `${main} (${rest.join(', ')})` : main;
}

function progressBar(f) {
  const track = h('div', { class: 'progress', 'aria-hidden': 'true' });
  const total = Math.max(f.total, 1);
  for (const [status, n] of [
    ['succeeded', f.succeeded],
    ['compensated', f.compensated],
    ['failed', f.failed],
    ['cancelled', f.cancelled],
    ['running', f.running],
  ]) {
    if (n <= 0) continue;
    const part = h('span', { class: `status-${status}` });
    part.style.width = `${(n / total) * 100}%`;
    track.append(part);
  }
  return track;
}

/** A link to a child run; a child deleted by retention is named, not linked (it would be a 404). */
function childRunLink(id, label = 'child run ', deleted = false) {
  if (deleted) {
    return h(
      'span',
      { class: 'tag muted child-run-deleted', title: `${id} (deleted)` },
      label,
      shortId(id),
      ' (deleted)',
    );
  }
  return h('a', { class: 'tag child-run-link', href: `/runs/${id}`, title: id }, label, shortId(id));
}

/** An item's output or error, on one line and cut short. */
function itemResult(item) {
  if (item.error) return h('span', { class: 'attempt-error' }, errorLine(item.error));
  if (item.output === undefined || item.output === null) return null;
  const text = JSON.stringify(item.output);
  return mono(text.length > 120 ? `${text.slice(0, 119)}…` : text, { class: 'muted', title: text.slice(0, 2000) });
}

function itemTable(items, mode) {
  return h(
    'table',
    { class: 'table items-table' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        h('th', null, mode === 'repeat' ? 'Iteration' : 'Item'),
        h('th', null, 'Status'),
        h('th', null, 'Attempts'),
        h('th', null, 'Time'),
        h('th', null, 'Result'),
      ),
    ),
    h(
      'tbody',
      null,
      items.map((it) =>
        h(
          'tr',
          { dataset: { index: String(it.index), status: it.status } },
          h('td', { class: 'mono num' }, `#${it.index}`),
          h('td', null, statusBadge(it.status, 'small')),
          h('td', { class: 'num' }, String(it.attempts)),
          h('td', { class: 'num' }, it.startedAt ? formatDuration(durationBetween(it.startedAt, it.finishedAt)) : '—'),
          h(
            'td',
            null,
            it.childRunId ? childRunLink(it.childRunId, 'run ', it.childRunDeleted) : null,
            ' ',
            itemResult(it),
          ),
        ),
      ),
    ),
  );
}

/**
 * A forEach/repeat step's progress and its items: the run's first page, then the pages a "more"
 * click loaded (`more`: {items, next, loading}) through the items route.
 */
function fanoutSection(item, more, loadMore, details) {
  const f = item.fanout;
  const items = [...(item.items ?? []), ...(more?.items ?? [])];
  const next = more ? more.next : item.itemsNext;
  const unit = f.mode === 'repeat' ? 'Iterations' : 'Items';
  const button =
    next && item.kind === 'step'
      ? h(
          'button',
          { type: 'button', class: 'button items-more', disabled: more?.loading ?? false },
          more?.loading ? 'Loading…' : `More (${ITEMS_PAGE})`,
        )
      : null;
  button?.addEventListener('click', () => loadMore(item, next));
  return [
    h(
      'div',
      { class: 'fanout' },
      h('span', { class: 'fanout-progress' }, progressText(f)),
      f.concurrency ? h('span', { class: 'muted' }, `at most ${f.concurrency} at a time`) : null,
      progressBar(f),
    ),
    items.length
      ? details(
          'items',
          `${unit} (${items.length} of ${f.total} shown)`,
          h(
            'div',
            { class: 'items' },
            itemTable(items, f.mode),
            more?.error ? h('p', { class: 'form-error' }, more.error) : null,
            button,
          ),
          true,
        )
      : null,
  ];
}

function timelineItem(item, window, logs, open, fanout) {
  const key = item.executionId;
  /** `initially`: open until the user closes it. */
  const details = (what, summary, body, initially = false) => {
    const id = `${key}:${what}`;
    if (initially && !open.has(`${id}:seen`)) open.add(id).add(`${id}:seen`);
    const el = h('details', { open: open.has(id) }, h('summary', null, summary), body);
    el.addEventListener('toggle', () => (el.open ? open.add(id) : open.delete(id)));
    return el;
  };
  const duration = item.startedAt ? formatDuration(durationBetween(item.startedAt, item.finishedAt)) : null;
  const waited = item.queuedAt && item.startedAt ? durationBetween(item.queuedAt, item.startedAt) : null;
  return h(
    'li',
    {
      class: ['tl-item', `tl-${item.kind}`, `status-${token(item.status)}`, item.superseded && 'superseded'],
      dataset: { stepId: item.id, kind: item.kind, status: item.status },
    },
    h(
      'div',
      { class: 'tl-head' },
      statusBadge(item.status),
      h('strong', { class: 'mono tl-step' }, item.id),
      mono(item.function, { class: 'tl-fn' }),
      item.kind === 'compensation' ? h('span', { class: 'tag tag-comp' }, 'compensation') : null,
      item.fanout ? h('span', { class: 'tag' }, item.fanout.mode) : null,
      item.childRunId ? childRunLink(item.childRunId, undefined, item.childRunDeleted) : null,
      item.superseded
        ? h(
            'span',
            { class: 'tag', title: 'A retry ran this step again; this is the earlier execution' },
            'earlier execution',
          )
        : null,
      item.copiedFrom
        ? h(
            'span',
            {
              class: 'tag tag-copied',
              title: 'Kept by the fork: the output of the run it was forked from; not run here',
            },
            'copied',
          )
        : null,
      h('span', { class: 'spacer' }),
      h(
        'span',
        { class: 'tl-meta' },
        // A forEach/repeat step's attempts are its items' own (in the items table).
        item.fanout
          ? null
          : h('span', { title: 'attempts used / allowed' }, `attempt ${item.attempts}/${item.maxAttempts}`),
        duration ? h('span', null, duration) : null,
        waited !== null && waited >= 50
          ? h('span', { class: 'muted', title: 'queued → started' }, `waited ${formatDuration(waited)}`)
          : null,
        item.startedAt
          ? timeEl(item.startedAt)
          : item.queuedAt
            ? h('span', { class: 'muted' }, 'queued ', timeEl(item.queuedAt))
            : null,
      ),
    ),
    bar(item, window),
    item.fanout ? fanoutSection(item, fanout.more.get(item.executionId), fanout.load, details) : null,
    item.error ? h('p', { class: 'tl-error' }, errorLine(item.error)) : null,
    item.attemptHistory?.length > 1 || (item.attemptHistory?.length === 1 && item.attemptHistory[0].error)
      ? details('attempts', `Attempts (${item.attemptHistory.length})`, attemptList(item))
      : null,
    logs?.length ? details('logs', `Logs (${logs.length})`, logTable(logs)) : null,
    item.output !== null && item.output !== undefined && item.status === 'succeeded'
      ? details('output', 'Output', jsonBlock(item.output))
      : null,
  );
}

export function mount(main, { signal }) {
  const runId = location.pathname.split('/')[2] ?? '';
  if (!UUID.test(runId)) {
    main.append(notice('error', 'This is not a run id. ', h('a', { href: '/' }, 'Back to the runs')));
    return;
  }

  const open = new Set(['run:input', 'run:output']);
  let run = null;
  let lastStatus = null;
  let logs = { logs: [], truncated: false };
  /** After retry/cancel: keep polling while the run still shows the status it had, up to a deadline. */
  let settling = null;
  /** forEach/repeat items loaded past a step's first page, by execution id: {items, next, loading, error}. */
  const moreItems = new Map();

  const crumbs = h(
    'nav',
    { class: 'crumbs', 'aria-label': 'Breadcrumb' },
    h('a', { href: '/' }, 'Runs'),
    ' / ',
    mono(shortId(runId)),
  );
  const title = h('div', { class: 'run-title' });
  const actions = h('div', { class: 'actions' });
  const flash = h('div', { class: 'flash' });
  const error = h('div');
  const summary = h('div');
  const why = h('div');
  const output = h('div');
  const timeline = h('section', { class: 'card' });
  const logSection = h('section', { class: 'card' });
  const io = h('div', { class: 'io' });

  main.append(
    crumbs,
    h('div', { class: 'page-head run-head' }, title, h('span', { class: 'spacer' }), actions),
    flash,
    error,
    summary,
    why,
    output,
    timeline,
    logSection,
    io,
  );

  const say = (kind, ...text) => replace(flash, notice(kind, ...text));

  const control = async (button, path, body, done) => {
    button.disabled = true;
    flash.replaceChildren();
    try {
      await api(path, { method: 'POST', body, signal });
      say('info', done);
      settling = { from: run.status, until: Date.now() + 20_000 };
      polling.refresh();
    } catch (err) {
      if (err instanceof AuthRequired) return;
      say('error', err instanceof ApiError ? problemList(err) : err.message);
    } finally {
      button.disabled = false;
    }
  };

  /** Fork a finished run from a step: a new run that keeps the outputs of the steps before it. */
  const forkForm = () => {
    const stepIds = [...new Set(run.steps.map((s) => s.id))];
    const step = h(
      'select',
      { id: 'fork-step', 'aria-label': 'Step to run again from' },
      stepIds.map((id) => h('option', { value: id }, id)),
    );
    const problem = h('p', { class: 'form-error', hidden: true });
    const submit = h('button', { type: 'submit', class: 'button', id: 'fork-submit' }, 'Fork');
    const form = h(
      'form',
      { class: 'retry-form', id: 'fork-form' },
      h(
        'p',
        { class: 'muted' },
        'A new run of this version: the steps before the chosen one keep their outputs (not run again); it and the steps after it run again.',
      ),
      h('label', { class: 'field' }, h('span', null, 'From step'), step),
      problem,
      submit,
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      submit.disabled = true;
      problem.hidden = true;
      try {
        const fork = await api(`/v1/runs/${run.id}/fork`, { method: 'POST', body: { fromStep: step.value }, signal });
        location.assign(`/runs/${fork.runId}`);
      } catch (err) {
        if (err instanceof AuthRequired) return;
        problem.hidden = false;
        problem.textContent = err.message;
      } finally {
        submit.disabled = false;
      }
    });
    return h('details', { class: 'popover' }, h('summary', { class: 'button', id: 'fork' }, 'Fork from step…'), form);
  };

  const renderActions = () => {
    actions.replaceChildren();
    if (RETRYABLE.includes(run.status)) {
      const retry = h('button', { type: 'button', class: 'button primary', id: 'retry' }, 'Retry');
      retry.addEventListener('click', () =>
        control(retry, `/v1/runs/${run.id}/retry`, {}, 'Retry requested: the run resumes at its failed step.'),
      );
      actions.append(retry);
      const failedSteps = [
        ...new Set(run.steps.filter((s) => ['failed', 'cancelled'].includes(s.status)).map((s) => s.id)),
      ];
      const input = h('textarea', {
        rows: 5,
        class: 'mono',
        spellcheck: 'false',
        placeholder: '{ "customerId": "cust-02" }',
        'aria-label': 'New input for the failed step',
      });
      const step = h(
        'select',
        { 'aria-label': 'Failed step' },
        failedSteps.map((id) => h('option', { value: id }, id)),
      );
      const problem = h('p', { class: 'form-error', hidden: true });
      const form = h(
        'form',
        { class: 'retry-form' },
        h(
          'p',
          { class: 'muted' },
          'Replaces the failed step’s input for this retry (steps that succeeded keep their outputs).',
        ),
        failedSteps.length > 1 ? h('label', { class: 'field' }, h('span', null, 'Step'), step) : null,
        h('label', { class: 'field' }, h('span', null, 'Input (JSON)'), input),
        problem,
        h('button', { type: 'submit', class: 'button' }, 'Retry with this input'),
      );
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        let value;
        try {
          value = JSON.parse(input.value);
        } catch (err) {
          problem.hidden = false;
          problem.textContent = `Not valid JSON: ${err.message}`;
          return;
        }
        problem.hidden = true;
        const body = { input: value, ...(failedSteps.length > 1 ? { stepId: step.value } : {}) };
        control(form.querySelector('button'), `/v1/runs/${run.id}/retry`, body, 'Retry requested with a new input.');
      });
      actions.append(
        h('details', { class: 'popover' }, h('summary', { class: 'button' }, 'Retry with new input…'), form),
      );
    }
    if (!ACTIVE.includes(run.status)) actions.append(forkForm());
    if (ACTIVE.includes(run.status)) {
      const compensate = h('input', { type: 'checkbox', id: 'cancel-compensate' });
      const cancel = h('button', { type: 'button', class: 'button danger', id: 'cancel' }, 'Cancel run');
      cancel.addEventListener('click', () => {
        const undo = compensate.checked;
        if (!confirm(undo ? 'Cancel this run and undo its completed steps?' : 'Cancel this run?')) return;
        control(cancel, `/v1/runs/${run.id}/cancel`, { compensate: undo }, 'Cancellation requested.');
      });
      actions.append(h('label', { class: 'check' }, compensate, ' undo completed steps'), cancel);
    }
  };

  const render = () => {
    replace(
      title,
      h('h1', null, run.workflow, h('span', { class: 'muted version' }, ` v${run.workflowVersion}`)),
      statusBadge(run.status, 'large'),
      ACTIVE.includes(run.status) ? h('span', { class: 'live' }, h('span', { class: 'dot' }), ' Live') : null,
    );
    replace(
      crumbs,
      h('a', { href: '/' }, 'Runs'),
      ' / ',
      h('a', { href: `/?workflow=${encodeURIComponent(run.workflow)}` }, run.workflow),
      ' / ',
      mono(shortId(run.id), { title: run.id }),
    );
    if (run.status !== lastStatus) {
      renderActions();
      lastStatus = run.status;
    }

    const trigger = run.trigger && typeof run.trigger === 'object' ? run.trigger : {};
    const triggerText =
      trigger.type === 'schedule'
        ? `schedule ${trigger.scheduleId ?? ''}`
        : trigger.type === 'event'
          ? `event ${trigger.event ?? ''}`
          : trigger.type === 'parent'
            ? `parent run, step ${trigger.stepId ?? ''}`
            : trigger.type === 'fork'
              ? `fork from step ${trigger.fromStep ?? ''}`
              : `${trigger.type ?? '—'}${trigger.route ? ` ${trigger.route}` : ''}`;
    const field = (label, value) => h('div', { class: 'field-view' }, h('dt', null, label), h('dd', null, value));
    replace(
      summary,
      h(
        'dl',
        { class: 'card summary' },
        field('Run id', mono(run.id, { class: 'selectable' })),
        field('Created', timeEl(run.createdAt)),
        field('Started', timeEl(run.startedAt)),
        field('Finished', timeEl(run.finishedAt)),
        field('Duration', run.startedAt ? formatDuration(durationBetween(run.startedAt, run.finishedAt)) : '—'),
        field('Trigger', triggerText),
        run.parentRunId
          ? field('Parent run', [
              run.parentRunDeleted
                ? h('span', { class: 'muted', title: run.parentRunId }, mono(shortId(run.parentRunId)), ' (deleted)')
                : h(
                    'a',
                    { id: 'parent-run-link', href: `/runs/${run.parentRunId}`, title: run.parentRunId },
                    mono(shortId(run.parentRunId)),
                  ),
              run.parentStepId ? [' step ', mono(run.parentStepId)] : null,
              run.depth > 1 ? h('span', { class: 'muted' }, ` (depth ${run.depth})`) : null,
            ])
          : null,
        run.forkedFrom
          ? field(
              'Forked from',
              h(
                'a',
                { id: 'forked-from-link', href: `/runs/${run.forkedFrom}`, title: run.forkedFrom },
                mono(shortId(run.forkedFrom)),
              ),
            )
          : null,
        run.idempotencyKey ? field('Idempotency key', mono(run.idempotencyKey)) : null,
        Object.keys(run.tags ?? {}).length ? field('Tags', h('span', { id: 'run-tags' }, tagChips(run.tags))) : null,
      ),
    );

    replace(why, failureSummary(run) ?? '');
    replace(output, documentLink(run) ?? '');

    const items = timelineOf(run);
    const times = items
      .flatMap((i) => [i.queuedAt, i.startedAt, i.finishedAt])
      .filter(Boolean)
      .map(Date.parse);
    const start = Date.parse(run.startedAt ?? run.createdAt);
    const end = Math.max(run.finishedAt ? Date.parse(run.finishedAt) : Date.now(), ...times, start + 1);
    const window = { start: Math.min(start, ...times), end };
    const { byExecution, runLevel } = logsByExecution(items, logs.logs);
    replace(
      timeline,
      h(
        'div',
        { class: 'section-head' },
        h('h2', null, 'Timeline'),
        h(
          'span',
          { class: 'muted' },
          `${run.steps.length} step execution${run.steps.length === 1 ? '' : 's'}`,
          run.compensations.length
            ? `, ${run.compensations.length} compensation${run.compensations.length === 1 ? '' : 's'}`
            : '',
        ),
        h('span', { class: 'spacer' }),
        h('span', { class: 'muted' }, formatDuration(window.end - window.start), ' shown'),
      ),
      items.length
        ? h(
            'ol',
            { class: 'timeline' },
            items.map((item) =>
              timelineItem(item, window, byExecution.get(item.executionId), open, { more: moreItems, load: loadMore }),
            ),
          )
        : h('p', { class: 'empty' }, run.status === 'pending' ? 'Waiting to start…' : 'No step has been queued.'),
    );

    replace(
      logSection,
      h(
        'div',
        { class: 'section-head' },
        h('h2', null, 'Logs'),
        h(
          'span',
          { class: 'muted' },
          `${logs.logs.length} line${logs.logs.length === 1 ? '' : 's'}${logs.truncated ? ' (first pages only)' : ''}`,
        ),
      ),
      logs.logs.length
        ? logTable(logs.logs, { showStep: true })
        : h('p', { class: 'empty' }, 'Nothing logged yet. Handlers log with ctx.log.'),
      runLevel.length && runLevel.length !== logs.logs.length
        ? h('p', { class: 'muted' }, `${runLevel.length} line(s) belong to no step.`)
        : null,
    );

    const block = (key, label, value) => {
      const el = h(
        'details',
        { class: 'card', open: open.has(`run:${key}`) },
        h('summary', null, label),
        jsonBlock(value),
      );
      el.addEventListener('toggle', () => (el.open ? open.add(`run:${key}`) : open.delete(`run:${key}`)));
      return el;
    };
    replace(
      io,
      block('input', 'Input', run.input),
      run.output !== null && run.output !== undefined ? block('output', 'Output', run.output) : '',
    );
    document.title = `${run.workflow} ${shortId(run.id)} · ${run.status} · Baton`;
  };

  const itemsPage = (stepId, cursor, limit) =>
    api(`/v1/runs/${runId}/steps/${encodeURIComponent(stepId)}/items?${new URLSearchParams({ cursor, limit })}`, {
      signal,
    });

  /** The "more" control: the next page of a step's items, after the ones shown. */
  const loadMore = async (step, cursor) => {
    const more = moreItems.get(step.executionId) ?? { items: [], next: cursor };
    moreItems.set(step.executionId, { ...more, loading: true, error: null });
    render();
    try {
      const page = await itemsPage(step.id, cursor, String(ITEMS_PAGE));
      moreItems.set(step.executionId, { items: [...more.items, ...page.items], next: page.next, loading: false });
    } catch (err) {
      if (err instanceof AuthRequired) return;
      moreItems.set(step.executionId, { ...more, loading: false, error: describeApiError(err) });
    }
    render();
  };

  /** While the run is live, the items loaded past a step's first page are read again with it. */
  const reloadMore = async (fresh) => {
    for (const [executionId, more] of moreItems) {
      const step = fresh.steps.find((s) => s.executionId === executionId);
      if (!step?.itemsNext || !more.items.length || more.loading) continue;
      const page = await itemsPage(step.id, step.itemsNext, String(Math.min(500, more.items.length)));
      moreItems.set(executionId, { items: page.items, next: page.next, loading: false });
    }
  };

  const refresh = async () => {
    try {
      const [fresh, freshLogs] = await Promise.all([api(`/v1/runs/${runId}`, { signal }), fetchLogs(runId, signal)]);
      await reloadMore(fresh);
      run = fresh;
      logs = freshLogs;
      error.replaceChildren();
      render();
      if (settling && (run.status !== settling.from || Date.now() > settling.until)) {
        settling = null;
        flash.replaceChildren();
      }
      return ACTIVE.includes(run.status) || settling !== null;
    } catch (err) {
      if (err instanceof AuthRequired) throw err;
      if (err instanceof ApiError && err.status === 404) {
        replace(error, notice('error', `No run ${runId}. `, h('a', { href: '/' }, 'Back to the runs')));
        return false;
      }
      replace(error, notice('error', describeApiError(err, { polling: true })));
      throw err;
    }
  };

  const polling = poller(refresh, { interval: 2000, signal });
}
