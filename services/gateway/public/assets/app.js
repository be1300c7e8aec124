import { clearApiKey, getApiKey, onAuthRequired, setApiKey } from './api.js';
import { tickTimes } from './dom.js';

/** Entry point of every page: the shell names the page module in <body data-page>. */
const PAGES = {
  runs: () => import('./runs.js'),
  run: () => import('./run.js'),
  workflows: () => import('./workflows.js'),
  functions: () => import('./functions.js'),
};
const NAV = { runs: 'runs', run: 'runs', workflows: 'workflows', functions: 'functions' };

const page = document.body.dataset.page;
const main = document.getElementById('main');
const auth = document.getElementById('auth');
const authForm = document.getElementById('auth-form');
const authKey = document.getElementById('auth-key');
const authError = document.getElementById('auth-error');
const forget = document.getElementById('forget-key');

let controller;

function showForget() {
  forget.hidden = !getApiKey();
}

async function mountPage() {
  controller?.abort();
  controller = new AbortController();
  auth.hidden = true;
  main.hidden = false;
  main.replaceChildren();
  const load = PAGES[page] ?? PAGES.runs;
  const module = await load();
  module.mount(main, { signal: controller.signal });
}

onAuthRequired((reason, message) => {
  controller?.abort();
  main.hidden = true;
  auth.hidden = false;
  authError.hidden = reason !== 'invalid';
  authError.textContent = reason === 'invalid' ? `That key was refused (${message}). Try another.` : '';
  if (reason === 'invalid') clearApiKey();
  showForget();
  authKey.focus();
});

authForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const key = authKey.value.trim();
  if (!key) return;
  setApiKey(key);
  authKey.value = '';
  showForget();
  mountPage();
});

forget.addEventListener('click', () => {
  clearApiKey();
  showForget();
  mountPage();
});

for (const link of document.querySelectorAll('[data-nav]')) {
  if (link.dataset.nav === NAV[page]) link.setAttribute('aria-current', 'page');
}

showForget();
tickTimes();
mountPage();
