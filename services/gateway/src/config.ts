import { z } from 'zod';
import { baseEnv, parseEnv, toBaseConfig, type BaseConfig } from '@baton/shared';

/** The gateway's environment: the shared keys plus its own, parsed once at start. */
export const gatewayEnv = baseEnv.extend({
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  /**
   * Comma-separated API keys. Unset or blank disables auth (local development); a blank value is
   * treated as unset because Helm and Compose often render an empty variable for "not configured".
   */
  BATON_API_KEYS: z
    .string()
    .optional()
    .transform((value) =>
      (value ?? '')
        .split(',')
        .map((key) => key.trim())
        .filter((key) => key.length > 0),
    ),
  /** Largest accepted request body, in the `bytes` notation express understands (`100kb`, `1mb`). */
  BATON_BODY_LIMIT: z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?\s*(b|kb|mb|gb)?$/i, 'a size such as 512kb or 1mb')
    .default('1mb'),
});

export interface GatewayConfig extends BaseConfig {
  port: number;
  /** Empty: auth is off. */
  apiKeys: string[];
  bodyLimit: string;
}

/** Throws a ConfigError naming every bad variable; entry points wrap it in loadConfigOrExit. */
export function loadGatewayConfig(env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  const parsed = parseEnv(gatewayEnv, env);
  return {
    ...toBaseConfig(parsed),
    port: parsed.PORT,
    apiKeys: parsed.BATON_API_KEYS,
    bodyLimit: parsed.BATON_BODY_LIMIT,
  };
}
