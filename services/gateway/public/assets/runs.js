import { api, AuthRequired, describeApiError } from './api.js';
import {
  durationBetween,
  errorLine,
  formatDuration,
  h,
  mono,
  notice,
  replace,
  shortId,
  statusBadge,
  tagChips,
  timeEl,
} from './dom.js';
import { poller } from './live.js';
import { operationsPanel } from './operations.js';

/** The runs list: newest first, filtered by workflow and status, refreshed every 2 s. */

const PAGE_SIZE = 50;
const STATUSES = [
  'pending',
  'running',
  'succeeded',
  'failed',
  'compensating',
  'compensated',
  'compensation_failed',
  'cancelled',
];
const FAILED = 'failed,compensated,compensation_failed';

function triggerText(trigger) {
  if (!trigger || typeof trigger !== 'object') return '—';
  // A child run (a `workflow:` step): its parent run, one click away.
  if (trigger.type === 'parent' && trigger.runId) {
    return h(
      'a',
      {
        href: `/runs/${trigger.runId}`,
        class: 'child-of',
        title: `step ${trigger.stepId ?? ''} of run ${trigger.runId}`,
      },
      `child of ${shortId(trigger.runId)}`,
    );
  }
  if (trigger.type === 'schedule') return `schedule ${trigger.scheduleId ?? ''}`.trim();
  if (trigger.type === 'event') return `event ${trigger.event ?? ''}`.trim();
  return String(trigger.type ?? '—');
}

function failureCell(run) {
  if (!run.error) return h('td', { class: 'muted' }, '');
  const e = run.error;
  return h(
    'td',
    { class: 'failure', title: errorLine(e) },
    e.stepId ? [mono(e.stepId), ' '] : null,
    h('span', { class: 'error-code' }, e.code ?? 'ERROR'),
    e.message ? h('span', { class: 'muted' }, ` ${e.message}`) : null,
  );
}

function runRow(run, onpick) {
  const href = `/runs/${run.id}`;
  return h(
    'tr',
    {
      class: 'clickable',
      dataset: { runId: run.id, status: run.status },
      // The whole row opens the run; links and selections inside it keep their own behaviour.
      onclick: (event) => {
        if (event.target.closest('a') || getSelection()?.toString()) return;
        location.assign(href);
      },
    },
    h('td', null, statusBadge(run.status)),
    h('td', null, h('a', { href, class: 'mono', title: run.id }, shortId(run.id))),
    h(
      'td',
      null,
      h('a', { href: `/?workflow=${encodeURIComponent(run.workflow)}` }, run.workflow),
      h('span', { class: 'muted' }, ` v${run.workflowVersion}`),
      tagChips(run.tags, { onpick }),
    ),
    h('td', { class: 'muted' }, triggerText(run.trigger)),
    h('td', null, timeEl(run.createdAt)),
    h('td', { class: 'num' }, run.startedAt ? formatDuration(durationBetween(run.startedAt, run.finishedAt)) : '—'),
    failureCell(run),
  );
}

export function mount(main, { signal }) {
  const params = new URLSearchParams(location.search);
  const state = {
    workflow: params.get('workflow') ?? '',
    status: params.get('status') ?? '',
    topLevel: params.get('topLevel') === 'true',
    /** `key:value` each; a run must carry them all. */
    tags: params.getAll('tag'),
    runs: [],
    nextCursor: null,
  };

  const workflowSelect = h(
    'select',
    { name: 'workflow', id: 'filter-workflow' },
    h('option', { value: '' }, 'All workflows'),
    state.workflow ? h('option', { value: state.workflow, selected: true }, state.workflow) : null,
  );
  const statusSelect = h(
    'select',
    { name: 'status', id: 'filter-status' },
    h('option', { value: '' }, 'Any status'),
    h('option', { value: FAILED }, 'Failed (any)'),
    STATUSES.map((s) => h('option', { value: s }, s.replace('_', ' '))),
  );
  const topLevelBox = h('input', { type: 'checkbox', id: 'filter-top-level', checked: state.topLevel });
  statusSelect.value = state.status;
  if (statusSelect.value !== state.status) {
    statusSelect.append(h('option', { value: state.status }, state.status));
    statusSelect.value = state.status;
  }

  // The tag filters in force, as chips: a click removes one.
  const tagFilters = h('span', { id: 'filter-tags' });
  const renderTagFilters = () =>
    replace(
      tagFilters,
      state.tags.length ? h('span', { class: 'muted' }, 'Tags ') : null,
      state.tags.map((tag) => {
        const colon = tag.indexOf(':');
        return h(
          'a',
          {
            class: 'tag-chip active',
            href: '/',
            title: `Stop filtering by ${tag}`,
            dataset: { tag },
            onclick: (event) => {
              event.preventDefault();
              state.tags = state.tags.filter((t) => t !== tag);
              applyFilters();
            },
          },
          h('span', { class: 'tag-key' }, tag.slice(0, colon)),
          tag.slice(colon + 1),
        );
      }),
    );
  renderTagFilters();

  const updated = h('span', { class: 'muted' }, 'loading…');
  const live = h(
    'span',
    { class: 'live', title: 'The list refreshes every 2 seconds' },
    h('span', { class: 'dot' }),
    ' Live · ',
    updated,
  );
  const error = h('div');
  const tbody = h('tbody');
  const empty = h('p', { class: 'empty', hidden: true });
  const more = h('button', { type: 'button', class: 'button', hidden: true }, 'Load older runs');

  main.append(
    h(
      'div',
      { class: 'page-head' },
      h('h1', null, 'Runs'),
      h(
        'form',
        { class: 'filters', onsubmit: (e) => e.preventDefault() },
        h('label', { for: 'filter-workflow' }, 'Workflow'),
        workflowSelect,
        h('label', { for: 'filter-status' }, 'Status'),
        statusSelect,
        topLevelBox,
        h('label', { for: 'filter-top-level', title: 'Hide the child runs of workflow: steps' }, 'Top-level only'),
        tagFilters,
      ),
      h('span', { class: 'spacer' }),
      live,
    ),
    error,
    // Bulk retries and cancels with their progress (hidden while there are none).
    operationsPanel({ signal }),
    h(
      'div',
      { class: 'card table-card' },
      h(
        'table',
        { class: 'table runs-table' },
        h(
          'thead',
          null,
          h(
            'tr',
            null,
            ['Status', 'Run', 'Workflow', 'Trigger', 'Created', 'Duration', 'Why it failed'].map((t) =>
              h('th', { scope: 'col' }, t),
            ),
          ),
        ),
        tbody,
      ),
      empty,
    ),
    h('div', { class: 'more' }, more),
  );

  const query = (cursor) => {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (state.workflow) q.set('workflow', state.workflow);
    if (state.status) q.set('status', state.status);
    if (state.topLevel) q.set('topLevel', 'true');
    for (const tag of state.tags) q.append('tag', tag);
    if (cursor) q.set('cursor', cursor);
    return `/v1/runs?${q}`;
  };

  const render = () => {
    replace(tbody, ...state.runs.map((run) => runRow(run, pickTag)));
    empty.hidden = state.runs.length > 0;
    replace(
      empty,
      state.workflow || state.status || state.topLevel || state.tags.length
        ? 'No runs match these filters.'
        : h('span', null, 'No runs yet. Start one from ', h('a', { href: '/workflows' }, 'Workflows'), '.'),
    );
    more.hidden = !state.nextCursor;
  };

  const showError = (err) => {
    if (err instanceof AuthRequired) return;
    replace(error, notice('error', describeApiError(err, { polling: true })));
  };

  // The newest page replaces the rows it covers; older rows loaded with "Load older runs" stay.
  let generation = 0;
  const refresh = async () => {
    const mine = generation;
    try {
      const page = await api(query(), { signal });
      if (mine !== generation) return;
      const fresh = new Set(page.runs.map((r) => r.id));
      const oldest = page.runs.at(-1);
      const older = oldest ? state.runs.filter((r) => !fresh.has(r.id) && r.createdAt < oldest.createdAt) : [];
      const keepOlder = page.nextCursor && older.length > 0;
      state.runs = keepOlder ? [...page.runs, ...older] : page.runs;
      if (!keepOlder) state.nextCursor = page.nextCursor;
      error.replaceChildren();
      updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
      render();
    } catch (err) {
      showError(err);
      throw err;
    }
  };

  const loadMore = async () => {
    more.disabled = true;
    try {
      const page = await api(query(state.nextCursor), { signal });
      const seen = new Set(state.runs.map((r) => r.id));
      state.runs.push(...page.runs.filter((r) => !seen.has(r.id)));
      state.nextCursor = page.nextCursor;
      render();
    } catch (err) {
      showError(err);
    } finally {
      more.disabled = false;
    }
  };
  more.addEventListener('click', loadMore);

  const polling = poller(refresh, { interval: 2000, signal });

  const applyFilters = () => {
    state.workflow = workflowSelect.value;
    state.status = statusSelect.value;
    state.topLevel = topLevelBox.checked;
    state.runs = [];
    state.nextCursor = null;
    generation += 1;
    const q = new URLSearchParams();
    if (state.workflow) q.set('workflow', state.workflow);
    if (state.status) q.set('status', state.status);
    if (state.topLevel) q.set('topLevel', 'true');
    for (const tag of state.tags) q.append('tag', tag);
    renderTagFilters();
    history.replaceState(null, '', q.size ? `/?${q}` : '/');
    tbody.replaceChildren();
    polling.refresh();
  };
  // A tag chip of a run adds its tag to the filters (all must match).
  function pickTag(tag) {
    if (!state.tags.includes(tag)) state.tags = [...state.tags, tag];
    applyFilters();
  }
  workflowSelect.addEventListener('change', applyFilters);
  statusSelect.addEventListener('change', applyFilters);
  topLevelBox.addEventListener('change', applyFilters);

  // The workflow filter lists every stored workflow.
  api('/v1/workflows', { signal })
    .then(({ workflows }) => {
      for (const w of workflows) {
        if (w.name !== state.workflow) workflowSelect.append(h('option', { value: w.name }, w.name));
      }
    })
    .catch(() => undefined);
}
