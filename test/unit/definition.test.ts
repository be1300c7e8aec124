import fs from 'node:fs';
import path from 'node:path';
import { parseDefinitionText, parseWorkflowDefinition, ValidationError, findCycle } from '@baton/shared';

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

  it('rejects text that is not YAML', () => {
    expect(() => parseDefinitionText('name: [unclosed', 'x.yaml')).toThrow(/x.yaml is not valid YAML/);
  });
});
