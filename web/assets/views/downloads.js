// The downloads panel: one entry per job, polled about once a second until
// it is ready or failed, then again shortly before its link expires, so the
// link shown is always one that works. Jobs (id, image, platform; never
// credentials) are kept in sessionStorage so a reload keeps showing them.
//
// A job's file is started automatically once: where the server streams the
// tar while it is built (local; the job's answer has a stream_url) at once,
// else when the job first turns ready. Once means once per job in this
// browser, across tabs (a duplicated tab copies sessionStorage, and the
// jobs in it): the first tab to claim the job in localStorage saves it. A
// streamed file the server had to cut is named as incomplete when the job
// fails. A private job's
// credentials stay in this tab's memory (never in storage) so its own
// status reads can get the link, which the server gives a private job only
// with credentials the registry accepts again; after a reload they are
// gone, and the entry asks for them.
//
// A request the server refuses at once (4xx/5xx on POST) becomes an entry
// too, data-status="failed", data-id="local-N" (there is no job id), with the
// server's message in [data-testid=error].
import * as api from '../api.js';
import { h, icon, clear } from '../dom.js';
import { t } from '../i18n.js';
import * as fmt from '../format.js';
import { parseRef } from './quick.js';
import { imageHref, commandBox, shellQuote } from './parts.js';

const STORE_KEY = 'tarport.downloads';
const POLL_MS = 1000;
const SPEED_WINDOW_MS = 8000;
const TERMINAL = new Set(['ready', 'failed']);
const STATUSES = new Set(['queued', 'fetching', 'assembling', 'ready', 'failed']);
// Failures a plain retry cannot fix; others (rate limits, upstream trouble) get a Retry button.
const FINAL_CODES = new Set(['invalid_request', 'invalid_reference', 'invalid_platform', 'not_found',
  'too_large', 'unsupported', 'forbidden', 'blocked_address', 'method_not_allowed']);
const CREDENTIAL_CODES = new Set(['unauthorized', 'credentials_required']);
// A status this page does not know (a newer server's?) is read again a few
// times, backing off, then shown as a failure rather than polled forever.
const UNKNOWN_STATUS_LIMIT = 5;
// A ready link is read afresh this long before it expires.
const RENEW_BEFORE_MS = 60_000;

let localSeq = 0;

export class Downloads {
  /**
   * @param {object} o
   * @param {HTMLElement} o.list   where entries go (newest first)
   * @param {HTMLElement} o.empty  shown while there are none
   * @param {HTMLElement} o.clear  "Clear finished" button
   * @param {(msg: string) => void} o.announce  polite screen-reader message
   * @param {(image: string, platform: string) => void} o.askCredentials  prefill the quick form
   * @param {() => void} [o.settle]  brings the page layout up to date (the side column's stickiness)
   * @param {() => number} [o.viewTop]  the y where the visible page starts (below a sticky header)
   */
  constructor(o) {
    this.o = o;
    this.entries = new Map(); // key -> entry; key is the job id or local-N
    o.clear.addEventListener('click', () => this.clearFinished());
  }

  /** Restores the jobs of this tab's session and polls those still running. */
  restore() {
    let saved = [];
    try { saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || '[]'); } catch { saved = []; }
    if (!Array.isArray(saved)) return;
    // Stored newest first; add oldest first so the order survives. The
    // storage is the page's own, but a bad entry must not take the page
    // down: skip it, and forget the store if anything goes wrong.
    const seen = new Set();
    const str = (v) => (typeof v === 'string' ? v : '');
    for (const s of saved.slice().reverse()) {
      if (!s || typeof s.id !== 'string' || !/^[\w-]{1,128}$/.test(s.id) || seen.has(s.id)) continue;
      seen.add(s.id);
      try {
        const images = Array.isArray(s.images) ? s.images.filter((i) => typeof i === 'string').slice(0, 50) : null;
        const e = this.add({ key: s.id, id: s.id, image: str(s.image), images, platform: str(s.platform), auto: s.auto === true });
        e.streamed = s.streamed === true;
        // Shown as last seen until the first read answers (a ready job's link is signed afresh then).
        e.status = STATUSES.has(s.status) ? s.status : 'queued';
        this.render(e);
        this.poll(e, 0);
      } catch {
        try { sessionStorage.removeItem(STORE_KEY); } catch { /* storage off */ }
      }
    }
  }

  /**
   * Starts a download and resolves once the server has answered (the entry
   * then exists). Never rejects: a refusal becomes a failed entry.
   */
  async start({ image, images, platform, username, password }) {
    const creds = username ? { username, password } : null;
    const bundle = Array.isArray(images) && images.length > 0 ? [...images] : null;
    if (bundle) image = bundleName(bundle);
    let job;
    try {
      job = await api.createDownload({ image, images: bundle, platform, username, password });
    } catch (err) {
      const key = `local-${++localSeq}`;
      const e = this.add({ key, id: null, image, images: bundle, platform, auto: true });
      e.status = 'failed';
      e.error = { code: err.code, message: err.message };
      this.render(e);
      this.reveal(e);
      this.o.announce(t('dl.failedAnnounce', { image, platform, msg: err.message }));
      return e;
    }
    let e = this.entries.get(job.id);
    const again = !!e;
    if (!e) {
      e = this.add({ key: job.id, id: job.id, image: job.image || image, images: bundle, platform: job.platform || platform, auto: false });
      e.creds = creds;
    } else {
      if (creds) e.creds = creds;
      // Same image+platform joins the running job: show the existing entry first.
      this.o.list.prepend(e.el.root);
      e.error = null;
      if (e.status === 'ready') e.auto = false; // asked again: save the file again
    }
    e.askedAt = Date.now(); // asked for in this tab: a save claimed before now is no bar
    this.o.announce(t('dl.started', { image: e.image, platform: e.platform }));
    this.stream(e, job);
    this.update(e, job);
    this.reveal(e);
    const next = e.status === 'failed' ? -1 : this.nextPoll(e);
    if (next >= 0 && (!again || !e.timer)) this.poll(e, next);
    return e;
  }

  add({ key, id, image, images = null, platform, auto }) {
    const e = {
      key, id, image, images, platform, auto, creds: null,
      status: 'queued', job: null, error: null, samples: [],
      expanded: false, connLost: false, failures: 0, unknown: 0, timer: 0, ctrl: null, el: null,
      streamed: false, askedAt: 0,
    };
    e.el = this.build(e);
    this.entries.set(key, e);
    this.o.list.prepend(e.el.root);
    this.syncEmpty();
    return e;
  }

  build(e) {
    const layersId = `layers-${e.key}`;
    const el = {};
    el.title = h('span.dl-image', { id: `dl-${e.key}-image` });
    el.platform = h('span.chip.dl-platform', { id: `dl-${e.key}-platform` });
    el.badge = h('span.status-badge', { id: `dl-${e.key}-status` });
    el.dismiss = h('button.btn.btn-icon.btn-small.dl-dismiss', {
      type: 'button',
      on: {
        click: () => {
          // Keep keyboard focus in the list: the next entry's dismiss, else the heading.
          const sibling = el.root.nextElementSibling || el.root.previousElementSibling;
          this.remove(e.key);
          const next = sibling && sibling.querySelector('.dl-dismiss');
          if (next) next.focus(); else this.focusHeading();
        },
      },
    }, icon('close'));
    el.progress = h('progress', { dataset: { testid: 'progress' }, max: 1 });
    el.bytes = h('span.dl-bytes', { dataset: { testid: 'bytes' } });
    el.pct = h('span.dl-pct');
    el.speed = h('span.dl-speed', { dataset: { testid: 'speed' } });
    el.eta = h('span.dl-eta');
    el.meta = h('div.dl-meta', null, el.bytes, el.pct, el.speed, el.eta);
    el.toggleText = h('span');
    el.toggle = h('button.btn.btn-ghost.btn-small.dl-layers-toggle', {
      type: 'button',
      'aria-expanded': 'false',
      'aria-controls': layersId,
      dataset: { testid: 'layers-toggle' },
      on: { click: () => this.toggleLayers(e) },
    }, icon('layers'), el.toggleText);
    el.layers = h('ul.dl-layers', { id: layersId, hidden: true, dataset: { testid: 'layers' } });
    // A bundle's images, each with its progress over its own layers.
    el.images = h('ul.dl-images', { hidden: true, dataset: { testid: 'images' } });
    el.state = h('p.dl-state.muted');
    el.ready = h('div.dl-ready', { hidden: true });
    el.error = h('p.dl-error', { role: 'alert', hidden: true, dataset: { testid: 'error' } });
    el.cut = h('p.dl-error.dl-cut', { hidden: true, dataset: { testid: 'cut' } });
    el.actions = h('div.dl-actions', { hidden: true });
    // A named group that can take focus: a new download is focused, so
    // keyboard and screen-reader users land on it (see reveal).
    el.root = h('div.dl', {
      dataset: { testid: 'download', id: e.key },
      role: 'group',
      tabindex: '-1',
      'aria-labelledby': `${el.title.id} ${el.platform.id} ${el.badge.id}`,
    },
      h('div.dl-head', null, h('div.dl-name', null, el.title, el.platform), el.badge, el.dismiss),
      el.progress, el.meta, el.state, el.images, el.toggle, el.layers, el.ready, el.error, el.cut, el.actions);
    return el;
  }

  /**
   * Starts the browser's download of a job's tar as it is built, when the
   * server offers it (stream_url, local) and the file was not started yet.
   */
  stream(e, job) {
    const url = job.stream_url ? absolute(job.stream_url) : '';
    if (!url || e.auto || TERMINAL.has(job.status)) return;
    e.auto = true;
    e.streamed = true;
    claimSave(e.id, e.askedAt);
    this.save();
    saveFile(url, fileName({ image: e.image, platform: e.platform, job }));
  }

  /** Takes a fresh job answer into the entry. */
  update(e, job) {
    e.job = job;
    if (STATUSES.has(job.status)) {
      e.status = job.status;
      e.unknown = 0;
    } else if (++e.unknown >= UNKNOWN_STATUS_LIMIT) {
      e.status = 'failed';
      e.error = { code: 'bad_answer', message: t('dl.unknownStatus', { status: String(job.status).slice(0, 40) }) };
    }
    if (job.image) e.image = job.image;
    if (job.platform) e.platform = job.platform;
    const now = performance.now();
    e.samples.push({ at: now, done: Number(job.done_bytes) || 0 });
    while (e.samples.length > 2 && now - e.samples[0].at > SPEED_WINDOW_MS) e.samples.shift();
    if (e.status === 'failed' && job.status === 'failed') {
      e.error = job.error && job.error.message ? job.error : { code: 'failed', message: t('status.failed') };
    }
    this.render(e);
    this.save();
    if (e.status === 'ready' && job.url && !e.auto) {
      this.saveReady(e, job);
    } else if (e.status === 'failed' && e.lastAnnounced !== 'failed') {
      this.o.announce(t('dl.failedAnnounce', { image: e.image, platform: e.platform, msg: e.error.message }));
    }
    e.lastAnnounced = e.status;
  }

  /**
   * Saves a job that just turned ready, once per job across this browser's
   * tabs since it was asked for in this one (if it was: a restored or
   * duplicated tab's job was asked for elsewhere).
   */
  async saveReady(e, job) {
    e.auto = true;
    this.save();
    if (!absolute(job.url) || !(await claimSave(e.id, e.askedAt))) return;
    saveFile(absolute(job.url), fileName(e));
    this.o.announce(t('dl.readyAnnounce', { image: e.image, platform: e.platform, file: fileName(e) }));
  }

  /** When to read a job again: soon while it runs, before its link expires once ready. */
  nextPoll(e) {
    if (e.unknown > 0) return Math.min(POLL_MS * 2 ** e.unknown, 10_000);
    if (e.status !== 'ready') return POLL_MS;
    const exp = e.job && Date.parse(e.job.expires_at);
    if (!exp) return -1;
    return Math.min(Math.max(exp - Date.now() - RENEW_BEFORE_MS, 5_000), 2 ** 31 - 1);
  }

  poll(e, delay) {
    clearTimeout(e.timer);
    e.timer = setTimeout(async () => {
      e.timer = 0;
      if (!this.entries.has(e.key)) return;
      e.ctrl = new AbortController();
      try {
        const job = await api.getDownload(e.id, e.ctrl.signal, e.creds);
        if (!this.entries.has(e.key)) return;
        e.failures = 0;
        e.connLost = false;
        this.update(e, job);
        const next = e.status === 'failed' ? -1 : this.nextPoll(e);
        if (next >= 0) this.poll(e, next);
      } catch (err) {
        if (!this.entries.has(e.key) || (err && err.name === 'AbortError')) return;
        if (err.status >= 400 && err.status < 500 && err.status !== 429) {
          // The job is gone (expired, or the server lost it): say so, stop.
          e.status = 'failed';
          e.error = { code: err.code, message: err.message };
          this.render(e);
          this.save();
          return;
        }
        e.failures++;
        e.connLost = true;
        this.render(e);
        this.poll(e, Math.min(POLL_MS * 2 ** e.failures, 10_000));
      } finally {
        e.ctrl = null;
      }
    }, delay);
  }

  /** Draws the entry from its state; safe to call at any time (language switch too). */
  render(e) {
    const el = e.el;
    const job = e.job || {};
    const total = Number(job.total_bytes) || 0;
    const done = Math.min(Number(job.done_bytes) || 0, total || Infinity);
    const failed = e.status === 'failed';
    const ready = e.status === 'ready';

    el.root.dataset.status = e.status;
    el.title.textContent = e.image || '…';
    el.title.title = e.image;
    el.platform.textContent = e.platform ? fmt.platformLabel(e.platform) : '';
    el.platform.hidden = !e.platform;
    el.badge.textContent = t(`status.${e.status}`);
    el.badge.className = `status-badge status-${e.status}`;
    el.dismiss.setAttribute('aria-label', t('dl.dismiss', { image: e.image }));
    el.dismiss.title = el.dismiss.getAttribute('aria-label');

    // Progress: value/max are bytes; indeterminate until the total is known.
    const hasBytes = total > 0;
    el.progress.hidden = failed && !hasBytes;
    if (hasBytes) {
      el.progress.max = total;
      el.progress.value = ready ? total : done;
    } else if (ready) {
      el.progress.max = 1;
      el.progress.value = 1;
    } else {
      el.progress.removeAttribute('value');
    }
    el.progress.setAttribute('aria-label', `${e.image} ${e.platform}`);
    el.meta.hidden = !hasBytes;
    el.bytes.textContent = t('dl.bytes', { done: fmt.bytes(ready ? total : done), total: fmt.bytes(total) });
    el.pct.textContent = hasBytes ? `${Math.floor(((ready ? total : done) / total) * 100)}%` : '';
    const rate = speedOf(e);
    el.speed.textContent = ready || failed ? '' : fmt.speed(rate);
    el.speed.hidden = ready || failed;
    const eta = rate > 0 && !ready && !failed ? (total - done) / rate : NaN;
    el.eta.textContent = Number.isFinite(eta) && eta > 0 ? t('dl.eta', { t: fmt.duration(eta) }) : '';
    el.eta.hidden = !el.eta.textContent;

    el.state.textContent = e.connLost ? t('dl.conn') : '';
    el.state.hidden = !e.connLost;

    const images = Array.isArray(job.images) ? job.images : [];
    el.images.hidden = images.length === 0;
    if (images.length) this.renderImages(e, images, ready);
    const layers = Array.isArray(job.layers) ? job.layers : [];
    el.toggle.hidden = layers.length === 0;
    el.toggle.setAttribute('aria-expanded', String(e.expanded));
    el.toggleText.textContent = e.expanded ? t('dl.layersHide') : t('dl.layers', { n: layers.length });
    el.layers.hidden = !e.expanded || layers.length === 0;
    if (e.expanded) this.renderLayers(e, layers, ready);

    el.error.hidden = !failed || !e.error;
    el.error.textContent = failed && e.error ? e.error.message : '';
    // The job failed (not merely gone from the server later): the file the
    // browser was saving as the tar was built was cut short.
    el.cut.hidden = !(failed && e.streamed && job.status === 'failed');
    el.cut.textContent = el.cut.hidden ? '' : t('dl.cut', { file: fileName(e) });

    this.renderReady(e, ready ? job : null);
    this.renderActions(e, failed);
    this.syncEmpty();
  }

  renderImages(e, images, ready) {
    const ul = e.el.images;
    while (ul.children.length > images.length) ul.lastChild.remove();
    images.forEach((img, i) => {
      let li = ul.children[i];
      if (!li) {
        li = h('li.dl-image-row', { dataset: { testid: 'image' } },
          h('span.dl-image-name'), h('progress.dl-layer-progress'), h('span.dl-layer-bytes'));
        ul.append(li);
      }
      const name = li.firstChild;
      name.textContent = img.image || img.ref || '';
      name.title = img.ref || '';
      li.dataset.image = img.image || '';
      setRowProgress(li, img, ready, name.textContent);
    });
  }

  renderLayers(e, layers, ready) {
    const ul = e.el.layers;
    while (ul.children.length > layers.length) ul.lastChild.remove();
    layers.forEach((l, i) => {
      let li = ul.children[i];
      if (!li) {
        li = h('li.dl-layer', null,
          h('code.dl-layer-digest'), h('progress.dl-layer-progress'), h('span.dl-layer-bytes'));
        ul.append(li);
      }
      const code = li.firstChild;
      const short = String(l.digest || '').replace(/^(sha256:)?([0-9a-f]{12}).*$/, (m, p, hex) => `${p || ''}${hex}`);
      code.textContent = short;
      code.title = l.digest || '';
      setRowProgress(li, l, ready, short);
    });
  }

  renderReady(e, job) {
    const box = e.el.ready;
    const url = job && job.url ? absolute(job.url) : '';
    if (!url) {
      if (!box.hidden) { clear(box); box.hidden = true; }
      e.readyUrl = '';
      return;
    }
    // Rebuild only when the link or the language changed, so focus and
    // selection in the commands survive the once-a-second polling.
    const sig = `${url}|${document.documentElement.lang}`;
    if (e.readySig === sig && !box.hidden) return;
    e.readySig = sig;
    const file = fileName(e);
    clear(box);
    const link = h('a.btn.btn-primary.dl-link', {
      href: url,
      download: file,
      rel: 'noopener',
      dataset: { testid: 'link' },
      title: file,
      on: { click: (ev) => this.refreshIfExpired(ev, e) },
    }, icon('pull'), h('span', { text: t('dl.link') }));
    const facts = [h('code.dl-file', { text: file })];
    if (e.streamed) facts.push(h('span', { dataset: { testid: 'streamed' }, text: t('dl.streamed') }));
    if (job.expires_at) facts.push(h('span', { text: t('dl.linkExpires', { time: fmt.dateTime(job.expires_at) }) }));
    const expires = h('p.dl-expires.muted', null, facts);
    const f = shellQuote(file);
    const cmd = (label, words, testid) => {
      const c = commandBox(label, { testid });
      c.set(words);
      return c.el;
    };
    box.append(
      h('div.dl-linkrow', null, link, expires),
      cmd('curl', ['curl -fL', ['-o', f], { url: shellQuote(url) }], 'curl'),
      cmd(t('dl.load'), ['docker load', ['-i', f]], 'docker-load'),
      h('details.dl-more', null, h('summary', { text: t('dl.more') }),
        cmd(t('dl.alsoPodman'), ['podman load', ['-i', f]]),
        cmd(t('dl.alsoCtr'), ['ctr images import', ['--platform', e.platform], f])),
    );
    box.hidden = false;
  }

  renderActions(e, failed) {
    const box = e.el.actions;
    const code = failed && e.error ? e.error.code : '';
    const kind = !failed ? '' : CREDENTIAL_CODES.has(code) ? 'creds'
      : code === 'platform_not_found' ? 'platforms'
        : FINAL_CODES.has(code) ? '' : 'retry';
    box.hidden = !kind;
    const sig = `${kind}|${document.documentElement.lang}`;
    if (box.dataset.sig === sig) return;
    box.dataset.sig = sig;
    clear(box);
    if (kind === 'platforms') {
      const ref = e.images ? null : parseRef(e.image);
      if (ref) box.append(h('a.btn.btn-small', { href: imageHref(ref.repo, ref.tag) }, icon('layers'), h('span', { text: t('dl.pickPlatform') })));
      else box.hidden = true;
    } else if (kind) {
      box.append(h('button.btn.btn-small', {
        type: 'button',
        on: { click: () => this.retry(e) },
      }, icon(kind === 'creds' ? 'link' : 'retry'), h('span', { text: t(kind === 'creds' ? 'dl.enterCreds' : 'dl.retry') })));
    }
  }

  async retry(e) {
    if (CREDENTIAL_CODES.has(e.error && e.error.code)) {
      // A bundle's login is typed in the form, then the basket asked again.
      this.o.askCredentials(e.images ? null : e.image, e.platform);
      return;
    }
    this.remove(e.key);
    await this.start(e.images ? { images: e.images, platform: e.platform } : { image: e.image, platform: e.platform });
  }

  /** A link past its expiry is signed afresh by reading the job again. */
  async refreshIfExpired(ev, e) {
    const exp = e.job && Date.parse(e.job.expires_at);
    if (!exp || exp - Date.now() > 15_000 || !e.id) return;
    ev.preventDefault();
    try {
      const job = await api.getDownload(e.id, undefined, e.creds);
      this.update(e, job);
      if (job.url && absolute(job.url)) saveFile(absolute(job.url), fileName(e));
    } catch (err) {
      e.status = 'failed';
      e.error = { code: err.code, message: err.message };
      this.render(e);
    }
  }

  toggleLayers(e) {
    e.expanded = !e.expanded;
    this.render(e);
  }

  remove(key) {
    const e = this.entries.get(key);
    if (!e) return;
    clearTimeout(e.timer);
    if (e.ctrl) e.ctrl.abort();
    e.el.root.remove();
    this.entries.delete(key);
    this.save();
    this.syncEmpty();
  }

  clearFinished() {
    for (const e of [...this.entries.values()]) if (TERMINAL.has(e.status)) this.remove(e.key);
    this.focusHeading();
  }

  focusHeading() {
    const h2 = this.o.list.closest('section')?.querySelector('h2');
    if (h2) h2.focus({ preventScroll: true });
  }

  rerender() {
    for (const e of this.entries.values()) {
      e.readySig = '';
      this.render(e);
    }
  }

  /**
   * Shows a download that was just asked for: a short highlight, a scroll
   * to the entry only when it is out of view (on a phone the list is below
   * the page; on a wide screen the side column shows it, so nothing moves),
   * and keyboard focus on the entry.
   */
  reveal(e) {
    const root = e.el.root;
    root.classList.remove('flash');
    void root.offsetWidth; // restart the highlight animation
    root.classList.add('flash');
    if (this.o.settle) this.o.settle(); // the layout as it is with the new entry
    const r = root.getBoundingClientRect();
    const top = this.o.viewTop ? this.o.viewTop() : 0; // below a sticky header
    const seen = Math.min(r.height, 96); // enough of it to notice
    if (r.top < top - 1 || r.top + seen > window.innerHeight) {
      const smooth = !window.matchMedia('(prefers-reduced-motion: reduce)').matches;
      root.scrollIntoView({ block: 'start', behavior: smooth ? 'smooth' : 'auto' });
    }
    root.focus({ preventScroll: true });
  }

  save() {
    // Newest first, in list order; only jobs the server knows (no local failures).
    const keys = [...this.o.list.children].map((n) => n.dataset.id);
    const out = [];
    for (const k of keys) {
      const e = this.entries.get(k);
      if (!e || !e.id) continue;
      out.push({ id: e.id, image: e.image, images: e.images, platform: e.platform, status: e.status, auto: e.auto, streamed: e.streamed });
    }
    try { sessionStorage.setItem(STORE_KEY, JSON.stringify(out)); } catch { /* storage full or off */ }
  }

  syncEmpty() {
    const n = this.entries.size;
    this.o.empty.hidden = n > 0;
    this.o.clear.hidden = ![...this.entries.values()].some((e) => TERMINAL.has(e.status));
  }
}

/**
 * Fills a row of a layer or an image (li: label, progress, bytes) from its
 * {size, done_bytes}: all done once the job is ready.
 */
function setRowProgress(li, item, ready, label) {
  const [, prog, txt] = li.children;
  const size = Number(item.size) || 0;
  const done = ready ? size : Math.min(Number(item.done_bytes) || 0, size);
  prog.max = size || 1;
  prog.value = size ? done : 0;
  prog.setAttribute('aria-label', label);
  txt.textContent = size && done >= size
    ? `${fmt.bytes(size)} · ${t('dl.layerDone')}`
    : t('dl.bytes', { done: fmt.bytes(done), total: fmt.bytes(size) });
  li.classList.toggle('is-done', size > 0 && done >= size);
}

/** How a bundle is named before the server answers: its first image, and how many more. */
function bundleName(images) {
  return images.length > 1 ? t('basket.name', { image: images[0], n: images.length - 1 }) : images[0];
}

function speedOf(e) {
  const s = e.samples;
  if (s.length < 2) return 0;
  const a = s[0];
  const b = s[s.length - 1];
  const dt = (b.at - a.at) / 1000;
  return dt > 0.3 ? Math.max(0, (b.done - a.done) / dt) : 0;
}

/**
 * The server's link made absolute, and only if it is one a download may
 * follow: https (the presigned S3 link), or this server's own http link
 * (local mode). A local link (/files/...) is built on the server's public
 * address, which may be another name for the page's own server (127.0.0.1
 * for a page on localhost): it is served by this same server, so it is
 * taken on the page's origin. Anything else ('javascript:', another http
 * host) is ''.
 */
function absolute(url) {
  let u;
  try { u = new URL(url, location.href); } catch { return ''; }
  if (u.protocol === 'https:') return u.href;
  if (u.protocol === 'http:' && (u.origin === location.origin || u.pathname.startsWith('/files/') || u.pathname.startsWith('/api/streams/'))) {
    return new URL(u.pathname + u.search, location.origin).href;
  }
  return '';
}

function fileName(e) {
  const given = e.job && e.job.file_name;
  if (given && /^[\w.+-]+\.tar$/.test(given)) return given;
  // As the details page names it: the repository's last part, tag, platform.
  const base = `${e.image.replace(/^.*\//, '')}_${e.platform}`.replace(/[^\w.+-]+/g, '_');
  return `${base}.tar`;
}

// Jobs whose file this browser saved (or started), by id, with when: in
// localStorage, so tabs share it; entries older than a job's life go.
const SAVED_KEY = 'tarport.saved';
const SAVED_MS = 25 * 3600_000;

/**
 * Claims the automatic save of job id for this tab: true unless a tab of
 * this browser claimed it at or after since (a time in ms; 0 for a job not
 * asked for in this tab: any claim bars it). Atomic across tabs where the
 * Web Locks API is.
 */
function claimSave(id, since) {
  const claim = () => {
    let saved;
    try { saved = JSON.parse(localStorage.getItem(SAVED_KEY) || '{}'); } catch { saved = null; }
    if (!saved || typeof saved !== 'object' || Array.isArray(saved)) saved = {};
    const now = Date.now();
    for (const [k, at] of Object.entries(saved)) if (!(now - at < SAVED_MS)) delete saved[k];
    if (saved[id] && saved[id] >= since) return false;
    saved[id] = now;
    try { localStorage.setItem(SAVED_KEY, JSON.stringify(saved)); } catch { /* storage off: this tab decides alone */ }
    return true;
  };
  if (navigator.locks) return navigator.locks.request(SAVED_KEY, claim).catch(claim);
  return Promise.resolve(claim());
}

/** Starts the browser's download of url: a link with the download attribute, clicked. */
export function saveFile(url, file) {
  const a = h('a', { href: url, download: file, rel: 'noopener', class: 'offscreen' });
  document.body.append(a);
  a.click();
  a.remove();
}
