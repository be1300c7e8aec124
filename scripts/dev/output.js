'use strict';
/**
 * Console output of the dev runner: every line carries a padded, coloured source name, and the
 * components' pino JSON lines are rendered compactly so that seven interleaved processes stay readable.
 */

const useColor = process.env.FORCE_COLOR
  ? process.env.FORCE_COLOR !== '0'
  : !!process.stdout.isTTY && !process.env.NO_COLOR;

// A closed terminal or pipe (`npm run dev | tee`, then Ctrl-C) must not turn the orderly shutdown into a crash.
process.stdout.on('error', () => undefined);

const paint = (code, text) => (useColor ? `\x1b[${code}m${text}\x1b[0m` : text);
const dim = (text) => paint('2', text);
const bold = (text) => paint('1', text);

/** Distinct colours for components, assigned in order. */
const PALETTE = ['36', '35', '33', '32', '34', '96', '95', '93', '92', '94'];
let nextColor = 0;
let prefixWidth = 11;

/** Makes the prefix column as wide as the longest name, so that messages line up. */
function setPrefixWidth(names) {
  prefixWidth = Math.max(prefixWidth, ...names.map((n) => n.length));
}

function nextComponentColor() {
  return PALETTE[nextColor++ % PALETTE.length];
}

function write(name, color, text) {
  const prefix = `${paint(color, name.padEnd(prefixWidth))} ${dim('|')} `;
  process.stdout.write(
    `${String(text)
      .split('\n')
      .map((line) => prefix + line)
      .join('\n')}\n`,
  );
}

/** A logger for the runner's own messages, under `name` (`dev`, `setup`). */
function makeLog(name) {
  return {
    info: (text) => write(name, '1', text),
    ok: (text) => write(name, '1', `${paint('32', '✔')} ${text}`),
    warn: (text) => write(name, '1', paint('33', `! ${text}`)),
    error: (text) => write(name, '1', paint('31', `✘ ${text}`)),
    /** Lines printed as they are (banners, hints). */
    plain: (text) => write(name, '1', text),
  };
}

const log = makeLog('dev');

const LEVELS = {
  10: ['TRACE', '90'],
  20: ['DEBUG', '90'],
  30: ['INFO ', '32'],
  40: ['WARN ', '33'],
  50: ['ERROR', '31'],
  60: ['FATAL', '41'],
};
const LEVEL_NUMBERS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

function formatTime(time) {
  const date = time === undefined ? new Date() : new Date(time);
  if (Number.isNaN(date.getTime())) return String(time);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

function errorMessage(err) {
  if (typeof err === 'string') return err;
  if (err && typeof err === 'object') return err.message || err.type || JSON.stringify(err);
  return String(err);
}

/**
 * One pino JSON line → `12:00:01.234 INFO  message runId=… stepId=… err=…`. Anything that is not a
 * pino line (a stack trace on stderr, a library's console output) passes through unchanged.
 */
function renderLogLine(line) {
  if (!line.startsWith('{')) return line;
  let entry;
  try {
    entry = JSON.parse(line);
  } catch {
    return line;
  }
  if (!entry || typeof entry !== 'object' || (entry.level === undefined && entry.msg === undefined)) return line;
  const levelNumber = typeof entry.level === 'string' ? LEVEL_NUMBERS[entry.level] : entry.level;
  const [label, color] = LEVELS[levelNumber] ?? [
    String(entry.level ?? '')
      .toUpperCase()
      .padEnd(5),
    '0',
  ];
  const parts = [dim(formatTime(entry.time)), paint(color, label), entry.msg ?? ''];
  if (entry.runId !== undefined) parts.push(dim(`runId=${entry.runId}`));
  if (entry.stepId !== undefined) parts.push(dim(`stepId=${entry.stepId}`));
  const err = entry.err ?? entry.error;
  if (err !== undefined) parts.push(paint('31', `err=${errorMessage(err)}`));
  return parts.join(' ');
}

/** Hides the password of a URL (postgres://u:secret@h → postgres://u:***@h); other URLs unchanged. */
function maskUrl(value) {
  if (!value) return value;
  try {
    const url = new URL(value);
    if (!url.password) return value;
    url.password = '***';
    return url.toString();
  } catch {
    return String(value).replace(/\/\/([^:/@]*):[^@/]*@/, '//$1:***@');
  }
}

module.exports = {
  bold,
  dim,
  paint,
  log,
  makeLog,
  write,
  setPrefixWidth,
  nextComponentColor,
  renderLogLine,
  maskUrl,
};
