/**
 * The JSON API as the dashboard uses it: same origin, the API key from session storage as a bearer
 * token, errors as ApiError ({status, code, message, details}). A 401 calls the auth listener (the
 * page shows the key form) and rejects with AuthRequired, which pages ignore.
 */

const KEY = 'baton.apiKey';

export class ApiError extends Error {
  constructor(status, error) {
    super(error?.message || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = error?.code || `HTTP_${status}`;
    this.details = error?.details;
  }
}

export class AuthRequired extends Error {
  constructor(message) {
    super(message);
    this.name = 'AuthRequired';
  }
}

export function getApiKey() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setApiKey(key) {
  sessionStorage.setItem(KEY, key);
}

export function clearApiKey() {
  sessionStorage.removeItem(KEY);
}

let authListener = () => undefined;

/** `listener(reason, message)`, reason 'missing' (no key sent) or 'invalid' (the key was refused). */
export function onAuthRequired(listener) {
  authListener = listener;
}

function headers(extra = {}) {
  const key = getApiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

/**
 * `api(path, {method, body, signal})` → the parsed JSON body. `body` is sent as JSON.
 */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const sentKey = getApiKey();
  const res = await fetch(path, {
    method,
    headers: headers({
      Accept: 'application/json',
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    }),
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: 'no-store',
    credentials: 'same-origin',
  });
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.status === 401) {
    const message = data?.error?.message || 'API key required';
    authListener(sentKey ? 'invalid' : 'missing', message);
    throw new AuthRequired(message);
  }
  if (!res.ok) throw new ApiError(res.status, data?.error ?? { message: res.statusText || `HTTP ${res.status}` });
  return data;
}

/**
 * Downloads `path` (a same-origin document, e.g. the invoice PDF) with the API key and opens it.
 * Without a key a plain link does the job, so this is only used when a key is set.
 */
export async function openWithKey(path, filename) {
  const res = await fetch(path, { headers: headers(), credentials: 'same-origin' });
  if (res.status === 401) {
    authListener('invalid', 'the API key was refused');
    throw new AuthRequired('API key refused');
  }
  if (!res.ok) throw new ApiError(res.status, { message: `the document answered HTTP ${res.status}` });
  const url = URL.createObjectURL(await res.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * The one sentence every page shows when a call fails. `polling` pages say they will try again,
 * since their next refresh does.
 */
export function describeApiError(err, { polling = false } = {}) {
  if (err instanceof ApiError) return `The API answered ${err.status}: ${err.message}`;
  return polling ? `Cannot reach the API (${err.message}); retrying.` : err.message;
}
