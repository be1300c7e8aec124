import { AuthRequired } from './api.js';

/**
 * Runs `task` now and then every `interval` ms until `signal` aborts or the task returns false.
 * Never two at once (a refresh during a run queues one more), paused while the tab is hidden, and
 * stopped by a 401 (the key form takes over; the page is mounted again once a key is given).
 */
export function poller(task, { interval = 2000, signal }) {
  let timer;
  let running = false;
  let again = false;
  let stopped = false;

  const schedule = () => {
    clearTimeout(timer);
    if (!stopped && !signal.aborted) timer = setTimeout(run, interval);
  };

  async function run() {
    clearTimeout(timer);
    if (stopped || signal.aborted) return;
    if (running) {
      again = true;
      return;
    }
    if (document.hidden) {
      schedule();
      return;
    }
    running = true;
    let keepGoing = true;
    try {
      keepGoing = (await task()) !== false;
    } catch (err) {
      if (err instanceof AuthRequired || err?.name === 'AbortError') stopped = true;
      // Any other failure is the task's to show; polling goes on and may recover.
    } finally {
      running = false;
    }
    if (again) {
      again = false;
      run();
    } else if (keepGoing) schedule();
    else stopped = true;
  }

  signal.addEventListener('abort', () => clearTimeout(timer));
  document.addEventListener(
    'visibilitychange',
    () => {
      if (!document.hidden && !stopped) run();
    },
    { signal },
  );
  run();
  return {
    /** Runs the task now (and resumes polling if it had stopped). */
    refresh() {
      stopped = false;
      run();
    },
    get active() {
      return !stopped && !signal.aborted;
    },
  };
}
