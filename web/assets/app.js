// tarport's web UI: plain ES modules, no framework, no build step, nothing
// from another host (the CSP allows only 'self'). Hash routes:
//
//   #/                         front page: what it does, popular images
//   #/search?q=nginx&page=2    Docker Hub search
//   #/image/<name>[?tag=1.27]  an image's details, tags and platforms
//
// The header (search, language, theme), the Quick download form, the
// basket (several images in one tar, a Compose file's too) and the
// Downloads panel live outside the routed view and stay on every page.
//
// Refused requests: when POST /api/downloads answers 4xx/5xx (unknown image,
// a platform the image lacks, bad credentials, ...), the refusal is shown as a
// download entry with data-status="failed" (data-id="local-N", as there is no
// job) holding the server's message in [data-testid=error] (role="alert").
// This holds for all three ways to start a download (Quick download, an
// image's details, a popular image), so there is no [data-testid=form-error].
import { clear } from './dom.js';
import { t, initialLang, setLang, getLang, onLangChange } from './i18n.js';
import { Downloads } from './views/downloads.js';
import { setupQuick } from './views/quick.js';
import { Basket } from './views/basket.js';
import { renderHome } from './views/home.js';
import { renderSearch, searchHref } from './views/search.js';
import { renderDetails } from './views/details.js';
import { accessToken, setAccessToken } from './api.js';

const THEME_KEY = 'tarport.theme';
const root = document.documentElement;
const view = document.getElementById('view');
const announcer = document.getElementById('announcer');

// ---- language
const langSelect = document.getElementById('lang');
setLang(initialLang());
langSelect.value = getLang();
langSelect.addEventListener('change', () => setLang(langSelect.value, { save: true }));

// ---- theme: data-theme="light"|"dark" on <html>; an explicit choice is kept.
function storedTheme() {
  try { return localStorage.getItem(THEME_KEY); } catch { return null; }
}
const darkQuery = window.matchMedia('(prefers-color-scheme: dark)');
function applyTheme(theme) {
  root.dataset.theme = theme;
  const btn = document.getElementById('theme');
  const dark = theme === 'dark';
  btn.setAttribute('aria-pressed', String(dark));
  btn.title = t(dark ? 'theme.toLight' : 'theme.toDark');
}
applyTheme(['light', 'dark'].includes(storedTheme()) ? storedTheme() : (darkQuery.matches ? 'dark' : 'light'));
darkQuery.addEventListener('change', (e) => {
  if (!storedTheme()) applyTheme(e.matches ? 'dark' : 'light');
});
document.getElementById('theme').addEventListener('click', () => {
  const next = root.dataset.theme === 'dark' ? 'light' : 'dark';
  try { localStorage.setItem(THEME_KEY, next); } catch { /* private mode */ }
  applyTheme(next);
});

// ---- announcements for screen readers (progress milestones, failures)
let announceTimer = 0;
function announce(msg) {
  clearTimeout(announceTimer);
  announcer.textContent = '';
  // A fresh text node after a tick is read even when the text repeats.
  announceTimer = setTimeout(() => { announcer.textContent = msg; }, 50);
}

// ---- the side column (Quick download, Downloads) beside the page on wide
// screens: sticky only while all of it fits in the window, so it never
// needs a scrollbar of its own and nothing in it is out of reach.
const side = document.querySelector('.side');
const topbar = document.querySelector('.topbar');
function fitSide() {
  const top = parseFloat(getComputedStyle(side).top) || 0;
  side.classList.toggle('is-sticky', side.offsetHeight + top + 16 <= window.innerHeight);
}
new ResizeObserver(fitSide).observe(side);
window.addEventListener('resize', fitSide);
// The y below which the page shows: under the header while it is sticky.
const viewTop = () => (getComputedStyle(topbar).position === 'sticky' ? topbar.getBoundingClientRect().bottom : 0);

// ---- quick download and the downloads panel
let quick;
const downloads = new Downloads({
  list: document.getElementById('downloads-list'),
  empty: document.getElementById('downloads-empty'),
  clear: document.getElementById('downloads-clear'),
  announce,
  askCredentials: (image, platform) => quick.prefill(image, platform, true),
  settle: fitSide,
  viewTop,
});
quick = setupQuick({
  form: document.getElementById('quick'),
  download: (req) => downloads.start(req),
  addToBasket: (ref) => basket.add(ref),
});
const basket = new Basket({
  root: document.getElementById('basket'),
  platform: () => quick.value(),
  setPlatform: (p) => quick.setPlatform(p),
  onPlatform: (fn) => quick.onChange(fn),
  download: (req) => downloads.start(req),
  creds: () => quick.takeCreds(),
  announce,
});
downloads.restore();

// ---- search form (in the header, on every page)
const searchForm = document.getElementById('search');
const searchInput = document.getElementById('search-q');
searchForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const q = searchInput.value.trim();
  if (!q) { searchInput.focus(); return; }
  const target = searchHref(q, 1);
  if (location.hash === target) route({ focus: true });
  else location.hash = target;
});

// ---- skip links: focus their target without touching the hash (it is the route)
for (const a of document.querySelectorAll('a[data-skip]')) {
  a.addEventListener('click', (ev) => {
    ev.preventDefault();
    const target = document.getElementById(a.dataset.skip);
    if (!target) return;
    target.scrollIntoView({ block: 'start' });
    target.focus({ preventScroll: true });
  });
}

// ---- router
let renderSeq = 0;
let routeListeners = [];

// How deep in this site's own history the current entry is: 0 for the
// entry the site was opened on, one more for each page reached by a link
// in it. Kept in history.state, so it survives a reload and is right after
// the browser's Back and Forward (a count of hash changes is not: Back
// then Forward looks like two steps into the site). An in-page Back goes
// back only from depth 1 or more, so it never leaves the site.
function depthOf(state) {
  return state && Number.isInteger(state.tarportDepth) ? state.tarportDepth : -1;
}
let depth = depthOf(history.state);
if (depth < 0) {
  depth = 0;
  history.replaceState({ ...(history.state || {}), tarportDepth: 0 }, '');
}
function trackDepth() {
  const d = depthOf(history.state);
  if (d >= 0) { depth = d; return; } // Back or Forward to an entry of ours
  depth += 1; // a new entry, reached from the current one
  history.replaceState({ ...(history.state || {}), tarportDepth: depth }, '');
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const qi = raw.indexOf('?');
  const path = qi >= 0 ? raw.slice(0, qi) : raw;
  const params = new URLSearchParams(qi >= 0 ? raw.slice(qi + 1) : '');
  return { path, params };
}

function route({ focus = false } = {}) {
  const seq = ++renderSeq;
  for (const off of routeListeners) off();
  routeListeners = [];
  const ctx = {
    current: () => seq === renderSeq,
    quickPlatform: () => quick.value(),
    onQuickPlatform: (fn) => { routeListeners.push(quick.onChange(fn)); },
    download: (req) => downloads.start(req),
    basket,
    prefillQuick: (ref) => quick.prefill(ref),
    setSearchText: (q) => { if (document.activeElement !== searchInput) searchInput.value = q; },
    hasHistory: () => depthOf(history.state) > 0,
  };
  const { path, params } = parseHash();
  clear(view);
  document.body.dataset.route = 'home';
  if (path === '/search') {
    document.body.dataset.route = 'search';
    renderSearch(view, params, ctx);
  } else if (path.startsWith('/image/') && path.length > '/image/'.length) {
    document.body.dataset.route = 'details';
    let name;
    try { name = path.slice('/image/'.length).split('/').map(decodeURIComponent).join('/'); } catch { name = path.slice(7); }
    renderDetails(view, params, ctx, name.replace(/\/+$/, ''));
  } else {
    if (path !== '/' && path !== '') history.replaceState(history.state, '', '#/');
    searchInput.value = '';
    renderHome(view, params, ctx);
  }
  if (focus) {
    window.scrollTo({ top: 0 });
    const heading = view.querySelector('h1');
    (heading || view).focus({ preventScroll: true });
  }
}

// ---- the access token: asked for when the server refuses without it, then
// the page is drawn again with it (downloads already started keep going).
const tokenDialog = document.getElementById('token-dialog');
const tokenInput = document.getElementById('token-input');
window.addEventListener('tarport:token-needed', () => {
  if (tokenDialog.open) return;
  tokenInput.value = '';
  tokenDialog.dataset.retry = accessToken() ? 'wrong' : 'missing';
  tokenDialog.showModal();
  tokenInput.focus();
});
document.getElementById('token-form').addEventListener('submit', () => {
  const token = tokenInput.value.trim();
  if (!token) return;
  setAccessToken(token);
  route();
});

window.addEventListener('hashchange', () => { trackDepth(); route({ focus: true }); });
onLangChange(() => {
  langSelect.value = getLang();
  applyTheme(root.dataset.theme);
  quick.relabel();
  basket.render();
  downloads.rerender();
  route();
});
route();
