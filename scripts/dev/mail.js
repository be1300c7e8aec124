'use strict';
/** A local mail catcher (npm package maildev) for when SMTP_URL is unset: mail stays on this machine. */
const path = require('node:path');
const { write } = require('./output');
const { portOrFree } = require('./ports');
const { ROOT } = require('./settings');

/**
 * Runs MailDev in this process (its programmatic API), on SMTP 1025 and web 1080 or free ports,
 * bound to 127.0.0.1. Mail is kept in .dev/mail, so it survives a restart of the runner.
 */
async function startMailCatcher() {
  const smtpPort = await portOrFree(1025);
  const webPort = await portOrFree(1080);
  const { MailDev } = await import('maildev');
  const maildev = new MailDev({
    smtp: smtpPort,
    web: webPort,
    ip: '127.0.0.1',
    webIp: '127.0.0.1',
    mailDirectory: path.join(ROOT, '.dev', 'mail'),
    maxEmails: 500,
    silent: true,
  });
  // MailDev prints its address with console.info even when silent: keep it in the prefixed output.
  const consoleInfo = console.info;
  console.info = (...args) => write('maildev', '2', args.join(' '));
  try {
    await maildev.start();
  } finally {
    console.info = consoleInfo;
  }
  return {
    smtpUrl: `smtp://127.0.0.1:${smtpPort}`,
    webUrl: `http://localhost:${webPort}`,
    stop: () => maildev.stop(),
  };
}

module.exports = { startMailCatcher };
