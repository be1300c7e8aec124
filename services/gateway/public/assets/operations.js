import { api, ApiError, AuthRequired, describeApiError } from './api.js';
import { h, mono, notice, replace, shortId, statusBadge, timeEl } from './dom.js';
import { poller } from './live.js';

/**
 * Bulk operations (`POST /v1/runs/bulk/retry|cancel`), as a panel of the runs page: the newest ones
 * with their progress (done, skipped, failed of the matched runs), their pace, the first skipped or
 * failed runs with why, and a Cancel button while one runs. Hidden while there are none; refreshed
 * every 2 s.
 */

const SHOWN = 10;

function progress(op) {
  const track = h('div', {
    class: 'progress op-progress',
    role: 'progressbar',
    'aria-valuemin': '0',
    'aria-valuemax': String(op.matched),
    'aria-valuenow': String(op.matched - op.remaining),
    title: `${op.done} done, ${op.skipped} skipped, ${op.failed} failed, ${op.remaining} remaining`,
  });
  const total = Math.max(op.matched, 1);
  for (const [status, n] of [
    ['succeeded', op.done],
    ['cancelled', op.skipped],
    ['failed', op.failed],
  ]) {
    if (n <= 0) continue;
    // Set through the CSSOM: the CSP allows no style attributes.
    const part = h('span', { class: `status-${status}` });
    part.style.width = `${(n / total) * 100}%`;
    track.append(part);
  }
  return track;
}

function problems(op) {
  if (!op.problems?.length) return null;
  return h(
    'details',
    { class: 'op-problems' },
    h('summary', null, `Skipped or failed (${op.problems.length})`),
    h(
      'ul',
      null,
      op.problems.map((p) =>
        h(
          'li',
          null,
          h('a', { href: `/runs/${p.runId}`, class: 'mono', title: p.runId }, shortId(p.runId)),
          ` ${p.outcome}: ${p.reason}`,
        ),
      ),
    ),
  );
}

function operationRow(op, cancel) {
  const handled = op.matched - op.remaining;
  return h(
    'li',
    { class: 'op', dataset: { operationId: op.id, status: op.status } },
    h(
      'div',
      { class: 'op-head' },
      statusBadge(op.status),
      h('strong', null, `Bulk ${op.kind}`),
      mono(shortId(op.id), { title: op.id }),
      h(
        'span',
        { class: 'op-counts' },
        `${handled}/${op.matched} handled · ${op.done} ${op.kind === 'retry' ? 'retried' : 'cancelled'}`,
        op.skipped ? ` · ${op.skipped} skipped` : '',
        op.failed ? ` · ${op.failed} failed` : '',
      ),
      h('span', { class: 'muted' }, ` · ${op.ratePerSec}/s · `, timeEl(op.createdAt)),
      h('span', { class: 'spacer' }),
      op.status === 'running'
        ? h(
            'button',
            { type: 'button', class: 'button danger op-cancel', onclick: (e) => cancel(op, e.currentTarget) },
            'Stop',
          )
        : null,
    ),
    progress(op),
    op.error ? h('p', { class: 'tl-error' }, op.error) : null,
    problems(op),
  );
}

/** The panel element; it polls until `signal` aborts. */
export function operationsPanel({ signal }) {
  const list = h('ol', { class: 'op-list' });
  const error = h('div');
  const panel = h(
    'section',
    { class: 'card operations', id: 'operations', hidden: true },
    h(
      'div',
      { class: 'section-head' },
      h('h2', null, 'Bulk operations'),
      h('span', { class: 'spacer' }),
      h('span', { class: 'muted' }, 'baton runs bulk-retry / bulk-cancel'),
    ),
    error,
    list,
  );
  /** The full operation (with its problems) of those that have some, by id. */
  const details = new Map();

  const cancel = async (op, button) => {
    if (!confirm(`Stop this bulk ${op.kind}? Runs it has not reached are left as they are.`)) return;
    button.disabled = true;
    try {
      await api(`/v1/operations/${op.id}/cancel`, { method: 'POST', signal });
      polling.refresh();
    } catch (err) {
      if (err instanceof AuthRequired) return;
      replace(error, notice('error', err instanceof ApiError ? err.message : describeApiError(err)));
      button.disabled = false;
    }
  };

  const refresh = async () => {
    try {
      const { operations } = await api(`/v1/operations?limit=${SHOWN}`, { signal });
      // Skipped or failed runs come with the single operation: fetched for those that have some.
      await Promise.all(
        operations
          .filter((op) => op.skipped + op.failed > 0 && details.get(op.id)?.updatedAt !== op.updatedAt)
          .map(async (op) => details.set(op.id, await api(`/v1/operations/${op.id}`, { signal }))),
      );
      panel.hidden = operations.length === 0;
      error.replaceChildren();
      replace(
        list,
        operations.map((op) => operationRow({ ...op, problems: details.get(op.id)?.problems }, cancel)),
      );
    } catch (err) {
      if (!(err instanceof AuthRequired)) replace(error, notice('error', describeApiError(err, { polling: true })));
      throw err;
    }
  };
  const polling = poller(refresh, { interval: 2000, signal });
  return panel;
}
