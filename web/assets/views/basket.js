// The basket: images gathered from search results, an image's details, the
// quick form or a Compose file, downloaded together as one tar (a bundle:
// layers the images share are stored once). It lives in localStorage, so a
// reload keeps it and the tabs of this browser share it.
//
// Selectors: section#basket; ul#basket-list > li[data-testid=basket-item]
// [data-ref] with button[data-testid=basket-remove]; #basket-total;
// button#basket-download, #basket-clear; the Compose view in
// details#compose: textarea#compose-text, input#compose-file,
// button#compose-find, ul#compose-services > li[data-service]
// [data-skipped], p#compose-platform (the file's platform:),
// button#compose-add, p#compose-error (role=alert).
import * as api from '../api.js';
import { h, icon, clear } from '../dom.js';
import { t } from '../i18n.js';
import * as fmt from '../format.js';
import { parseRef } from './quick.js';

const KEY = 'tarport.basket';
const NEED_KEY = 'tarport.basket.platform'; // the platform a Compose file in it asks for
/** The most images one tar holds (the server's limit). */
export const MAX_BASKET = 50;
const MAX_COMPOSE_BYTES = 60 * 1024; // the API takes a 64 KiB body

/**
 * The canonical name of a reference, as the server compares them: nginx,
 * library/nginx:latest and docker.io/library/nginx are one.
 */
export function canonicalRef(ref) {
  const r = parseRef(ref);
  if (!r) return '';
  let repo = r.repo.toLowerCase();
  const first = repo.split('/')[0];
  const hasHost = repo.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  if (!hasHost) repo = `docker.io/${repo.includes('/') ? repo : `library/${repo}`}`;
  return r.digest ? `${repo}@${r.digest}` : `${repo}:${r.tag}`;
}

export class Basket {
  /**
   * @param {object} o
   * @param {HTMLElement} o.root  section#basket
   * @param {() => string} o.platform  the platform downloads use (the quick form's)
   * @param {(p: string) => void} o.setPlatform  selects the platform downloads use
   * @param {(fn: () => void) => void} o.onPlatform  called when it changes
   * @param {(req: object) => Promise<unknown>} o.download  starts a download ({images, platform, ...})
   * @param {() => {username: string, password: string}} o.creds  the quick form's login, taken once
   * @param {(msg: string) => void} o.announce
   */
  constructor(o) {
    this.o = o;
    const q = (sel) => o.root.querySelector(sel);
    this.list = q('#basket-list');
    this.empty = q('#basket-empty');
    this.total = q('#basket-total');
    this.dl = q('#basket-download');
    this.clearBtn = q('#basket-clear');
    this.sizes = new Map(); // canonical ref + platform -> bytes, null when unknown
    this.items = load();
    // The platform a Compose file in the basket asks for ('' none): a tar
    // holds one platform, so it is the basket's until the basket is empty.
    this.need = this.items.length ? loadNeed() : '';
    this.dl.addEventListener('click', () => this.download());
    this.clearBtn.addEventListener('click', () => { this.items = []; this.save(); this.render(); });
    o.onPlatform(() => this.render());
    // Another tab changed the basket.
    window.addEventListener('storage', (ev) => {
      if (ev.key === KEY || ev.key === NEED_KEY) { this.items = load(); this.need = loadNeed(); this.render(); }
    });
    this.setupCompose();
    this.render();
  }

  /** Adds a reference; false (and a message) when it is there already or the basket is full. */
  add(ref) {
    const key = canonicalRef(ref);
    if (!key) return false;
    if (this.items.some((i) => canonicalRef(i) === key)) {
      this.o.announce(t('basket.already', { image: ref }));
      this.flash(key);
      return false;
    }
    if (this.items.length >= MAX_BASKET) {
      this.o.announce(t('basket.full', { n: MAX_BASKET }));
      return false;
    }
    this.items.push(String(ref).trim());
    this.save();
    this.render();
    this.o.announce(t('basket.added', { image: ref, n: this.items.length }));
    this.flash(key);
    return true;
  }

  remove(ref) {
    this.items = this.items.filter((i) => i !== ref);
    this.save();
    this.render();
  }

  save() {
    if (!this.items.length) this.need = '';
    try {
      localStorage.setItem(KEY, JSON.stringify(this.items));
      if (this.need) localStorage.setItem(NEED_KEY, this.need); else localStorage.removeItem(NEED_KEY);
    } catch { /* storage off: this page only */ }
  }

  /** The platform the basket downloads for: its Compose file's, else the quick form's. */
  platform() {
    return this.need || this.o.platform();
  }

  flash(key) {
    const li = [...this.list.children].find((n) => canonicalRef(n.dataset.ref) === key);
    if (!li) return;
    li.classList.remove('flash');
    void li.offsetWidth;
    li.classList.add('flash');
  }

  async download() {
    if (!this.items.length) return;
    const { username, password } = this.o.creds();
    this.dl.disabled = true;
    this.dl.setAttribute('aria-busy', 'true');
    try {
      await this.o.download({ images: [...this.items], platform: this.platform(), username, password });
    } finally {
      this.dl.disabled = this.items.length === 0;
      this.dl.removeAttribute('aria-busy');
    }
  }

  /** Draws the list and the total; safe at any time (language switch too). */
  render() {
    const platform = this.platform();
    clear(this.list);
    for (const ref of this.items) {
      const size = this.sizes.get(`${canonicalRef(ref)}|${platform}`);
      const sizeEl = h('span.basket-size.muted', { text: size == null ? '' : fmt.bytes(size) });
      const rm = h('button.btn.btn-icon.btn-small', {
        type: 'button',
        dataset: { testid: 'basket-remove' },
        'aria-label': t('basket.remove', { image: ref }),
        title: t('basket.remove', { image: ref }),
        on: { click: () => this.remove(ref) },
      }, icon('close'));
      this.list.append(h('li.basket-item', { dataset: { testid: 'basket-item', ref } },
        h('code.basket-ref', { text: ref, title: ref }), sizeEl, rm));
      if (size === undefined) this.lookUp(ref, platform);
    }
    const n = this.items.length;
    this.empty.hidden = n > 0;
    this.clearBtn.hidden = n === 0;
    this.dl.disabled = n === 0;
    this.dl.querySelector('span').textContent = n ? t('basket.download', { n }) : t('basket.downloadNone');
    const sizes = this.items.map((r) => this.sizes.get(`${canonicalRef(r)}|${platform}`));
    const known = sizes.filter((s) => s != null);
    const sum = known.reduce((a, b) => a + b, 0);
    this.total.hidden = n === 0;
    this.total.textContent = n === 0 ? ''
      : known.length === n ? t('basket.total', { size: fmt.bytes(sum), platform: fmt.platformLabel(platform) })
        : t('basket.totalPartial', { size: fmt.bytes(sum), n: n - known.length, platform: fmt.platformLabel(platform) });
    if (n && this.need) this.total.textContent += ' ' + t('basket.needs', { platform: fmt.platformLabel(this.need) });
  }

  /** The image's compressed size for the platform, from its details (cached by the API client). */
  async lookUp(ref, platform) {
    const key = `${canonicalRef(ref)}|${platform}`;
    if (this.sizes.has(key)) return;
    this.sizes.set(key, undefined);
    let size = null;
    try {
      const r = parseRef(ref);
      const d = await api.imageDetails(r.repo);
      const tag = (d.tags || []).find((tg) => tg.name === r.tag);
      const p = tag && (tag.platforms || []).find((pl) => fmt.platformLabel(fmt.platformString(pl)) === fmt.platformLabel(platform));
      size = p && p.size != null ? Number(p.size) : (tag && !(tag.platforms || []).length && tag.size != null ? Number(tag.size) : null);
    } catch { size = null; }
    this.sizes.set(key, size);
    if (this.items.some((i) => `${canonicalRef(i)}|${this.platform()}` === key)) this.render();
  }

  // ---- the Compose view: paste or upload a file, see its images, add them.
  setupCompose() {
    const q = (sel) => this.o.root.querySelector(sel);
    const text = q('#compose-text');
    const file = q('#compose-file');
    const find = q('#compose-find');
    const out = q('#compose-services');
    const add = q('#compose-add');
    const err = q('#compose-error');
    const note = q('#compose-platform');
    let found = [];
    let filePlatform = ''; // the platform the file's services name, if any
    const show = (res) => {
      clear(out);
      found = Array.isArray(res && res.images) ? res.images : [];
      filePlatform = (res && typeof res.platform === 'string') ? res.platform : '';
      for (const s of (res && res.services) || []) {
        out.append(h('li.compose-service', { dataset: { service: s.service, skipped: s.skipped ? 'true' : 'false' } },
          h('span.compose-name', { text: s.service }),
          s.image ? h('code', { text: s.image }) : h('span.muted', { text: t('compose.skipped', { why: s.skipped }) }),
          s.image && s.platform ? h('span.compose-platform', { text: fmt.platformLabel(s.platform) }) : null));
      }
      note.textContent = filePlatform ? t('compose.platform', { platform: fmt.platformLabel(filePlatform) }) : '';
      note.hidden = !filePlatform;
      out.hidden = !out.children.length;
      add.hidden = found.length === 0;
      add.querySelector('span').textContent = t('compose.add', { n: found.length });
    };
    const fail = (msg) => {
      err.textContent = msg;
      err.hidden = !msg;
    };
    file.addEventListener('change', async () => {
      const f = file.files && file.files[0];
      if (!f) return;
      if (f.size > MAX_COMPOSE_BYTES) { fail(t('compose.tooBig', { size: fmt.bytes(MAX_COMPOSE_BYTES) })); return; }
      text.value = await f.text();
      find.click();
    });
    find.addEventListener('click', async () => {
      fail('');
      show(null);
      if (!text.value.trim()) { fail(t('compose.emptyText')); text.focus(); return; }
      if (new Blob([text.value]).size > MAX_COMPOSE_BYTES) { fail(t('compose.tooBig', { size: fmt.bytes(MAX_COMPOSE_BYTES) })); return; }
      find.disabled = true;
      find.setAttribute('aria-busy', 'true');
      try {
        show(await api.composeImages(text.value));
      } catch (e) {
        fail(e.message);
      } finally {
        find.disabled = false;
        find.removeAttribute('aria-busy');
      }
    });
    add.addEventListener('click', () => {
      // A tar holds one platform: the file's, when it names one, and not
      // another Compose file's already in the basket.
      if (filePlatform && this.need && this.need !== filePlatform && this.items.length) {
        fail(t('compose.platformConflict', { file: fmt.platformLabel(filePlatform), basket: fmt.platformLabel(this.need) }));
        return;
      }
      let n = 0;
      for (const ref of found) if (this.add(ref)) n++;
      if (filePlatform && this.items.length) {
        this.need = filePlatform;
        this.save();
        if (filePlatform !== this.o.platform()) this.o.setPlatform(filePlatform);
        this.render();
        this.o.announce(t('compose.addedFor', { n, platform: fmt.platformLabel(filePlatform) }));
      } else {
        this.o.announce(t('compose.added', { n }));
      }
      this.list.closest('section').scrollIntoView({ block: 'nearest' });
    });
  }
}

function loadNeed() {
  try {
    const v = localStorage.getItem(NEED_KEY) || '';
    return /^[a-z0-9_.-]+\/[a-z0-9_.-]+(\/[a-z0-9_.-]+)?$/.test(v) ? v : '';
  } catch {
    return '';
  }
}

function load() {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) || '[]');
    if (!Array.isArray(v)) return [];
    const seen = new Set();
    return v.filter((r) => typeof r === 'string' && canonicalRef(r) && !seen.has(canonicalRef(r)) && seen.add(canonicalRef(r))).slice(0, MAX_BASKET);
  } catch {
    return [];
  }
}

/** An "Add to basket" button for ref (a function, so the reference may change). */
export function addButton(basket, ref, { small = true, testid = 'add-basket' } = {}) {
  const label = h('span', { text: t('basket.addButton') });
  const btn = h(`button.btn${small ? '.btn-small' : ''}.add-basket`, {
    type: 'button',
    dataset: { testid },
    on: { click: () => basket.add(typeof ref === 'function' ? ref() : ref) },
  }, icon('plus'), label);
  const name = typeof ref === 'function' ? '' : ref;
  if (name) btn.setAttribute('aria-label', t('basket.addLabel', { image: name }));
  return btn;
}
