import { api, ApiError, AuthRequired, describeApiError } from './api.js';
import { h, jsonBlock, jsonText, mono, notice, problemList, replace, timeEl } from './dom.js';

/**
 * Workflow definitions: the latest version of each, one selected with its versions, steps, triggers
 * and schedules, its pause state with a button to pause or resume it, and a form that starts a run
 * with a JSON input.
 */

/** A starting input from the workflow's JSON Schema: its required properties with empty values. */
function skeleton(schema) {
  if (!schema || typeof schema !== 'object' || schema.type !== 'object') return {};
  const out = {};
  for (const name of Array.isArray(schema.required) ? schema.required : []) {
    const prop = schema.properties?.[name] ?? {};
    const type = Array.isArray(prop.type) ? prop.type[0] : prop.type;
    out[name] =
      prop.default ??
      (Array.isArray(prop.enum) ? prop.enum[0] : undefined) ??
      { string: '', number: 0, integer: 0, boolean: false, array: [], object: skeleton(prop) }[type] ??
      null;
  }
  return out;
}

function triggerLine(trigger) {
  if (trigger === 'http' || trigger?.http !== undefined)
    return h('li', null, 'HTTP (', mono('POST /v1/workflows/:name/runs'), ')');
  if (trigger?.schedule) {
    const { cron, timezone, overlap, catchUp } = trigger.schedule;
    const policies = [overlap && `overlap ${overlap}`, catchUp && `catch-up ${catchUp}`].filter(Boolean).join(', ');
    return h('li', null, 'Schedule ', mono(cron), ` (${timezone ?? 'UTC'})`, policies ? ` — ${policies}` : '');
  }
  if (trigger?.event) {
    return h(
      'li',
      null,
      'Event ',
      mono(trigger.event.name),
      trigger.event.filter ? [' when ', mono(trigger.event.filter)] : null,
    );
  }
  return h('li', null, mono(jsonText(trigger)));
}

function stepsTable(definition) {
  return h(
    'table',
    { class: 'table steps-table' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        ['Step', 'Function', 'Needs', 'Retry', 'Compensation'].map((t) => h('th', { scope: 'col' }, t)),
      ),
    ),
    h(
      'tbody',
      null,
      definition.steps.map((step, i) =>
        h(
          'tr',
          null,
          h('td', null, mono(step.id)),
          h('td', null, step.sleep ? 'sleep' : step.waitForEvent ? 'waitForEvent' : mono(step.function ?? '—')),
          h(
            'td',
            { class: 'muted' },
            step.needs === undefined
              ? i === 0
                ? '—'
                : h('span', { title: 'the previous step' }, definition.steps[i - 1].id)
              : step.needs.length
                ? step.needs.join(', ')
                : '—',
          ),
          h('td', { class: 'muted' }, step.retry?.attempts ? `${step.retry.attempts} attempts` : 'default'),
          h(
            'td',
            null,
            step.compensate?.function ? mono(step.compensate.function) : h('span', { class: 'muted' }, '—'),
          ),
        ),
      ),
    ),
  );
}

/** Pause or resume: new runs of a paused workflow are accepted and stay pending until resumed. */
function pauseButton(wf, signal, onChange) {
  const button = h(
    'button',
    {
      type: 'button',
      id: 'wf-pause',
      class: 'button',
      title: wf.paused
        ? 'admit its pending runs, in order (priority, then arrival)'
        : 'new runs are accepted and stay pending until resumed; running runs go on',
    },
    wf.paused ? 'Resume' : 'Pause',
  );
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      const state = await api(`/v1/workflows/${encodeURIComponent(wf.name)}/${wf.paused ? 'resume' : 'pause'}`, {
        method: 'POST',
        signal,
      });
      onChange(state);
    } catch (err) {
      if (!(err instanceof AuthRequired)) button.replaceWith(notice('error', describeApiError(err)));
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function pausedTag(paused, pausedAt) {
  return paused
    ? h('span', { class: 'tag paused', title: pausedAt ? `paused since ${pausedAt}` : '' }, 'paused')
    : null;
}

function startForm(detail, signal) {
  const input = h('textarea', {
    id: 'run-input',
    rows: 8,
    class: 'mono',
    spellcheck: 'false',
    value: JSON.stringify(skeleton(detail.definition.input), null, 2),
  });
  const key = h('input', { id: 'run-key', type: 'text', autocomplete: 'off', placeholder: 'optional' });
  const problem = h('div', { class: 'form-problem', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'button primary' }, 'Start run');
  const form = h(
    'form',
    { class: 'start-form', id: 'start-form' },
    h('label', { class: 'field' }, h('span', null, 'Input (JSON)'), input),
    h('label', { class: 'field' }, h('span', null, 'Idempotency key'), key),
    problem,
    h(
      'div',
      { class: 'form-actions' },
      submit,
      h('span', { class: 'muted' }, `starts version ${detail.versions[0]?.version ?? detail.version} (the latest)`),
    ),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    problem.replaceChildren();
    let value;
    try {
      value = JSON.parse(input.value || '{}');
    } catch (err) {
      replace(problem, notice('error', `The input is not valid JSON: ${err.message}`));
      return;
    }
    submit.disabled = true;
    try {
      const body = { input: value, ...(key.value.trim() ? { idempotencyKey: key.value.trim() } : {}) };
      const started = await api(`/v1/workflows/${encodeURIComponent(detail.name)}/runs`, {
        method: 'POST',
        body,
        signal,
      });
      location.assign(`/runs/${started.runId}`);
    } catch (err) {
      if (!(err instanceof AuthRequired))
        replace(problem, notice('error', err instanceof ApiError ? problemList(err) : err.message));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

export function mount(main, { signal }) {
  const params = new URLSearchParams(location.search);
  const list = h('ul', { class: 'wf-list' });
  const detail = h('div', { class: 'wf-detail' });
  main.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Workflows')),
    h('div', { class: 'wf-layout' }, h('nav', { class: 'card wf-nav', 'aria-label': 'Workflows' }, list), detail),
  );

  const showError = (where, err) => {
    if (err instanceof AuthRequired) return;
    replace(where, notice('error', describeApiError(err)));
  };

  const showDetail = async (name, version) => {
    for (const item of list.querySelectorAll('[data-name]'))
      item.classList.toggle('selected', item.dataset.name === name);
    replace(detail, h('p', { class: 'muted' }, 'Loading…'));
    try {
      const q = version ? `?version=${encodeURIComponent(version)}` : '';
      const [wf, schedules] = await Promise.all([
        api(`/v1/workflows/${encodeURIComponent(name)}${q}`, { signal }),
        api('/v1/schedules', { signal }).catch((err) => {
          if (err instanceof AuthRequired) throw err;
          return { schedules: [] };
        }),
      ]);
      const latest = wf.versions[0]?.version ?? wf.version;
      const def = wf.definition;
      const mine = schedules.schedules.filter((s) => s.workflow === wf.name);
      replace(
        detail,
        h(
          'section',
          { class: 'card' },
          h(
            'div',
            { class: 'section-head' },
            h('h2', null, wf.name, h('span', { class: 'muted version' }, ` v${wf.version}`)),
            wf.version !== latest ? h('span', { class: 'tag' }, `older version; latest is v${latest}`) : null,
            h('span', { id: 'wf-paused' }, pausedTag(wf.paused, wf.pausedAt)),
            h('span', { class: 'spacer' }),
            pauseButton(wf, signal, (state) => {
              const item = [...list.querySelectorAll('[data-name]')].find((li) => li.dataset.name === wf.name);
              const where = item?.querySelector('.wf-state');
              if (where) replace(where, pausedTag(state.paused, state.pausedAt));
              showDetail(name, version);
            }),
            h('a', { href: `/?workflow=${encodeURIComponent(wf.name)}` }, 'Runs of this workflow →'),
          ),
          def.description ? h('p', null, def.description) : null,
          h(
            'div',
            { class: 'versions' },
            h('span', { class: 'muted' }, 'Versions: '),
            wf.versions.map((v) =>
              h(
                'a',
                {
                  href: `/workflows?name=${encodeURIComponent(wf.name)}${v.version === latest ? '' : `&version=${v.version}`}`,
                  class: ['tag', v.version === wf.version && 'selected'],
                  title: v.createdAt,
                  dataset: { version: String(v.version) },
                },
                `v${v.version}`,
              ),
            ),
            h('span', { class: 'muted' }, ' · saved ', timeEl(wf.createdAt)),
          ),
          stepsTable(def),
          h(
            'div',
            { class: 'wf-facts' },
            h(
              'div',
              null,
              h('h3', null, 'Triggers'),
              h('ul', { class: 'plain' }, (def.triggers?.length ? def.triggers : ['http']).map(triggerLine)),
            ),
            mine.length
              ? h(
                  'div',
                  null,
                  h('h3', null, 'Schedules'),
                  h(
                    'ul',
                    { class: 'plain' },
                    mine.map((s) =>
                      h(
                        'li',
                        null,
                        mono(s.id),
                        ' ',
                        s.paused ? h('span', { class: 'tag' }, 'paused') : ['next ', timeEl(s.nextFireAt)],
                      ),
                    ),
                  ),
                )
              : null,
            h(
              'div',
              null,
              h('h3', null, 'Policies'),
              h(
                'ul',
                { class: 'plain' },
                h('li', null, 'On step failure: ', mono(def.onStepFailure ?? 'failFast')),
                def.timeoutMs ? h('li', null, 'Timeout: ', mono(`${def.timeoutMs} ms`)) : null,
                def.concurrency
                  ? h('li', null, 'Concurrency: ', mono(jsonText(def.concurrency).replace(/\s+/g, ' ')))
                  : null,
                def.rateLimit
                  ? h('li', null, 'Rate limit: ', mono(jsonText(def.rateLimit).replace(/\s+/g, ' ')))
                  : null,
                def.priority !== undefined ? h('li', null, 'Priority: ', mono(String(def.priority))) : null,
              ),
            ),
          ),
          def.input ? h('details', null, h('summary', null, 'Input schema'), jsonBlock(def.input)) : null,
          h('details', null, h('summary', null, 'Full definition'), jsonBlock(def)),
        ),
        h('section', { class: 'card' }, h('h2', null, 'Start a run'), startForm(wf, signal)),
      );
    } catch (err) {
      showError(detail, err);
    }
  };

  api('/v1/workflows', { signal })
    .then(({ workflows }) => {
      if (!workflows.length) {
        replace(list, h('li', { class: 'empty' }, 'No workflow stored yet.'));
        replace(
          detail,
          notice(
            'info',
            'Store one with ',
            mono('PUT /v1/workflows/:name'),
            ' (JSON or YAML), or put it in ',
            mono('workflows/'),
            '.',
          ),
        );
        return;
      }
      replace(
        list,
        ...workflows.map((w) =>
          h(
            'li',
            { dataset: { name: w.name } },
            h(
              'a',
              { href: `/workflows?name=${encodeURIComponent(w.name)}` },
              h('span', { class: 'wf-name' }, w.name),
              h('span', { class: 'muted' }, ` v${w.version}`),
              h('span', { class: 'wf-state' }, pausedTag(w.paused, w.pausedAt)),
              h(
                'span',
                { class: 'wf-sub muted' },
                w.description ?? `${w.steps.length} step${w.steps.length === 1 ? '' : 's'}`,
              ),
            ),
          ),
        ),
      );
      const selected = params.get('name');
      const name = workflows.some((w) => w.name === selected) ? selected : workflows[0].name;
      showDetail(name, name === selected ? params.get('version') : null);
    })
    .catch((err) => showError(detail, err));
}
