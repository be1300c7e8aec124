import { runFunctionMain } from '@baton/sdk';
import { createHttpRequest, HTTP_REQUEST, parseHttpRequestConfig } from './index';

runFunctionMain(HTTP_REQUEST, ({ logger }) => {
  const config = parseHttpRequestConfig();
  logger.info(
    { allowedHosts: config.allowedHosts, maxBodyBytes: config.maxBodyBytes },
    'SSRF guard: non-public addresses refused except for the allowed hosts',
  );
  return { definition: createHttpRequest(config) };
}).catch((err: unknown) => {
  process.stderr.write(`${HTTP_REQUEST} failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
