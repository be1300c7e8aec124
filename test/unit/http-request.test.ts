import { BatonError, ConfigError, NonRetryableError } from '@baton/workflow';
import {
  canonicalHost,
  classifyStatus,
  DEFAULT_MAX_BODY_BYTES,
  headersAfterRedirect,
  httpRequestInput,
  isFollowedRedirect,
  parseHttpRequestConfig,
  parseRetryAfter,
  redactUrl,
  redirectMethod,
  statusError,
} from '../../functions/http-request/src/policy';
import { decodeBody, isJsonContentType } from '../../functions/http-request/src/index';

describe('http-request: status classification', () => {
  it('accepts any 2xx by default', () => {
    for (const s of [200, 201, 204, 299]) expect(classifyStatus(s)).toEqual({ kind: 'ok' });
  });

  it('retries 5xx and 429, fails anything else at once', () => {
    expect(classifyStatus(500)).toEqual({ kind: 'retry', code: 'HTTP_5XX' });
    expect(classifyStatus(503)).toEqual({ kind: 'retry', code: 'HTTP_5XX' });
    expect(classifyStatus(599)).toEqual({ kind: 'retry', code: 'HTTP_5XX' });
    expect(classifyStatus(429)).toEqual({ kind: 'retry', code: 'HTTP_429' });
    for (const s of [100, 304, 400, 401, 403, 404, 409, 422]) {
      expect(classifyStatus(s)).toEqual({ kind: 'fail', code: 'HTTP_STATUS' });
    }
  });

  it('expectStatus (a number or a list) replaces the 2xx default', () => {
    expect(classifyStatus(404, 404)).toEqual({ kind: 'ok' });
    expect(classifyStatus(200, 404)).toEqual({ kind: 'fail', code: 'HTTP_STATUS' });
    expect(classifyStatus(201, [200, 201])).toEqual({ kind: 'ok' });
    expect(classifyStatus(204, [200, 201])).toEqual({ kind: 'fail', code: 'HTTP_STATUS' });
    expect(classifyStatus(503, [200, 503])).toEqual({ kind: 'ok' });
    expect(classifyStatus(503, [200])).toEqual({ kind: 'retry', code: 'HTTP_5XX' });
  });

  it('follows redirects unless their status is expected', () => {
    for (const s of [301, 302, 303, 307, 308]) expect(isFollowedRedirect(s)).toBe(true);
    expect(isFollowedRedirect(300)).toBe(false);
    expect(isFollowedRedirect(304)).toBe(false);
    expect(isFollowedRedirect(200)).toBe(false);
    expect(isFollowedRedirect(302, 302)).toBe(false);
    expect(isFollowedRedirect(302, [200, 301])).toBe(true);
  });

  it('turns an unexpected status into the right error', () => {
    const url = new URL('https://user:secret@api.example.com/v1/orders?token=abc#x');
    const notFound = statusError(404, 'Not Found', { method: 'GET', url });
    expect(notFound).toBeInstanceOf(NonRetryableError);
    expect(notFound?.code).toBe('HTTP_STATUS');
    expect(notFound?.message).toBe('GET https://api.example.com/v1/orders?… answered 404 Not Found (expected 2xx)');
    expect(notFound?.message).not.toMatch(/secret|token|abc/);
    expect(notFound?.details).toEqual({ status: 404 });

    const unavailable = statusError(503, 'Service Unavailable', { method: 'POST', url, retryAfter: '2' });
    expect(unavailable).toBeInstanceOf(BatonError);
    expect(unavailable).not.toBeInstanceOf(NonRetryableError);
    expect(unavailable?.retryable).toBe(true);
    expect(unavailable?.code).toBe('HTTP_5XX');
    expect(unavailable?.retryAfterMs).toBe(2_000);

    const throttled = statusError(429, undefined, { method: 'GET', url, retryAfter: '7' });
    expect(throttled?.code).toBe('HTTP_429');
    expect(throttled?.retryAfterMs).toBe(7_000);

    // Retry-After counts only for 429 and 503.
    expect(statusError(500, 'Oops', { method: 'GET', url, retryAfter: '5' })?.retryAfterMs).toBeUndefined();
    expect(statusError(503, '', { method: 'GET', url })?.retryAfterMs).toBeUndefined();
    expect(statusError(200, 'OK', { method: 'GET', url, expectStatus: 201 })?.message).toMatch(
      /answered 200 OK \(expected 201\)/,
    );
    expect(statusError(201, 'Created', { method: 'GET', url })).toBeUndefined();
  });
});

describe('http-request: Retry-After', () => {
  const now = Date.parse('2026-03-01T12:00:00Z');

  it('reads delay-seconds', () => {
    expect(parseRetryAfter('1', now)).toBe(1_000);
    expect(parseRetryAfter(' 120 ', now)).toBe(120_000);
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter(['3', '9'], now)).toBe(3_000);
  });

  it('reads the three HTTP date forms relative to now; a past date is 0', () => {
    expect(parseRetryAfter('Sun, 01 Mar 2026 12:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Sunday, 01-Mar-26 12:01:00 GMT', now)).toBe(60_000);
    expect(parseRetryAfter('Sun Mar  1 12:00:05 2026', now)).toBe(5_000);
    expect(parseRetryAfter('Sat, 28 Feb 2026 12:00:00 GMT', now)).toBe(0);
  });

  it('ignores anything else', () => {
    for (const v of [undefined, '', '  ', '-1', '1.5', 'soon', '2026-03-01T12:00:30Z', 'Sun, 01 Mar 2026 12:00:30']) {
      expect(parseRetryAfter(v, now)).toBeUndefined();
    }
  });
});

describe('http-request: configuration', () => {
  it('defaults to no allowed host and a 5 MiB body limit', () => {
    expect(parseHttpRequestConfig({})).toEqual({ allowedHosts: [], maxBodyBytes: DEFAULT_MAX_BODY_BYTES });
    expect(DEFAULT_MAX_BODY_BYTES).toBe(5 * 1024 * 1024);
  });

  it('parses HTTP_REQUEST_ALLOWED_HOSTS into canonical hosts', () => {
    const config = parseHttpRequestConfig({
      HTTP_REQUEST_ALLOWED_HOSTS: ' API.Internal , 10.0.0.5,,[::1], 0:0::1, example.com., 127.1',
      HTTP_REQUEST_MAX_BODY_BYTES: '1024',
    });
    expect(config).toEqual({
      allowedHosts: ['api.internal', '10.0.0.5', '::1', 'example.com', '127.0.0.1'],
      maxBodyBytes: 1024,
    });
  });

  it('refuses entries that are not bare hosts, naming the variable', () => {
    for (const bad of ['http://api.internal', 'api.internal:8080', 'api.internal/path', 'user@host', 'a b']) {
      expect(() => parseHttpRequestConfig({ HTTP_REQUEST_ALLOWED_HOSTS: `ok.example,${bad}` })).toThrow(ConfigError);
      expect(() => parseHttpRequestConfig({ HTTP_REQUEST_ALLOWED_HOSTS: bad })).toThrow(/HTTP_REQUEST_ALLOWED_HOSTS/);
    }
    expect(() => parseHttpRequestConfig({ HTTP_REQUEST_MAX_BODY_BYTES: 'lots' })).toThrow(
      /HTTP_REQUEST_MAX_BODY_BYTES="lots" is invalid/,
    );
    expect(() => parseHttpRequestConfig({ HTTP_REQUEST_MAX_BODY_BYTES: '0' })).toThrow(ConfigError);
  });

  it('canonicalises hosts the way URLs spell them', () => {
    expect(canonicalHost('LocalHost')).toBe('localhost');
    expect(canonicalHost('[fd00:EC2::254]')).toBe('fd00:ec2::254');
    expect(canonicalHost('2130706433')).toBe('127.0.0.1');
    expect(canonicalHost('host:1')).toBeUndefined();
  });
});

describe('http-request: input', () => {
  it('defaults the method to GET and accepts lower case', () => {
    expect(httpRequestInput.parse({ url: 'https://example.com' }).method).toBe('GET');
    expect(httpRequestInput.parse({ url: 'https://example.com', method: 'post', body: { a: 1 } }).method).toBe('POST');
  });

  it('refuses non-http URLs, bodies on GET/HEAD, unbounded timeouts and header injection', () => {
    const bad = [
      { url: 'ftp://example.com/file' },
      { url: 'file:///etc/passwd' },
      { url: '/relative' },
      { url: 'https://example.com', method: 'CONNECT' },
      { url: 'https://example.com', body: 'x' },
      { url: 'https://example.com', method: 'HEAD', body: { a: 1 } },
      { url: 'https://example.com', timeoutMs: 10_000_000 },
      { url: 'https://example.com', timeoutMs: 0 },
      { url: 'https://example.com', headers: { 'x-a': 'ok\r\nx-injected: 1' } },
      { url: 'https://example.com', headers: { 'bad name': 'v' } },
      { url: 'https://example.com', expectStatus: 700 },
      { url: 'https://example.com', expectStatus: [] },
    ];
    for (const input of bad) expect(httpRequestInput.safeParse(input).success).toBe(false);
    expect(
      httpRequestInput.safeParse({
        url: 'http://example.com/x',
        method: 'PUT',
        headers: { Authorization: 'Bearer t', 'X-Count': 3 },
        body: 'plain text',
        timeoutMs: 5_000,
        expectStatus: [200, 409],
      }).success,
    ).toBe(true);
  });
});

describe('http-request: redirects, logging and bodies', () => {
  it('changes method like fetch does', () => {
    expect(redirectMethod(303, 'POST')).toEqual({ method: 'GET', keepBody: false });
    expect(redirectMethod(303, 'HEAD')).toEqual({ method: 'HEAD', keepBody: true });
    expect(redirectMethod(302, 'POST')).toEqual({ method: 'GET', keepBody: false });
    expect(redirectMethod(301, 'PUT')).toEqual({ method: 'PUT', keepBody: true });
    expect(redirectMethod(307, 'POST')).toEqual({ method: 'POST', keepBody: true });
    expect(redirectMethod(308, 'PATCH')).toEqual({ method: 'PATCH', keepBody: true });
  });

  it('keeps credentials with their origin and body headers with their body', () => {
    const headers = { Authorization: 'Bearer t', Cookie: 'c=1', 'Content-Type': 'application/json', 'X-Trace': '1' };
    expect(headersAfterRedirect(headers, { sameOrigin: true, keepBody: true })).toEqual(headers);
    expect(headersAfterRedirect(headers, { sameOrigin: false, keepBody: true })).toEqual({
      'Content-Type': 'application/json',
      'X-Trace': '1',
    });
    expect(headersAfterRedirect(headers, { sameOrigin: true, keepBody: false })).toEqual({
      Authorization: 'Bearer t',
      Cookie: 'c=1',
      'X-Trace': '1',
    });
  });

  it('redacts user info and query from URLs it logs', () => {
    expect(redactUrl(new URL('https://u:p@h.example:8443/a/b?key=s#f'))).toBe('https://h.example:8443/a/b?…');
    expect(redactUrl(new URL('http://h.example/'))).toBe('http://h.example/');
  });

  it('parses JSON bodies, returns text otherwise', () => {
    expect(isJsonContentType('application/json; charset=utf-8')).toBe(true);
    expect(isJsonContentType('application/problem+json')).toBe(true);
    expect(isJsonContentType('text/html')).toBe(false);
    expect(isJsonContentType(undefined)).toBe(false);
    expect(decodeBody(Buffer.from('{"a":[1,2]}'), 'application/json')).toEqual({ body: { a: [1, 2] } });
    expect(decodeBody(Buffer.from('hello'), 'text/plain')).toEqual({ body: 'hello' });
    expect(decodeBody(Buffer.from([0x63, 0x61, 0x66, 0xe9]), 'text/plain; charset=ISO-8859-1')).toEqual({
      body: 'café',
    });
    expect(decodeBody(Buffer.from('x'), 'text/plain; charset=nonsense')).toEqual({ body: 'x' });
    expect(decodeBody(Buffer.from('{oops'), 'application/json')).toEqual({ body: '{oops', invalidJson: true });
    expect(decodeBody(Buffer.alloc(0), 'application/json')).toEqual({ body: null });
    expect(decodeBody(Buffer.alloc(0), 'text/plain')).toEqual({ body: '' });
    expect(decodeBody(Buffer.from('ignored'), 'text/plain', true)).toEqual({ body: null });
  });

  it('returns binary bodies as base64, so the output holds nothing PostgreSQL refuses', () => {
    const pdf = Buffer.from([0x25, 0x50, 0x44, 0x46, 0x00, 0xff, 0x10]);
    const asBase64 = { body: pdf.toString('base64'), bodyEncoding: 'base64' };
    expect(decodeBody(pdf, 'application/pdf')).toEqual(asBase64);
    expect(decodeBody(pdf, 'application/octet-stream')).toEqual(asBase64);
    expect(decodeBody(pdf, 'image/png')).toEqual(asBase64);
    // Declared as text but not text: invalid UTF-8, or a NUL byte.
    expect(decodeBody(Buffer.from([0x61, 0xff, 0x62]), 'text/plain')).toEqual({
      body: Buffer.from([0x61, 0xff, 0x62]).toString('base64'),
      bodyEncoding: 'base64',
    });
    expect(decodeBody(Buffer.from('a\u0000b'), undefined)).toEqual({
      body: Buffer.from('a\u0000b').toString('base64'),
      bodyEncoding: 'base64',
    });
    // JSON whose strings hold an escaped NUL stays JSON: the coordinator replaces the NUL when storing it.
    expect(decodeBody(Buffer.from('{"a":"\\u0000"}'), 'application/json')).toEqual({ body: { a: '\u0000' } });
    // Text types stay text.
    expect(decodeBody(Buffer.from('<a/>'), 'application/xml')).toEqual({ body: '<a/>' });
    expect(decodeBody(Buffer.from('<svg/>'), 'image/svg+xml')).toEqual({ body: '<svg/>' });
    expect(decodeBody(Buffer.from('a=1'), 'application/x-www-form-urlencoded')).toEqual({ body: 'a=1' });
  });
});
