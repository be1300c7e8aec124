import fs from 'node:fs';
import path from 'node:path';
import { CHILD_WORKFLOW_FUNCTION, parseWorkflowDefinition, ValidationError, findCycle } from '@baton/workflow';
import { parseDefinitionText } from '@baton/engine';

function problemsOf(raw: unknown): { path: string; message: string }[] {
  try {
    parseWorkflowDefinition(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return (err as ValidationError).details as { path: string; message: string }[];
  }
  throw new Error('definition was accepted');
}

const step = (id: string, extra: Record<string, unknown> = {}) => ({ id, function: 'noop', ...extra });

describe('workflow definition validation', () => {
  it('accepts workflows/invoice.yaml and makes a plain list sequential', () => {
    const text = fs.readFileSync(path.join(__dirname, '../../workflows/invoice.yaml'), 'utf8');
    const def = parseWorkflowDefinition(parseDefinitionText(text));
    expect(def.steps.map((s) => [s.id, s.needs])).toEqual([
      ['fetchOrders', []],
      ['createInvoice', ['fetchOrders']],
      ['generatePdf', ['createInvoice']],
      ['sendEmail', ['generatePdf']],
    ]);
    expect(def.steps[3].retry.attempts).toBe(5);
    expect(def.steps[2].retry).toEqual({
      attempts: 3,
      backoff: { type: 'exponential', delayMs: 1000, maxDelayMs: 60000, jitter: 0.2 },
      nonRetryableErrors: [],
    });
  });

  it('names the path of a shape problem', () => {
    expect(problemsOf({ name: 'x', steps: [step('a', { retry: { attempts: 0 } })] })).toEqual([
      expect.objectContaining({ path: 'steps[0].retry.attempts' }),
    ]);
    expect(problemsOf({ name: 'x', steps: [step('a', { bogus: 1 })] })[0].path).toBe('steps[0]');
    expect(problemsOf({ name: 'Bad Name', steps: [step('a')] })[0].path).toBe('name');
    expect(problemsOf({ name: 'x', steps: [] })[0].path).toBe('steps');
  });

  it('reports unknown needs, duplicate ids and a bad backoff by path', () => {
    const problems = problemsOf({
      name: 'x',
      steps: [
        step('a'),
        step('a'),
        step('b', { needs: ['nope'] }),
        step('c', { retry: { backoff: { delayMs: 5000, maxDelayMs: 10 } } }),
      ],
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        { path: 'steps[1].id', message: "duplicate step id 'a'" },
        { path: 'steps[2].needs[0]', message: "unknown step 'nope'" },
        { path: 'steps[3].retry.backoff.maxDelayMs', message: 'must be at least delayMs' },
      ]),
    );
  });

  it('finds cycles', () => {
    const problems = problemsOf({
      name: 'x',
      steps: [step('a', { needs: ['c'] }), step('b', { needs: ['a'] }), step('c', { needs: ['b'] })],
    });
    expect(problems).toEqual([expect.objectContaining({ path: 'steps[0].needs', message: 'cycle: a -> c -> b -> a' })]);
    expect(
      findCycle([
        { id: 'a', needs: [] },
        { id: 'b', needs: ['a'] },
      ]),
    ).toBeUndefined();
  });

  it('rejects expressions that do not parse, in inputs, conditions and the output', () => {
    const problems = problemsOf({
      name: 'x',
      steps: [step('a', { input: { v: '{{ input.( }}' }, if: 'input.x = ' })],
      output: { r: 'total: {{ $sum( }}' },
    });
    expect(problems.map((p) => p.path).sort()).toEqual(['output.r', 'steps[0].if', 'steps[0].input.v']);
    for (const p of problems) expect(p.message).toMatch(/^expression does not parse/);
  });

  it('checks the tags: templates: keys, their number, and that each expression parses', () => {
    const ok = parseWorkflowDefinition({ name: 'x', tags: { customer: '{{ input.customerId }}' }, steps: [step('a')] });
    expect(ok.tags).toEqual({ customer: '{{ input.customerId }}' });
    expect(problemsOf({ name: 'x', tags: { Customer: 'x' }, steps: [step('a')] })).toEqual([
      { path: 'tags.Customer', message: expect.stringMatching(/^tag keys use lowercase letters/) },
    ]);
    expect(problemsOf({ name: 'x', tags: { region: '{{ input.( }}' }, steps: [step('a')] })).toEqual([
      { path: 'tags.region', message: expect.stringMatching(/^expression does not parse/) },
    ]);
    const many = Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, 'v']));
    expect(problemsOf({ name: 'x', tags: many, steps: [step('a')] })).toEqual([
      { path: 'tags', message: 'at most 20 tags' },
    ]);
  });

  it('rejects text that is not YAML', () => {
    expect(() => parseDefinitionText('name: [unclosed', 'x.yaml')).toThrow(/x.yaml is not valid YAML/);
  });

  describe('forEach, workflow and repeat', () => {
    it('accepts them and marks a workflow step as a child-workflow step', () => {
      const def = parseWorkflowDefinition({
        name: 'x',
        steps: [
          { id: 'each', forEach: '{{ input.list }}', concurrency: 5, function: 'noop', input: { v: '{{ item }}' } },
          { id: 'child', workflow: 'other', input: {} },
          { id: 'poll', function: 'noop', repeat: { until: 'output.done', maxIterations: 3 } },
        ],
      });
      expect(def.steps[1].function).toBe(CHILD_WORKFLOW_FUNCTION);
      expect(def.steps[2].repeat).toEqual({ until: 'output.done', maxIterations: 3, delayMs: 0 });
    });

    it('names steps[i].concurrency when it is out of 1..1000 or not on a forEach', () => {
      for (const concurrency of [0, 1001, 2.5]) {
        expect(problemsOf({ name: 'x', steps: [step('a', { forEach: '{{ [1] }}', concurrency })] })).toEqual([
          expect.objectContaining({ path: 'steps[0].concurrency' }),
        ]);
      }
      expect(problemsOf({ name: 'x', steps: [step('a', { concurrency: 2 })] })).toEqual([
        { path: 'steps[0].concurrency', message: 'concurrency applies to forEach steps only' },
      ]);
    });

    it('names a broken until, a bad maxIterations and a bad delayMs', () => {
      expect(
        problemsOf({ name: 'x', steps: [step('a', { repeat: { until: 'output.(', maxIterations: 3 } })] }),
      ).toEqual([expect.objectContaining({ path: 'steps[0].repeat.until' })]);
      for (const maxIterations of [0, 10_001]) {
        expect(problemsOf({ name: 'x', steps: [step('a', { repeat: { until: 'true', maxIterations } })] })).toEqual([
          expect.objectContaining({ path: 'steps[0].repeat.maxIterations' }),
        ]);
      }
      expect(
        problemsOf({ name: 'x', steps: [step('a', { repeat: { until: 'true', maxIterations: 2, delayMs: -1 } })] }),
      ).toEqual([expect.objectContaining({ path: 'steps[0].repeat.delayMs' })]);
    });

    it('refuses a forEach template that does not parse, and kinds that cannot go together', () => {
      expect(problemsOf({ name: 'x', steps: [step('a', { forEach: '{{ input.( }}' })] })).toEqual([
        expect.objectContaining({ path: 'steps[0].forEach' }),
      ]);
      expect(problemsOf({ name: 'x', steps: [{ id: 'a', function: 'f', workflow: 'w' }] })[0].path).toBe(
        'steps[0].function',
      );
      expect(problemsOf({ name: 'x', steps: [{ id: 'a', sleep: { durationMs: 1 }, forEach: '{{ [1] }}' }] })).toEqual([
        expect.objectContaining({ path: 'steps[0].forEach' }),
      ]);
      expect(
        problemsOf({
          name: 'x',
          steps: [step('a', { forEach: '{{ [1] }}', repeat: { until: 'true', maxIterations: 2 } })],
        }),
      ).toEqual([expect.objectContaining({ path: 'steps[0].repeat' })]);
    });
  });
});
