import {
  ConfigError,
  effectiveRetention,
  parseDuration,
  parseRetentionEnv,
  parseWorkflowDefinition,
  retentionPolicyOf,
  ValidationError,
} from '@baton/workflow';
import { loadCoordinatorConfig } from '../../services/coordinator/src/config';

describe('retention durations and policies', () => {
  it('reads durations in seconds, minutes, hours and days, and nothing else', () => {
    expect([parseDuration('2s'), parseDuration('15m'), parseDuration('12h'), parseDuration('7d')]).toEqual([
      2, 900, 43_200, 604_800,
    ]);
    for (const bad of ['', '7', '0d', '-1d', '7 days', '1.5h', '7D', '1w', '9999d'])
      expect(parseDuration(bad)).toBeUndefined();
  });

  it('a definition names the path of a bad duration', () => {
    const steps = [{ id: 'a', function: 'f' }];
    expect(parseWorkflowDefinition({ name: 'w', retention: { failed: '30d' }, steps }).retention).toEqual({
      failed: '30d',
    });
    let thrown: unknown;
    try {
      parseWorkflowDefinition({ name: 'w', retention: { succeeded: 'soon', kept: '1d' }, steps });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(ValidationError);
    const paths = JSON.stringify((thrown as ValidationError).details);
    expect(paths).toContain('retention.succeeded');
    expect(paths).toContain('kept');
  });

  it('BATON_RETENTION is the default class by class; a workflow overrides only the classes it gives', () => {
    expect(loadCoordinatorConfig({}).retention).toEqual({});
    expect(loadCoordinatorConfig({}).retentionSweepMs).toBe(60_000);
    // Delivered events: 7 days unless BATON_EVENT_RETENTION says otherwise; `forever` keeps them.
    expect(loadCoordinatorConfig({}).eventRetentionSecs).toBe(7 * 86_400);
    expect(loadCoordinatorConfig({ BATON_EVENT_RETENTION: '2s' }).eventRetentionSecs).toBe(2);
    expect(loadCoordinatorConfig({ BATON_EVENT_RETENTION: 'forever' }).eventRetentionSecs).toBeUndefined();
    expect(() => loadCoordinatorConfig({ BATON_EVENT_RETENTION: '7 days' })).toThrow(/BATON_EVENT_RETENTION/);
    expect(loadCoordinatorConfig({ BATON_RETENTION: 'succeeded=7d, failed=30d' }).retention).toEqual({
      succeeded: 604_800,
      failed: 2_592_000,
    });
    for (const bad of ['succeeded', 'done=1d', 'failed=1y', 'failed=1d=2d'])
      expect(() => loadCoordinatorConfig({ BATON_RETENTION: bad })).toThrow(ConfigError);
    expect(parseRetentionEnv('')).toEqual({});
    const global = parseRetentionEnv('succeeded=1d,cancelled=2d');
    expect(effectiveRetention(retentionPolicyOf({ succeeded: '1h', failed: '3d' }), global)).toEqual({
      succeeded: 3_600,
      failed: 259_200,
      cancelled: 172_800,
    });
  });
});
