// e2e.mjs drives tarport's web UI in Debian chromium with npm playwright-core,
// against a running local server (TestWebUI and TestScreenshots start it and
// this script; run them, not this file). It only uses the selector contract
// of issue #5 and writes $TARPORT_WEB_OUT/result.json, which the Go test
// reads to check the tars the browser saved.
//
// Environment: TARPORT_WEB_URL (the server), TARPORT_WEB_OUT (a directory),
// TARPORT_WEB_REPO, TARPORT_WEB_TAG (a multi-platform tag), TARPORT_WEB_OTHER_TAG
// (an amd64-only tag), TARPORT_WEB_BROKEN_REPO (an image whose :1 has a
// layer the registry always serves spoiled), TARPORT_WEB_PLATFORMS (the tag's platforms, comma
// separated), TARPORT_WEB_PRIVATE_REF, _USER, _PASS (a private image and
// its registry login), PLAYWRIGHT_CORE (the package directory), CHROMIUM
// (the browser), SCREENSHOTS=<dir> to write screenshots instead of testing,
// and GUARD_TOKEN=<token> to test the guards (a server with that access token
// and a client quota smaller than the demo image) instead.
import { createRequire } from 'node:module';
import fs from 'node:fs/promises';
import path from 'node:path';

const env = process.env;
const BASE = env.TARPORT_WEB_URL.replace(/\/$/, '');
const OUT = env.TARPORT_WEB_OUT;
const REPO = env.TARPORT_WEB_REPO;
const TAG = env.TARPORT_WEB_TAG;
const OTHER_TAG = env.TARPORT_WEB_OTHER_TAG;
const BROKEN_REPO = env.TARPORT_WEB_BROKEN_REPO;
const PLATFORMS = env.TARPORT_WEB_PLATFORMS.split(',');
const SHOTS = env.SCREENSHOTS || '';
const PRIVATE_REF = env.TARPORT_WEB_PRIVATE_REF || '';
const PRIVATE_USER = env.TARPORT_WEB_PRIVATE_USER || '';
const PRIVATE_PASS = env.TARPORT_WEB_PRIVATE_PASS || '';
const GUARD_TOKEN = env.GUARD_TOKEN || '';

const require = createRequire(import.meta.url);
const { chromium } = require(env.PLAYWRIGHT_CORE);

const result = { ok: false, checks: [], console_errors: [], steps: [], notes: [], screenshots: [] };
let currentStep = '';
let currentPage = null;
// Set while a step provokes an HTTP error on purpose: the browser logs the
// failed fetch as a console error, which is then expected, not a fault.
let expectHTTPErrors = false;

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  result.checks.push(`${currentStep}: ${what}`);
}

async function step(name, fn) {
  const t0 = Date.now();
  currentStep = name;
  try {
    await fn();
  } finally {
    result.steps.push({ name, ms: Date.now() - t0 });
  }
}

// Names a repository can carry in data-name: the contract says "<name>",
// which for an official image may be written short or long.
const names = [REPO, `library/${REPO}`, `docker.io/library/${REPO}`];
const byName = (sel) => names.map((n) => `${sel}[data-name="${n}"]`).join(', ');
const ERROR_SEL = '[data-testid=error], [data-testid=form-error]';

async function newContext(browser, opts) {
  const ctx = await browser.newContext({ acceptDownloads: true, colorScheme: 'light', locale: 'en-US', ...opts });
  // CSP violations also show as console errors; this names the directive.
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  return ctx;
}

async function newPage(ctx, label) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(15000);
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    if (expectHTTPErrors && /^Failed to load resource: the server responded with a status of 4\d\d/.test(text)) {
      result.notes.push(`${label} ${currentStep}: expected "${text}" (${msg.location().url})`);
      return;
    }
    result.console_errors.push(`${label} ${currentStep}: ${text} (${msg.location().url})`);
  });
  page.on('pageerror', (err) => result.console_errors.push(`${label} ${currentStep}: uncaught ${err.message}`));
  currentPage = page;
  return page;
}

async function go(page, hash) {
  await page.goto(`${BASE}/${hash}`);
  await page.waitForLoadState('domcontentloaded');
}

async function apiJSON(page, p) {
  const r = await page.request.get(BASE + p);
  return { status: r.status(), body: await r.json() };
}

// The ids of the download cards on the page.
async function cardIDs(page) {
  return page.$$eval('section#downloads [data-testid=download][data-id]', (els) => els.map((e) => e.dataset.id));
}

// Waits for a download card not among before and returns its id.
async function newCardID(page, before) {
  const h = await page.waitForFunction((before) => {
    for (const el of document.querySelectorAll('section#downloads [data-testid=download][data-id]')) {
      if (el.dataset.id && !before.includes(el.dataset.id)) return el.dataset.id;
    }
    return null;
  }, before, { timeout: 30000 });
  return h.jsonValue();
}

const card = (page, id) => page.locator(`section#downloads [data-testid=download][data-id="${id}"]`);

// Follows a card to ready, sampling its status and progress bar.
async function watchToReady(page, id, timeout = 120000) {
  const c = card(page, id);
  const statuses = [];
  const samples = [];
  const speeds = [];
  const deadline = Date.now() + timeout;
  for (;;) {
    const st = await c.getAttribute('data-status');
    if (statuses[statuses.length - 1] !== st) statuses.push(st);
    const pv = await c.locator('progress[data-testid=progress]').evaluate((p) => [p.value, p.max]).catch(() => null);
    if (pv && (samples.length === 0 || samples[samples.length - 1][0] !== pv[0])) samples.push(pv);
    if (st === 'fetching') {
      const sp = (await c.locator('[data-testid=speed]').innerText().catch(() => '')).trim();
      if (sp && speeds[speeds.length - 1] !== sp) speeds.push(sp);
    }
    if (st === 'ready') break;
    if (st === 'failed') throw new Error(`download ${id} failed: ${await c.innerText()}`);
    if (Date.now() > deadline) throw new Error(`download ${id} still ${st} after ${timeout} ms`);
    await page.waitForTimeout(40);
  }
  return { statuses, samples, speeds };
}

// Checks that a download was watched moving: the registry behind the
// server is slowed down so that it takes a few of the UI's polls.
function checkMoved(label, { statuses, samples, speeds }) {
  result.notes.push(`${label}: statuses ${statuses.join(' > ')}; progress ${samples.map((s) => `${s[0]}/${s[1]}`).join(' ')}; speed ${speeds.join(' | ')}`);
  check(statuses[statuses.length - 1] === 'ready' && statuses.includes('fetching'), `status went through fetching to ready (${statuses.join(' > ')})`);
  check(samples.some(([v, m]) => v > 0 && v < m), 'the progress bar showed a step between 0 and 100%');
  check(samples.every((s, i) => i === 0 || s[0] >= samples[i - 1][0]), 'progress never went back');
  check(speeds.some((sp) => /\d/.test(sp)), `a speed was shown while fetching (${speeds.join(' | ')})`);
}

// Checks a ready card against the API's job and returns the job.
async function checkReadyCard(page, id) {
  const c = card(page, id);
  const { status, body: job } = await apiJSON(page, `/api/downloads/${id}`);
  check(status === 200 && job.status === 'ready', `GET /api/downloads/${id} is ready`);
  const [value, max, hasMax] = await c.locator('progress[data-testid=progress]').evaluate((p) => [p.value, p.max, p.hasAttribute('max')]);
  check(hasMax && max === job.total_bytes, `progress max ${max} == total_bytes ${job.total_bytes}`);
  check(value === max, `progress value ${value} == max ${max} (100%)`);
  check((await c.locator('[data-testid=bytes]').innerText()).trim() !== '', 'bytes shown');
  check(await c.locator('[data-testid=speed]').count() === 1, 'speed element present');
  const href = await c.locator('a[data-testid=link]').getAttribute('href');
  check(!!href, `link shown (${href})`);
  const abs = new URL(href, page.url()).href;
  const r = await page.request.get(abs);
  const bytes = (await r.body()).length;
  check(r.status() === 200 && bytes === job.total_bytes, `the link answers 200 with ${bytes} == ${job.total_bytes} bytes`);
  const curl = await c.locator('code[data-testid=curl]').innerText();
  check(/\bcurl\b/.test(curl), `curl command shown: ${curl}`);
  const load = await c.locator('code[data-testid=docker-load]').innerText();
  check(/docker load/.test(load), `docker load command shown: ${load}`);
  return job;
}

// Fails with the elements that stick out when the page is wider than width.
async function checkNoOverflow(page, width, where) {
  const got = await page.evaluate((width) => {
    const sw = document.documentElement.scrollWidth;
    const wide = [];
    if (sw > width) {
      for (const el of document.querySelectorAll('body *')) {
        const r = el.getBoundingClientRect();
        if (r.right > width + 0.5 && r.width > 0) {
          wide.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : ''}${el.dataset.testid ? `[data-testid=${el.dataset.testid}]` : ''} right=${Math.round(r.right)}`);
          if (wide.length >= 8) break;
        }
      }
    }
    return { sw, wide };
  }, width);
  check(got.sw <= width, `${where}: no horizontal overflow at ${width}px (scrollWidth ${got.sw}${got.wide.length ? '; wide: ' + got.wide.join(', ') : ''})`);
}

async function selectValues(page, sel) {
  return page.$$eval(`${sel} option`, (os) => os.map((o) => o.value));
}

// Waits until a select's option values equal want (in any order).
async function waitOptions(page, sel, want) {
  const key = [...want].sort().join(',');
  try {
    await page.waitForFunction(([sel, key]) => {
      const s = document.querySelector(sel);
      return s && [...s.options].map((o) => o.value).filter((v) => v).sort().join(',') === key;
    }, [sel, key], { timeout: 15000 });
  } catch {
    check(false, `${sel} options are [${key}], got [${await selectValues(page, sel)}]`);
  }
  check(true, `${sel} options are [${key}]`);
}

// Waits for an error element showing text (whitespace folded).
async function waitErrorText(page, text, what) {
  const norm = (s) => s.replace(/\s+/g, ' ').trim();
  try {
    await page.waitForFunction(([sel, text]) => {
      for (const el of document.querySelectorAll(sel)) {
        if (el.offsetParent !== null && el.innerText.replace(/\s+/g, ' ').includes(text)) return true;
      }
      return false;
    }, [ERROR_SEL, norm(text)], { timeout: 15000 });
  } catch {
    const shown = await page.$$eval(ERROR_SEL, (els) => els.map((e) => `${e.dataset.testid}${e.offsetParent === null ? '(hidden)' : ''}: ${e.innerText}`));
    check(false, `${what}: the server's message "${text}" is shown; error elements: ${JSON.stringify(shown)}`);
  }
  check(true, `${what}: the server's message is shown: "${text}"`);
}

// Submits the quick form and returns the server's answer to its POST.
async function quickSubmit(page, image, platform, { username = '', password = '' } = {}) {
  await page.locator('form#quick').waitFor();
  await page.fill('#quick-image', image);
  await page.selectOption('#quick-platform', platform);
  await page.fill('#quick-username', username);
  await page.fill('#quick-password', password);
  const answer = page.waitForResponse((r) => /\/api\/download/.test(r.url()) && r.request().method() === 'POST');
  await page.click('#quick-submit');
  const r = await answer;
  return { status: r.status(), body: await r.json().catch(() => null) };
}

async function e2e(browser) {
  const ctx = await newContext(browser, { viewport: { width: 1280, height: 800 } });
  const page = await newPage(ctx, 'desktop');

  await step('home lists popular', async () => {
    await go(page, '#/');
    await page.locator('ul#popular > li[data-testid=popular-item]').first().waitFor();
    const n = await page.locator('ul#popular > li[data-testid=popular-item]').count();
    const first = page.locator('ul#popular > li[data-testid=popular-item]').first();
    check(n >= 1, `${n} popular items`);
    check(!!(await first.getAttribute('data-name')), 'a popular item has data-name');
    check(await first.locator('a[data-testid=popular-details]').count() === 1, 'a popular item links to its details');
    check(await first.locator('button[data-testid=popular-download]').count() === 1, 'a popular item has a download button');
    const { body } = await apiJSON(page, '/api/popular?limit=100');
    const apiNames = body.results.map((r) => r.name);
    const shown = await page.$$eval('ul#popular > li[data-testid=popular-item]', (els) => els.map((e) => e.dataset.name));
    check(shown.every((s) => apiNames.includes(s) || apiNames.includes(s.replace(/^(docker\.io\/)?library\//, ''))),
      `popular items are the API's (${shown.slice(0, 5).join(', ')}...)`);
  });

  await step('search by keyboard', async () => {
    await page.click('input#search-q');
    await page.keyboard.type(REPO);
    await page.keyboard.press('Enter');
    await page.waitForFunction((q) => location.hash.startsWith('#/search?') && new URLSearchParams(location.hash.slice('#/search?'.length)).get('q') === q, REPO);
    check(true, `the hash is #/search?q=${REPO}`);
    await page.locator('#results-status[data-state=ok]').waitFor({ state: 'attached' });
    const item = page.locator(byName('ul#results > li[data-testid=result]'));
    await item.first().waitFor();
    check(await item.count() === 1, `results list ${REPO} once`);
    check(await item.locator('[data-testid=official]').count() >= 1, 'marked official');
    const next = page.locator('button#next-page');
    check(await next.count() === 0 || !(await next.isVisible()) || await next.isDisabled(), 'one page of results: no next page');
  });

  await step('details', async () => {
    await page.locator(byName('ul#results > li[data-testid=result]')).first().locator('a[data-testid=result-link]').click();
    await page.waitForFunction(() => location.hash.startsWith('#/image/'));
    await page.locator(byName('section#details')).waitFor();
    check(true, `details of ${REPO} at ${await page.evaluate(() => location.hash)}`);
    await page.waitForFunction(([a, b]) => {
      const s = document.querySelector('select#tag-select');
      const v = s ? [...s.options].map((o) => o.value) : [];
      return v.includes(a) && v.includes(b);
    }, [TAG, OTHER_TAG]);
    check(true, `tags ${OTHER_TAG} and ${TAG} offered`);
    await page.selectOption('select#tag-select', OTHER_TAG);
    await waitOptions(page, 'select#platform-select', ['linux/amd64']);
    await page.selectOption('select#tag-select', TAG);
    await waitOptions(page, 'select#platform-select', PLATFORMS);
    await page.selectOption('select#platform-select', 'linux/arm64');
    const size = (await page.locator('[data-testid=size]').first().innerText()).trim();
    check(/\d/.test(size), `size shown: ${size}`);
  });

  await step('download to ready', async () => {
    const before = await cardIDs(page);
    const download = page.waitForEvent('download', { timeout: 120000 });
    const post = page.waitForResponse((r) => /\/api\/download/.test(r.url()) && r.request().method() === 'POST');
    await page.click('button#details-download');
    const r = await post;
    const posted = await r.json();
    check(r.status() === 200 || r.status() === 202, `POST answered ${r.status()}`);
    check(posted.platform === 'linux/arm64' && posted.image.includes(`${REPO}:${TAG}`), `the UI asked for ${posted.image} ${posted.platform}`);
    check(/\/api\/streams\//.test(posted.stream_url || ''), `a new job's answer has a stream link (${posted.stream_url})`);
    const id = await newCardID(page, before);
    check(id === posted.id, `a card for job ${id}`);
    await card(page, id).scrollIntoViewIfNeeded();
    checkMoved('desktop', await watchToReady(page, id));
    const job = await checkReadyCard(page, id);

    await card(page, id).locator('button[data-testid=layers-toggle]').click();
    const layers = card(page, id).locator('ul[data-testid=layers]');
    await layers.waitFor({ state: 'visible' });
    const li = await layers.locator('li').count();
    check(li === job.layers.length, `layers list shows ${li} of ${job.layers.length} layers`);

    const d = await download;
    // Started from the stream link, which a job has only while it is
    // built: the file was on its way before the job was ready.
    check(d.url().includes('/api/streams/'), `the browser saved the tar as it was built (${d.url()})`);
    const file = path.join(OUT, 'desktop.tar');
    await d.saveAs(file);
    check((await d.failure()) === null, `browser download ${d.suggestedFilename()} saved`);
    check(d.suggestedFilename().endsWith('.tar'), `the download is named ${d.suggestedFilename()}`);
    result.download = file;
    result.job_id = id;
    result.platform = job.platform;
  });

  await step('error: unknown image', async () => {
    await go(page, '#/');
    expectHTTPErrors = true;
    try {
      const ans = await quickSubmit(page, `library/${REPO}-does-not-exist:1.0`, 'linux/amd64');
      check(ans.status === 404 && ans.body?.error?.message, `the server answered ${ans.status} ${ans.body?.error?.code}`);
      await waitErrorText(page, ans.body.error.message, 'unknown image');
    } finally {
      expectHTTPErrors = false;
    }
  });

  await step('error: missing platform', async () => {
    const opts = (await selectValues(page, '#quick-platform')).filter((v) => v && !PLATFORMS.includes(v));
    const missing = opts.includes('linux/s390x') ? 'linux/s390x' : opts[0];
    check(!!missing, `#quick-platform offers a platform the image lacks (${missing})`);
    expectHTTPErrors = true;
    try {
      const ans = await quickSubmit(page, `${REPO}:${TAG}`, missing);
      const msg = ans.body?.error?.message || '';
      check(ans.status === 404, `the server answered ${ans.status} ${ans.body?.error?.code}`);
      check(PLATFORMS.every((p) => msg.includes(p)), `the server's message lists ${PLATFORMS}: ${msg}`);
      await waitErrorText(page, msg, 'missing platform');
    } finally {
      expectHTTPErrors = false;
    }
  });

  await step('private image: link with the credentials, asked again after a reload', async () => {
    if (!PRIVATE_REF) throw new Error('TARPORT_WEB_PRIVATE_REF is not set');
    await go(page, '#/');
    const before = await cardIDs(page);
    const download = page.waitForEvent('download', { timeout: 120000 });
    // Typing a private reference looks its details up anonymously: a 401.
    expectHTTPErrors = true;
    const ans = await quickSubmit(page, PRIVATE_REF, 'linux/amd64', { username: PRIVATE_USER, password: PRIVATE_PASS });
    expectHTTPErrors = false;
    check(ans.status === 200 || ans.status === 202, `private download accepted (${ans.status})`);
    const id = await newCardID(page, before);
    await watchToReady(page, id);
    // The server signs a private job's link only with the registry's yes:
    // the page asked with the credentials it keeps in memory for this job.
    const href = await card(page, id).locator('a[data-testid=link]').getAttribute('href');
    check(!!href && !href.includes(id), `private link shown, without the job id (${href})`);
    const d = await download;
    check((await d.failure()) === null, `private download ${d.suggestedFilename()} saved`);
    const stored = await page.evaluate(() => JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage }));
    check(!stored.includes(PRIVATE_PASS), 'the password is in neither sessionStorage nor localStorage');
    const anon = await page.request.get(`${BASE}/api/downloads/${id}`);
    check(anon.status() === 401, `the job's status without credentials is ${anon.status()}`);
    // After a reload the credentials are gone: the entry says so and offers to enter them.
    expectHTTPErrors = true;
    try {
      await page.reload();
      await card(page, id).locator('[data-testid=error]').waitFor({ state: 'visible' });
      const msg = await card(page, id).locator('[data-testid=error]').innerText();
      check(/private/i.test(msg), `after a reload the entry says why there is no link: "${msg}"`);
      check(await card(page, id).locator('.dl-actions button').count() === 1, 'and offers to enter the credentials');
    } finally {
      expectHTTPErrors = false;
    }
  });

  await step('language and theme', async () => {
    await go(page, '#/');
    await page.locator('ul#popular > li[data-testid=popular-item]').first().waitFor();
    // The language menu names 中文 in any language: count Han characters.
    const han = () => page.evaluate(() => (document.body.innerText.match(/[\u4e00-\u9fff]/g) || []).length);
    const enHan = await han();
    await page.selectOption('select#lang', 'zh');
    await page.waitForFunction(() => document.documentElement.lang.toLowerCase().startsWith('zh'));
    check(true, '<html lang> is zh');
    await page.waitForFunction((n) => (document.body.innerText.match(/[\u4e00-\u9fff]/g) || []).length > n + 20, enHan);
    check(true, `visible text changed to Chinese (${enHan} -> ${await han()} Han characters)`);
    const placeholder = await page.getAttribute('input#search-q', 'placeholder');
    if (placeholder && !/[\u4e00-\u9fff]/.test(placeholder)) result.notes.push(`zh: the search placeholder stays "${placeholder}"`);
    await page.selectOption('select#lang', 'en');
    await page.waitForFunction(() => document.documentElement.lang.toLowerCase().startsWith('en'));
    await page.waitForFunction((n) => (document.body.innerText.match(/[\u4e00-\u9fff]/g) || []).length <= n, enHan);
    check(true, 'back to English');

    const theme0 = await page.getAttribute('html', 'data-theme');
    check(theme0 === 'light' || theme0 === 'dark', `<html data-theme> is ${theme0}`);
    await page.click('button#theme');
    const flipped = theme0 === 'light' ? 'dark' : 'light';
    await page.waitForFunction((t) => document.documentElement.dataset.theme === t, flipped);
    check(true, `the theme button switches to ${flipped}`);
    await page.click('button#theme');
    await page.waitForFunction((t) => document.documentElement.dataset.theme === t, theme0);
    check(true, `and back to ${theme0}`);
  });
  await ctx.close();

  const phone = await newContext(browser, { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const pp = await newPage(phone, 'phone');
  await step('phone pages fit', async () => {
    await go(pp, '#/');
    await pp.locator('ul#popular > li[data-testid=popular-item]').first().waitFor();
    await checkNoOverflow(pp, 360, 'home');
    await go(pp, `#/search?q=${encodeURIComponent(REPO)}&page=1`);
    await pp.locator(byName('ul#results > li[data-testid=result]')).first().waitFor();
    check(true, 'the #/search?q= route lists the repo');
    await checkNoOverflow(pp, 360, 'search');
    await pp.locator(byName('ul#results > li[data-testid=result]')).first().locator('a[data-testid=result-link]').tap();
    await pp.locator(byName('section#details')).waitFor();
    await checkNoOverflow(pp, 360, 'details');

    // The tag's arm64 tar is ready already (the desktop made it): the card
    // is ready at once. Where does it show on a phone?
    await pp.selectOption('select#tag-select', TAG);
    await pp.waitForFunction(() => [...(document.querySelector('select#platform-select')?.options || [])].some((o) => o.value === 'linux/arm64'));
    await pp.selectOption('select#platform-select', 'linux/arm64');
    const before = await cardIDs(pp);
    const download = pp.waitForEvent('download', { timeout: 60000 });
    await pp.locator('button#details-download').tap();
    const id = await newCardID(pp, before);
    await download;
    check(true, `phone details download ${id} delivered`);
    await pp.waitForTimeout(500);
    const top = await card(pp, id).evaluate((el) => Math.round(el.getBoundingClientRect().top));
    if (top > 740 || top < 0) result.notes.push(`phone: after "download" on the details page the new download card is at y=${top}, outside the 740px viewport (not scrolled to, no other sign on screen checked)`);
    await checkNoOverflow(pp, 360, 'details with a download');

    await go(pp, '#/search?q=zzz-no-such-repo&page=1');
    await pp.locator('#results-status[data-state=empty]').waitFor({ state: 'attached' });
    check(await pp.locator('ul#results > li[data-testid=result]').count() === 0, 'a search without matches shows the empty state');
  });
  await step('phone quick download', async () => {
    await go(pp, '#/');
    const before = await cardIDs(pp);
    const download = pp.waitForEvent('download', { timeout: 120000 });
    const ans = await quickSubmit(pp, `${REPO}:${TAG}`, 'linux/amd64');
    check(ans.status === 200 || ans.status === 202, `quick download accepted (${ans.status})`);
    const id = await newCardID(pp, before);
    checkMoved('phone', await watchToReady(pp, id));
    const job = await checkReadyCard(pp, id);
    await checkNoOverflow(pp, 360, 'downloads');
    const d = await download;
    const file = path.join(OUT, 'phone.tar');
    await d.saveAs(file);
    check((await d.failure()) === null, `phone browser download ${d.suggestedFilename()} saved`);
    result.phone_download = file;
    result.phone_job_id = id;
    result.phone_platform = job.platform;
  });
  await phone.close();
}

// guards: the access token is asked for once, a wrong one again, the right
// one is remembered and shown in the curl command; a download past the
// client's daily quota shows the server's message, which says when.
async function guards(browser) {
  const ctx = await newContext(browser, { viewport: { width: 1280, height: 800 } });
  const page = await newPage(ctx, 'guards');
  const dialog = page.locator('dialog#token-dialog');
  expectHTTPErrors = true;
  try {
    await step('token asked for', async () => {
      await go(page, '#/');
      await dialog.waitFor({ state: 'visible' });
      check(await dialog.evaluate((d) => d.open), 'the token dialog opens when the API refuses without a token');
      await page.fill('#token-input', 'not-the-token');
      await page.click('#token-save');
      await page.waitForFunction(() => document.querySelector('dialog#token-dialog').open, null, { timeout: 15000 });
      check(true, 'a wrong token is asked for again');
      await page.fill('#token-input', GUARD_TOKEN);
      await page.click('#token-save');
      await page.locator('ul#popular > li[data-testid=popular-item]').first().waitFor();
      check(!(await dialog.evaluate((d) => d.open)), 'the dialog closes and the page loads with the right token');
    });
    await step('token remembered', async () => {
      await page.reload();
      await page.locator('ul#popular > li[data-testid=popular-item]').first().waitFor();
      check(!(await dialog.evaluate((d) => d.open)), 'after a reload the token is not asked for again');
      await go(page, `#/image/${REPO}`);
      await page.locator('.pick-curl code').waitFor();
      await page.waitForFunction(() => /api\/pull\//.test(document.querySelector('.pick-curl code')?.innerText || ''));
      const curl = await page.locator('.pick-curl code').innerText();
      check(curl.includes(`X-Tarport-Token: ${GUARD_TOKEN}`), `the curl command carries the token: ${curl}`);
    });
    await step('quota refusal shown', async () => {
      await go(page, '#/');
      const ans = await quickSubmit(page, `${REPO}:${TAG}`, 'linux/amd64');
      check(ans.status === 429 && ans.body?.error?.code === 'quota_exceeded', `a download past the quota is refused (${ans.status} ${ans.body?.error?.code})`);
      check(/daily quota/.test(ans.body.error.message), `the refusal says why: ${ans.body.error.message}`);
      await waitErrorText(page, ans.body.error.message, 'quota');
    });
  } finally {
    expectHTTPErrors = false;
  }
  await ctx.close();
}

// The issue-12 follow-ups, each on a page of its own in one context.
async function followups(browser) {
  const ctx = await newContext(browser, { viewport: { width: 1280, height: 800 } });

  await step('a cut stream is named', async () => {
    const page = await newPage(ctx, 'cut');
    await go(page, '#/');
    const before = await cardIDs(page);
    const download = page.waitForEvent('download', { timeout: 60000 });
    expectHTTPErrors = true; // typing the name looks up its details
    let ans;
    try {
      ans = await quickSubmit(page, `${BROKEN_REPO}:1`, 'linux/amd64');
    } finally {
      expectHTTPErrors = false;
    }
    check(ans.status === 202 && !!ans.body?.stream_url, `the spoiled image's job streams (${ans.status})`);
    const d = await download;
    check(d.url().includes('/api/streams/'), `its file was started at once (${d.url()})`);
    const failure = await d.failure();
    check(failure !== null, `the browser's download of it failed (${failure}): the server cut it`);
    const id = await newCardID(page, before);
    const c = card(page, id);
    await c.locator('[data-testid=cut]').waitFor({ state: 'visible', timeout: 90000 });
    check(await c.getAttribute('data-status') === 'failed', 'the entry failed');
    const cut = await c.locator('[data-testid=cut]').innerText();
    check(cut.includes(d.suggestedFilename()) && /incomplete/.test(cut), `the entry says the saved file is incomplete: "${cut}"`);
    check((await c.locator('[data-testid=error]').innerText()).length > 0, 'and why the job failed');
    await page.close();
  });

  await step('Back stays on the site', async () => {
    const page = await newPage(ctx, 'back');
    // Opened on a details page, then a search, then the browser's Back.
    await page.goto(`${BASE}/#/image/${REPO}`);
    await page.locator('section#details').waitFor();
    await page.fill('input#search-q', REPO);
    await page.press('input#search-q', 'Enter');
    await page.locator('ul#results > li[data-testid=result]').first().waitFor();
    await page.goBack();
    await page.locator('section#details').waitFor();
    await page.click('a.back-link');
    await page.waitForFunction(() => document.body.dataset.route === 'home');
    check(page.url().startsWith(BASE), `the page's Back on the first page opened goes home, not off the site (${page.url()})`);
    // From a page reached by a link, the page's Back is the browser's.
    await page.locator('ul#popular a[data-testid=popular-details]').first().click();
    await page.locator('section#details').waitFor();
    const depth = await page.evaluate(() => history.length);
    await page.click('a.back-link');
    await page.waitForFunction(() => document.body.dataset.route === 'home');
    check(page.url().startsWith(BASE) && await page.evaluate(() => history.length) === depth, `from a linked page Back went back (${page.url()})`);
    await page.close();
  });

  await step('a ready link is signed afresh before it expires', async () => {
    const page = await newPage(ctx, 'renew');
    await page.clock.install();
    await go(page, '#/');
    const before = await cardIDs(page);
    const download = page.waitForEvent('download', { timeout: 60000 });
    await quickSubmit(page, `${REPO}:${OTHER_TAG}`, 'linux/amd64');
    const id = await newCardID(page, before);
    await watchToReady(page, id);
    await download;
    const { body: job } = await apiJSON(page, `/api/downloads/${id}`);
    const left = Date.parse(job.expires_at) - Date.now();
    check(left > 60000, `the link is valid for ${Math.round(left / 1000)} s`);
    const reread = page.waitForRequest((r) => r.url().endsWith(`/api/downloads/${id}`), { timeout: 15000 });
    await page.clock.fastForward(left - 30000);
    await reread;
    check(true, 'the page read the job again before its link expired');
    await page.waitForTimeout(300);
    check(await card(page, id).getAttribute('data-status') === 'ready' && await card(page, id).locator('a[data-testid=link]').count() === 1, 'and still shows it ready with its link');
    await page.close();
  });

  await step('a job is saved once across tabs', async () => {
    // Two tabs holding the same job, as a duplicated tab does (it copies
    // sessionStorage): the job turns ready in both; one file is saved.
    const ans = await ctx.request.post(`${BASE}/api/downloads`, { data: { image: `${REPO}:${TAG}`, platform: 'linux/amd64' } });
    const job = await ans.json();
    check(ans.status() === 200 || ans.status() === 202, `job ${job.id} started (${ans.status()})`);
    const held = JSON.stringify([{ id: job.id, image: job.image, platform: job.platform, status: 'queued', auto: false }]);
    const saves = [];
    const tabs = [];
    for (const label of ['tab', 'duplicate']) {
      const tab = await newPage(ctx, label);
      await tab.addInitScript((v) => {
        if (!sessionStorage.getItem('tarport.downloads')) sessionStorage.setItem('tarport.downloads', v);
      }, held);
      tab.on('download', (d) => saves.push(`${label}: ${d.suggestedFilename()}`));
      await go(tab, '#/');
      tabs.push(tab);
    }
    for (const tab of tabs) await card(tab, job.id).and(tab.locator('[data-status=ready]')).waitFor({ timeout: 90000 });
    await tabs[0].waitForTimeout(2000);
    check(saves.length === 1, `the file was saved once, not by every tab (${saves.join('; ') || 'none'})`);
    for (const tab of tabs) await tab.close();
  });

  await step('an unknown status is not polled forever', async () => {
    const page = await newPage(ctx, 'unknown');
    await page.clock.install();
    const id = 'job-in-an-unknown-state';
    let reads = 0;
    await page.route(`**/api/downloads/${id}`, (r) => {
      reads++;
      return r.fulfill({ json: { id, image: `${REPO}:${TAG}`, platform: 'linux/amd64', status: 'paused', total_bytes: 0, done_bytes: 0, layers: [] } });
    });
    await page.addInitScript((v) => sessionStorage.setItem('tarport.downloads', v),
      JSON.stringify([{ id, image: `${REPO}:${TAG}`, platform: 'linux/amd64', status: 'fetching', auto: true }]));
    await go(page, '#/');
    const err = card(page, id).locator('[data-testid=error]');
    for (let i = 0; i < 20 && !(await err.isVisible()); i++) {
      await page.clock.fastForward(10000);
      await page.waitForTimeout(100);
    }
    const msg = await err.innerText();
    check(/paused/.test(msg), `after ${reads} reads the entry says the status is unknown: "${msg}"`);
    const n = reads;
    await page.clock.fastForward(120000);
    await page.waitForTimeout(300);
    check(reads === n, `and reads it no more (${reads - n} more)`);
    await page.close();
  });

  await step('the API cache stays bounded', async () => {
    const page = await newPage(ctx, 'cache');
    await page.route('**/api/search?*', (r) => r.fulfill({ json: { results: [], count: 0, page: 1, page_size: 25 } }));
    await go(page, '#/');
    const size = await page.evaluate(async () => {
      const api = await import('/assets/api.js');
      for (let i = 0; i < 250; i++) await api.search(`q${i}`);
      return api.cacheSize();
    });
    check(size > 0 && size <= 100, `250 searches leave ${size} answers cached`);
    await page.close();
  });
  await ctx.close();
}

// The basket: images from an image's page, the quick form and a Compose
// file, one download of them all as one tar, kept across a reload.
async function bundles(browser) {
  const ctx = await newContext(browser, { viewport: { width: 1280, height: 800 } });
  const page = await newPage(ctx, 'basket');
  const items = () => page.$$eval('ul#basket-list > li[data-testid=basket-item]', (els) => els.map((e) => e.dataset.ref));

  await step('basket gathers images', async () => {
    await go(page, `#/search?q=${encodeURIComponent(REPO)}`);
    const result = page.locator(byName('ul#results > li[data-testid=result]')).first();
    await result.waitFor();
    await result.locator('button[data-testid=add-basket]').click();
    await page.waitForFunction(() => document.querySelectorAll('ul#basket-list > li').length === 1);
    check(/:latest$/.test((await items())[0]), `a search result adds its latest tag (${await items()})`);
    await page.locator('ul#basket-list > li button[data-testid=basket-remove]').first().click();
    await page.waitForFunction(() => document.querySelectorAll('ul#basket-list > li').length === 0);
    check(await page.locator('#basket-empty').isVisible(), 'removed: the basket says it is empty');

    await result.locator('a[data-testid=result-link]').click();
    await page.locator(byName('section#details')).waitFor();
    await page.waitForFunction((t) => [...(document.querySelector('select#tag-select')?.options || [])].some((o) => o.value === t), OTHER_TAG);
    await page.selectOption('select#tag-select', OTHER_TAG);
    await page.click('button[data-testid=details-add]');
    await page.click('button[data-testid=details-add]'); // twice: still once
    await page.fill('#quick-image', `${REPO}:${TAG}`);
    await page.click('#quick-add');
    await page.waitForFunction(() => document.querySelectorAll('ul#basket-list > li').length === 2);
    const refs = await items();
    check(refs.length === 2 && refs[0].endsWith(`:${OTHER_TAG}`) && refs[1].endsWith(`:${TAG}`), `the details page and the quick form add theirs, once each: ${refs}`);
    check(await page.inputValue('#quick-image') === '', 'the quick form is cleared once its image is in the basket');
    await page.waitForFunction(() => /\d/.test(document.querySelector('#basket-total')?.textContent || ''));
    check(true, `the total is shown: "${await page.innerText('#basket-total')}"`);
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll('ul#basket-list > li').length === 2);
    check(true, 'the basket survives a reload');
  });

  await step('basket downloads one tar', async () => {
    const before = await cardIDs(page);
    const download = page.waitForEvent('download', { timeout: 120000 });
    await page.click('button#basket-download');
    const id = await newCardID(page, before);
    await watchToReady(page, id);
    const d = await download;
    check(/^bundle_2-images_/.test(d.suggestedFilename()), `one file for both images: ${d.suggestedFilename()}`);
    const { body } = await apiJSON(page, `/api/downloads/${id}`);
    check(body.status === 'ready' && body.images?.length === 2, `the job holds 2 images (${body.images?.length})`);
    const rows = card(page, id).locator('[data-testid=images] > li[data-testid=image]');
    check(await rows.count() === 2, 'the entry shows each image with its progress');
  });

  await step('compose file', async () => {
    await page.click('details#compose > summary');
    await page.fill('#compose-text', 'services:\n  app:\n    build: .\n  web:\n    image: "' + REPO + ':' + TAG + '"\n  again:\n    image: "' + REPO + ':${TAG_VAR:-' + TAG + '}"\n');
    await page.click('#compose-find');
    await page.locator('ul#compose-services > li').first().waitFor();
    const services = await page.$$eval('ul#compose-services > li', (els) => els.map((e) => `${e.dataset.service}:${e.dataset.skipped}`));
    check(services.join(',') === 'again:false,app:true,web:false', `the file's services, the built one left out: ${services}`);
    check((await page.innerText('#compose-add')).includes('1'), 'one image to add (written twice)');
    await page.click('#compose-add'); // in the basket already
    check((await items()).length === 2, 'an image already in the basket is not added twice');
    // A file that names its platform decides the basket's.
    await page.fill('#compose-text', 'services:\n  web:\n    image: "' + REPO + ':' + TAG + '"\n    platform: linux/arm64/v8\n');
    await page.click('#compose-find');
    await page.locator('#compose-platform').waitFor({ state: 'visible' });
    check((await page.innerText('#compose-platform')).includes('linux/arm64'), `the file's platform is shown: ${await page.innerText('#compose-platform')}`);
    check((await page.innerText('ul#compose-services > li[data-service=web]')).includes('linux/arm64'), 'and by its service');
    await page.click('#compose-add');
    check(await page.inputValue('#quick-platform') === 'linux/arm64', `the basket now downloads for it (${await page.inputValue('#quick-platform')})`);
    await page.selectOption('#quick-platform', 'linux/amd64');
    check((await page.innerText('#basket-total')).includes('linux/arm64'), `the quick form's platform does not move the basket off its file's: ${await page.innerText('#basket-total')}`);
    // Another file asking for another platform is refused: one tar, one platform.
    await page.fill('#compose-text', 'services:\n  other:\n    image: "' + REPO + ':' + OTHER_TAG + '"\n    platform: linux/amd64\n');
    await page.click('#compose-find');
    await page.locator('#compose-platform').waitFor({ state: 'visible' });
    const before = (await items()).length;
    await page.click('#compose-add');
    await page.locator('#compose-error').waitFor({ state: 'visible' });
    const refusal = await page.innerText('#compose-error');
    check(refusal.includes('linux/amd64') && refusal.includes('linux/arm64') && (await items()).length === before, `a file for another platform is refused, nothing added: ${refusal}`);
    expectHTTPErrors = true;
    try {
      await page.fill('#compose-text', 'services:\n  web:\n    ports: ["80:80"]\n');
      await page.click('#compose-find');
      await page.locator('#compose-error').waitFor({ state: 'visible' });
    } finally {
      expectHTTPErrors = false;
    }
    check((await page.innerText('#compose-error')).includes('"web"'), `a service with no image is named: ${await page.innerText('#compose-error')}`);
  });
  await ctx.close();
}

async function shot(page, name, settle = true) {
  if (settle) await page.waitForLoadState('networkidle').catch(() => {});
  await page.evaluate(() => document.fonts && document.fonts.ready);
  // A whole-page capture of a scrolled page draws the sticky header where
  // the window was: from the top, it is at the top.
  await page.evaluate(() => window.scrollTo(0, 0));
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  result.screenshots.push(file);
}

async function screenshots(browser) {
  // One platform each: a second download of the same image and platform
  // is ready at once (the server keeps the tar), with no progress to show.
  const sizes = [
    ['phone', 'linux/amd64', { viewport: { width: 360, height: 740 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true }],
    ['desktop', 'linux/arm64', { viewport: { width: 1280, height: 800 } }],
  ];
  for (const [label, platform, opts] of sizes) {
    const ctx = await newContext(browser, opts);
    const page = await newPage(ctx, label);
    await step(`${label} home`, async () => {
      await go(page, '#/');
      await page.locator('ul#popular > li[data-testid=popular-item]').first().waitFor();
      await shot(page, `home-${label}`);
    });
    await step(`${label} search`, async () => {
      await page.fill('input#search-q', 'nginx');
      await page.press('input#search-q', 'Enter');
      await page.locator('#results-status[data-state=ok]').waitFor({ state: 'attached' });
      await page.locator('ul#results > li[data-testid=result]').first().waitFor();
      await shot(page, `search-${label}`);
    });
    await step(`${label} details`, async () => {
      await go(page, `#/search?q=${encodeURIComponent(REPO)}`);
      await page.locator(byName('ul#results > li[data-testid=result]')).first().locator('a[data-testid=result-link]').click();
      await page.locator(byName('section#details')).waitFor();
      await page.waitForFunction((t) => [...(document.querySelector('select#tag-select')?.options || [])].some((o) => o.value === t), TAG);
      await page.selectOption('select#tag-select', TAG);
      await page.waitForFunction((p) => [...(document.querySelector('select#platform-select')?.options || [])].some((o) => o.value === p), platform);
      await page.selectOption('select#platform-select', platform);
      await shot(page, `details-${label}`);
    });
    await step(`${label} downloads`, async () => {
      const before = await cardIDs(page);
      const download = page.waitForEvent('download', { timeout: 120000 });
      await page.click('button#details-download');
      const id = await newCardID(page, before);
      await page.waitForFunction((id) => {
        const c = document.querySelector(`section#downloads [data-testid=download][data-id="${id}"]`);
        const p = c?.querySelector('progress[data-testid=progress]');
        return c?.dataset.status === 'fetching' && p && p.value > 0 && p.value < p.max;
      }, id);
      await card(page, id).scrollIntoViewIfNeeded();
      await shot(page, `downloads-${label}-progress`, false);
      await watchToReady(page, id);
      await download;
      const toggle = card(page, id).locator('button[data-testid=layers-toggle]');
      if (await toggle.count()) await toggle.click();
      await card(page, id).scrollIntoViewIfNeeded();
      await shot(page, `downloads-${label}`);
      const theme = async (want) => {
        for (let i = 0; i < 2 && (await page.getAttribute('html', 'data-theme')) !== want; i++) await page.click('button#theme');
      };
      await theme('dark');
      await shot(page, `downloads-${label}-dark`);
      await go(page, '#/');
      await page.locator('ul#popular > li[data-testid=popular-item]').first().waitFor();
      await theme('dark');
      await shot(page, `home-${label}-dark`);
      await theme('light');
      await page.selectOption('select#lang', 'zh');
      await page.waitForFunction(() => document.documentElement.lang.toLowerCase().startsWith('zh'));
      await shot(page, `home-${label}-zh`);
      await page.selectOption('select#lang', 'en');
    });
    await step(`${label} basket`, async () => {
      await go(page, '#/');
      await page.fill('#quick-image', `${REPO}:${OTHER_TAG}`);
      await page.click('#quick-add');
      await page.fill('#quick-image', `${REPO}:${TAG}`);
      await page.click('#quick-add');
      await page.waitForFunction(() => document.querySelectorAll('ul#basket-list > li').length >= 2);
      await page.click('details#compose > summary');
      await page.fill('#compose-text', `services:\n  app:\n    build: .\n  web:\n    image: "${REPO}:${TAG}"\n  db:\n    image: "${REPO}:${OTHER_TAG}"\n`);
      await page.click('#compose-find');
      await page.locator('ul#compose-services > li').first().waitFor();
      await page.locator('section#basket').scrollIntoViewIfNeeded();
      await shot(page, `basket-${label}`);
    });
    await step(`${label} error`, async () => {
      await go(page, '#/');
      expectHTTPErrors = true;
      try {
        const ans = await quickSubmit(page, `${REPO}:${TAG}`, 'linux/arm/v7');
        await waitErrorText(page, ans.body?.error?.message || '', 'missing platform');
      } finally {
        expectHTTPErrors = false;
      }
      await page.locator('form#quick').scrollIntoViewIfNeeded();
      await shot(page, `error-${label}`);
    });
    await ctx.close();
  }
}

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
let code = 0;
try {
  if (SHOTS) await screenshots(browser);
  else if (GUARD_TOKEN) await guards(browser);
  else {
    await e2e(browser);
    await followups(browser);
    await bundles(browser);
  }
  result.ok = result.console_errors.length === 0;
  if (!result.ok) result.failure = 'console errors or CSP violations';
} catch (err) {
  code = 1;
  result.failure = `${currentStep}: ${err.message}`;
  if (currentPage && !currentPage.isClosed()) {
    await currentPage.screenshot({ path: path.join(OUT, 'failure.png'), fullPage: true }).catch(() => {});
    const text = await currentPage.evaluate(() => `${location.href}\n\n${document.body.innerText}\n\n${document.body.outerHTML}`).catch((e) => String(e));
    await fs.writeFile(path.join(OUT, 'failure-page.txt'), text).catch(() => {});
    result.failure += `\npage ${currentPage.url()} (${path.join(OUT, 'failure.png')}), text:\n${text.slice(0, 1500)}`;
  }
} finally {
  await browser.close().catch(() => {});
}
await fs.writeFile(path.join(OUT, 'result.json'), JSON.stringify(result, null, 2));
if (result.failure) console.error(result.failure);
process.exit(code || (result.ok ? 0 : 1));
