// The browser test: starts the demo system (config/demo.yaml) under lc-launch on a bus in a
// temporary folder, opens lc-web's dashboard in Debian's headless chromium through
// playwright-core, and checks what a person would: the modules are listed with their states,
// "Trigger action" adds the log lines and moves the GPIO outputs, the panel shows a reply and
// an error, the live feed shows the traffic and follows its filters. Every wait is a
// condition with a deadline. A screenshot goes to BUILD/test-output/web.png.
//
//   node tests/browser/web.test.mjs [BUILD]      (scripts/browser-test.sh; make test)
//
// On a failure it prints the demo's log; it stops everything it started in any case.
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const SOURCE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BUILD = path.resolve(SOURCE, process.argv[2] || 'build');
const CHROMIUM = process.env.LC_CHROMIUM || '/usr/bin/chromium';
const WAIT_MS = 15000;          // one condition's deadline
const START_MS = 30000;         // the demo's deadline to serve the page
const TOTAL_MS = 240000;        // the whole test's: it never hangs a `make test`
const MODULES = ['gpio', 'controller', 'clickhandler', 'echo', 'simple', 'web', 'prometheus'];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lc-browser-'));
let demo = null;                // the lc-launch process (leader of its own process group)
let demoLog = '';
let context = null;             // chromium (a persistent context on a fresh profile)
const results = [];

function log(line) {
  process.stdout.write(`${line}\n`);
}

// ---- The demo system ----

function startDemo() {
  const env = {
    ...process.env,
    PATH: `${path.join(BUILD, 'bin')}:${process.env.PATH}`,
    LC_BUS: `ipc://${tmp}/bus`,
    LC_DEMO_DIR: tmp,
    LC_WEB_PORT: '0',           // any free port: the module says which
    LC_PROMETHEUS_PORT: '0',
  };
  demo = spawn(path.join(BUILD, 'bin', 'lc-launch'), ['config/demo.yaml'], {
    cwd: SOURCE, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logFile = fs.createWriteStream(path.join(tmp, 'demo.log'));
  demo.output = new EventEmitter();
  for (const stream of [demo.stdout, demo.stderr]) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk) => {
      demoLog += chunk;
      logFile.write(chunk);
      demo.output.emit('data');
    });
  }
  demo.exited = new Promise((resolve) => demo.on('exit', (code, signal) => {
    demo.exitCode_ = code;
    demo.signal_ = signal;
    resolve();
  }));
}

// The dashboard's address, from lc-web's line "serving http://127.0.0.1:PORT/".
async function demoUrl() {
  const deadline = Date.now() + START_MS;
  // A whole line only: a chunk of output may end inside one.
  const pattern = /^\S+\s+web\s+\|.*web: serving (https?:\/\/\S+?)\/?( \(basic auth\))?\r?\n/m;
  for (;;) {
    const m = demoLog.match(pattern);
    if (m) return `${m[1]}/`;
    if (demo.exitCode_ !== undefined)
      throw new Error(`lc-launch ended (${demo.signal_ || `exit code ${demo.exitCode_}`}) before lc-web served`);
    if (Date.now() > deadline)
      throw new Error(`lc-web did not say "serving http://..." within ${START_MS / 1000} s`);
    let timer;
    await Promise.race([new Promise((r) => demo.output.once('data', r)), demo.exited,
                        new Promise((r) => { timer = setTimeout(r, deadline - Date.now()); })]);
    clearTimeout(timer);
  }
}

// SIGTERM to lc-launch's group (it stops the system in order), SIGKILL after a deadline.
async function stopDemo() {
  if (!demo || demo.exitCode_ !== undefined) return;
  try { process.kill(-demo.pid, 'SIGTERM'); } catch (_) { return; }
  const timer = new Promise((r) => setTimeout(r, 15000, 'late'));
  if (await Promise.race([demo.exited, timer]) === 'late') {
    log(`# lc-launch did not stop within 15 s of SIGTERM: killing its process group`);
    try { process.kill(-demo.pid, 'SIGKILL'); } catch (_) { /* gone */ }
    await demo.exited;
  }
}

// ---- Steps ----

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    log(`ok ${results.length} - ${name} (${Date.now() - started} ms)`);
    return true;
  } catch (err) {
    results.push({ name, ok: false });
    log(`not ok ${results.length} - ${name}`);
    log(`  ${String(err.stack || err).split('\n').slice(0, 6).join('\n  ')}`);
    return false;
  }
}

// Waits until fn(arg) is true in the page, or fails naming what it waited for.
async function until(page, what, fn, arg, timeout = WAIT_MS) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 100 });
  } catch (err) {
    if (err.name !== 'TimeoutError') throw err;
    throw new Error(`timed out after ${timeout / 1000} s waiting until ${what}`);
  }
}

const rowState = (page, testid) =>
  page.locator(`[data-testid="${testid}"]`).getAttribute('data-state');

async function send(page, kind, target, args) {
  await page.selectOption('#send-kind', kind);
  await page.fill('#send-target', target);
  await page.fill('#send-args', args);
  // The answer replaces the previous one: wait for this one by its new text.
  await page.evaluate(() => { document.getElementById('send-status').textContent = ''; });
  await page.click('[data-testid="send"]');
  await until(page, `the panel shows the answer of ${kind} ${target}`,
    () => document.getElementById('send-status').textContent !== '');
  return {
    ok: await page.locator('#send-result').getAttribute('data-ok'),
    status: await page.textContent('#send-status'),
    body: await page.textContent('#send-body'),
  };
}

async function run() {
  startDemo();
  const url = await demoUrl();
  log(`# the demo serves ${url}`);
  context = await chromium.launchPersistentContext(path.join(tmp, 'chromium'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
           '--no-first-run', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 1100 },
  });
  const page = context.pages()[0] || await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (err) => pageErrors.push(err.message));

  if (!await step('the page loads with its title and sections', async () => {
    const res = await page.goto(url, { timeout: WAIT_MS });
    if (!res || res.status() !== 200) throw new Error(`GET ${url}: HTTP ${res && res.status()}`);
    await page.locator('#title').waitFor({ timeout: WAIT_MS });
    for (const id of ['output', 'modules', 'gpio', 'panel', 'feed'])
      await page.locator(`section#${id}`).waitFor({ timeout: WAIT_MS });
    await until(page, 'the title comes from /api/info',
      () => document.getElementById('version').textContent.includes('module'));
  })) return;

  await step('the dashboard lists the modules with their states', async () => {
    await until(page, `${MODULES.join(', ')} are listed as running and active`, (names) =>
      names.every((n) => {
        const row = document.querySelector(`[data-testid="module-${n}"]`);
        return row && row.dataset.state === 'running' && row.dataset.busState === 'active';
      }), MODULES);
    const pid = await page.textContent('[data-testid="module-gpio"] [data-field="pid"]');
    if (!/^\d+$/.test(pid.trim())) throw new Error(`gpio's pid shows '${pid}'`);
  });

  await step('"Trigger action" adds the log lines and moves the GPIO outputs', async () => {
    await until(page, 'the GPIO view shows lines 4 and 27',
      () => document.querySelector('[data-testid="gpio-line-4"]') &&
            document.querySelector('[data-testid="gpio-line-27"]'));
    await until(page, 'the Output list is loaded',
      () => document.querySelector('#log li') !== null);
    const before = await page.locator('[data-testid="log-entry"]').count();
    const line27 = await rowState(page, 'gpio-line-27');
    await page.click('[data-testid="trigger"]');
    await until(page, 'the trigger reports what it did',
      () => /Triggered/.test(document.getElementById('trigger-result').textContent));
    // The synchronous line is there when the answer comes; the enqueued one a bit later.
    await until(page, 'two more lines are in the Output list', (n) =>
      document.querySelectorAll('[data-testid="log-entry"]').length >= n + 2, before);
    const texts = (await page.locator('[data-testid="log-entry"]').allTextContents()).slice(before);
    if (!texts.some((t) => /asynchronous/i.test(t)) ||
        !texts.some((t) => /synchronous/i.test(t) && !/asynchronous/i.test(t)))
      throw new Error(`the new lines do not say synchronous and asynchronous: ${JSON.stringify(texts)}`);
    await until(page, 'output line 4 is on', () =>
      document.querySelector('[data-testid="gpio-line-4"]').dataset.state === 'on');
    await until(page, `output line 27 toggles from ${line27}`, (was) =>
      document.querySelector('[data-testid="gpio-line-27"]').dataset.state !== was, line27);
  });

  await step('a call from the panel shows its reply', async () => {
    const r = await send(page, 'call', 'echo.echo', '{"text":"hi"}');
    if (r.ok !== 'true' || !/^HTTP 200/.test(r.status) || JSON.parse(r.body).text !== 'hi')
      throw new Error(`echo.echo answered ${r.status}: ${r.body}`);
  });

  await step('an error from the panel shows the error and the HTTP status', async () => {
    const r = await send(page, 'call', 'nosuch.method', '{}');
    if (r.ok !== 'false' || !/^HTTP 404/.test(r.status) || !/ENOMODULE/.test(r.status + r.body))
      throw new Error(`nosuch.method answered ${r.status}: ${r.body}`);
    const bad = await send(page, 'call', 'echo.echo', '{"text": ');
    if (bad.ok !== 'false' || !/not valid JSON/.test(bad.status))
      throw new Error(`bad JSON arguments showed ${bad.status}: ${bad.body}`);
  });

  await step('an event emitted from the panel is accepted', async () => {
    const r = await send(page, 'emit', 'webpage_trigger', '{}');
    // subscribers: how many were offered a copy (the controller at least).
    const subs = r.ok === 'true' ? JSON.parse(r.body).subscribers : null;
    if (!/^HTTP 202/.test(r.status) || !(subs >= 1 || (Array.isArray(subs) && subs.length)))
      throw new Error(`emit webpage_trigger answered ${r.status}: ${r.body}`);
  });

  await step('the live feed shows the traffic', async () => {
    await until(page, 'the feed shows the call to echo.echo and the event webpage_trigger', () => {
      const rows = [...document.querySelectorAll('[data-testid="feed-record"]')].map((r) => r.textContent);
      return rows.some((t) => t.includes('echo.echo')) &&
             rows.some((t) => t.includes('webpage_trigger') && t.includes('controller'));
    });
    const conn = await page.textContent('#connection');
    if (conn !== 'live') throw new Error(`the stream's badge says '${conn}'`);
  });

  await step('a screenshot of the dashboard', async () => {
    const dir = path.join(BUILD, 'test-output');
    fs.mkdirSync(dir, { recursive: true });
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(dir, 'web.png'), fullPage: true });
    log(`# screenshot: ${path.join(dir, 'web.png')}`);
  });

  await step('the GPIO buttons set and toggle an output', async () => {
    await page.click('[data-testid="gpio-off-4"]');
    await until(page, 'line 4 is off after its Off button', () =>
      document.querySelector('[data-testid="gpio-line-4"]').dataset.state === 'off');
    await page.click('[data-testid="gpio-toggle-4"]');
    await until(page, 'line 4 is on after its Toggle button', () =>
      document.querySelector('[data-testid="gpio-line-4"]').dataset.state === 'on');
    await page.selectOption('[data-testid="gpio-select-17"]', 'blink_fast');
    await until(page, 'line 17 blinks fast after its state was chosen', () =>
      document.querySelector('[data-testid="gpio-line-17"]').dataset.state === 'blink_fast');
  });

  await step('the feed follows its module filter, pause and clear', async () => {
    await page.fill('#feed-module', 'echo');
    await page.click('[data-testid="feed-apply"]');
    await page.click('[data-testid="feed-clear"]');
    await until(page, 'the stream is open again', () =>
      document.getElementById('connection').textContent === 'live');
    await send(page, 'emit', 'webpage_trigger', '{}');   // not echo's: filtered out
    await send(page, 'call', 'echo.echo', '{"text":"filtered"}');
    await until(page, 'the feed shows the filtered call', () =>
      [...document.querySelectorAll('[data-testid="feed-record"]')]
        .some((r) => r.textContent.includes('filtered')));
    const rows = await page.locator('[data-testid="feed-record"]').allTextContents();
    const other = rows.filter((t) => !t.includes('echo'));
    if (other.length) throw new Error(`the module filter let through: ${JSON.stringify(other)}`);
    await page.click('[data-testid="feed-pause"]');
    const shown = await page.locator('[data-testid="feed-record"]').count();
    await send(page, 'call', 'echo.echo', '{"text":"while paused"}');
    await until(page, 'the feed counts what it did not show while paused', () =>
      /not shown/.test(document.getElementById('feed-count').textContent));
    const after = await page.locator('[data-testid="feed-record"]').count();
    if (after !== shown) throw new Error(`the paused feed grew from ${shown} to ${after} rows`);
    await page.click('[data-testid="feed-pause"]');
  });

  await step('the page fits a phone screen', async () => {
    const phone = await context.newPage();
    await phone.setViewportSize({ width: 390, height: 844 });
    await phone.goto(url, { timeout: WAIT_MS });
    await until(phone, 'the phone page lists the modules', () =>
      document.querySelector('[data-testid="module-gpio"]') !== null);
    const wide = await phone.evaluate(() => document.documentElement.scrollWidth);
    if (wide > 390) throw new Error(`the page is ${wide} px wide on a 390 px screen`);
    await phone.screenshot({ path: path.join(BUILD, 'test-output', 'web-phone.png') });
    await phone.close();
  });

  await step('no script error in the page', async () => {
    if (pageErrors.length) throw new Error(pageErrors.join('\n'));
  });

  // With the page still open on its streams, as a person would leave it.
  await step('the demo stops cleanly: every process exits 0, no sanitizer report', async () => {
    await stopDemo();
    const ends = [...demoLog.matchAll(/^\S+\s+launcher\s+\| (\S+) \(pid \d+\) ended: (.*)$/gm)];
    const unclean = ends.filter((m) => m[2] !== 'exit code 0').map((m) => `${m[1]}: ${m[2]}`);
    if (unclean.length) throw new Error(`not a clean end: ${unclean.join('; ')}`);
    for (const name of ['broker', ...MODULES])
      if (!ends.some((m) => m[1] === name)) throw new Error(`the log does not say that ${name} ended`);
    const reports = demoLog.match(/^.*(AddressSanitizer|LeakSanitizer|runtime error:).*$/gm);
    if (reports) throw new Error(reports.slice(0, 5).join('\n'));
    if (demo.exitCode_ !== 0) throw new Error(`lc-launch ended with ${demo.signal_ || `exit code ${demo.exitCode_}`}`);
  });
}

async function cleanup() {
  if (context) await context.close().catch(() => {});
  context = null;
  await stopDemo();
}

let finished = false;
async function finish(extra) {
  if (finished) return;
  finished = true;
  if (extra) {
    results.push({ name: 'the test ran to its end', ok: false });
    log(`not ok ${results.length} - the test ran to its end`);
    log(`  ${String(extra.stack || extra).split('\n').slice(0, 6).join('\n  ')}`);
  }
  await cleanup();
  const failed = results.filter((r) => !r.ok).length;
  if (failed) {
    log(`# the demo's log (${path.join(tmp, 'demo.log')}):`);
    process.stdout.write(demoLog.replace(/^/gm, '#   '));
    log('');
  } else {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  log(`browser: ${results.length - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

// Whatever happens, nothing is left running: a deadline, signals, and a last kill at exit.
setTimeout(() => finish(new Error(`the whole test took longer than ${TOTAL_MS / 1000} s`)),
           TOTAL_MS).unref();
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'])
  process.on(sig, () => finish(new Error(`stopped by ${sig}`)));
process.on('exit', () => {
  if (demo && demo.exitCode_ === undefined) {
    try { process.kill(-demo.pid, 'SIGKILL'); } catch (_) { /* gone */ }
  }
});

log(`# lc-web in ${CHROMIUM} against config/demo.yaml (build ${BUILD})`);
run().then(() => finish(), (err) => finish(err));
