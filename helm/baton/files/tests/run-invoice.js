// `helm test`: start the invoice workflow through the gateway and wait until the run succeeded.
// Runs with the gateway image's node (global fetch); any other end fails the test with the reason.
/* global fetch -- Node 22 (the gateway image) has it built in. */
const base = process.env.BATON_URL;
const customerId = process.env.CUSTOMER_ID;
const timeoutMs = Number(process.env.TIMEOUT_SECONDS || 120) * 1000;
const apiKey = (process.env.BATON_API_KEYS || '').split(',')[0].trim();
const headers = { 'content-type': 'application/json' };
if (apiKey) headers.authorization = `Bearer ${apiKey}`;
const FINAL = ['failed', 'compensated', 'compensation_failed', 'cancelled'];

async function main() {
  const start = await fetch(`${base}/invoice/start`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ customerId }),
  });
  const body = await start.text();
  if (start.status !== 202) throw new Error(`POST /invoice/start answered ${start.status}: ${body}`);
  const { runId, statusUrl } = JSON.parse(body);
  console.log(`run ${runId} started for ${customerId}`);
  const deadline = Date.now() + timeoutMs;
  let last = 'unknown';
  while (Date.now() < deadline) {
    const res = await fetch(`${base}${statusUrl || `/v1/runs/${runId}`}`, { headers });
    if (res.ok) {
      const run = await res.json();
      last = run.status;
      if (run.status === 'succeeded') {
        console.log(`run ${runId} succeeded: ${JSON.stringify(run.output)}`);
        return;
      }
      if (FINAL.includes(run.status)) throw new Error(`run ${runId} ended ${run.status}: ${JSON.stringify(run.error)}`);
    } else {
      last = `HTTP ${res.status}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new Error(`run ${runId} not finished after ${timeoutMs / 1000} s (last seen: ${last})`);
}

main().catch((err) => {
  console.error(`helm test failed: ${err.message}`);
  process.exit(1);
});
