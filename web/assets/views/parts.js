// Pieces the search, popular and details views share.
import { h, icon, copyText } from '../dom.js';
import { t } from '../i18n.js';
import * as fmt from '../format.js';

/** The details route of an image name; slashes stay readable. */
export function imageHref(name, tag, platform) {
  const path = String(name).split('/').map(encodeURIComponent).join('/');
  const q = new URLSearchParams();
  if (tag) q.set('tag', tag);
  if (platform) q.set('platform', platform);
  const qs = q.toString().replace(/%2F/g, '/');
  return `#/image/${path}${qs ? `?${qs}` : ''}`;
}

export function officialBadge() {
  return h('span.badge-official', { dataset: { testid: 'official' }, title: t('official.title') },
    icon('verified'), h('span', { text: t('official') }));
}

/** A letter tile whose colour is a stable function of the name (8 classes). */
export function avatar(name) {
  const short = String(name).split('/').pop() || '?';
  let hash = 0;
  for (const ch of String(name)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return h(`span.avatar.hue-${hash % 8}`, { 'aria-hidden': 'true', text: short.charAt(0).toUpperCase() });
}

/** The name with its namespace dimmed: "bitnami/" + "redis". */
export function nameParts(name) {
  const i = String(name).lastIndexOf('/');
  if (i < 0) return [h('span.name-repo', { text: name })];
  return [h('span.name-ns', { text: name.slice(0, i + 1) }), h('span.name-repo', { text: name.slice(i + 1) })];
}

/** Stars, pulls and last update; missing (null) facts are left out. */
export function stats(item) {
  const li = [];
  if (item.stars != null) {
    li.push(h('li', { title: t('stars', { n: fmt.full(item.stars) }) }, icon('star'),
      h('span', { text: t('stars', { n: fmt.compact(item.stars) }) })));
  }
  if (item.pulls != null) {
    li.push(h('li', { title: t('pulls', { n: fmt.full(item.pulls) }) }, icon('pull'),
      h('span', { text: t('pulls', { n: fmt.compact(item.pulls) }) })));
  }
  const when = fmt.relative(item.updated);
  if (when) {
    li.push(h('li', null, icon('clock'),
      h('time', { datetime: item.updated, title: fmt.dateTime(item.updated), text: t('updated', { when }) })));
  }
  return li.length ? h('ul.stats', null, li) : null;
}

/** A status line with data-state (loading|empty|error|ok) and an optional retry button. */
export function statusLine(id) {
  const text = h('span.status-text');
  const retry = h('button.btn.btn-small', { type: 'button', hidden: true }, icon('retry'), h('span'));
  const el = h('div.status-line', { id: id || null, role: 'status', 'aria-live': 'polite' },
    h('span.spinner', { 'aria-hidden': 'true' }), icon('alert', 'status-alert'), text);
  const wrap = h('div.status-wrap', null, el, retry);
  return {
    el: wrap,
    set(state, message, onRetry) {
      el.dataset.state = state;
      text.textContent = message;
      retry.hidden = !onRetry;
      retry.lastChild.textContent = t('retry');
      retry.onclick = onRetry || null;
    },
  };
}

export function skeletons(n, cls) {
  return Array.from({ length: n }, () => h(`li.skeleton.${cls}`, { 'aria-hidden': 'true' },
    h('span.sk-line.sk-title'), h('span.sk-line'), h('span.sk-line.sk-short')));
}

/** Single quotes for the shell; a quote inside becomes '\''. */
export function shellQuote(s) {
  if (/^[\w@%+=:,./-]+$/.test(s) && !s.includes('://')) return s;
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

/**
 * A shell command under a label, with a Copy button beside the label (so it
 * never covers or narrows the command). set(words) fills it; a word is a
 * string, an array of strings kept on one line where they fit (['-o',
 * file]), or {url} for a link. The text wraps between words, a link after
 * its path's slashes and between query parameters (see urlPieces); only a
 * single piece wider than the box breaks mid-word. Nothing is clipped and
 * nothing scrolls.
 */
export function commandBox(label, { testid = null, name = label } = {}) {
  const code = h('code.cmd-text', { dataset: testid ? { testid } : null });
  const text = h('span', { text: t('dl.copy') });
  const btn = h('button.btn.btn-small.cmd-copy', { type: 'button', 'aria-label': `${t('dl.copy')}: ${name}` },
    icon('copy'), text);
  let value = '';
  let timer = 0;
  btn.addEventListener('click', async () => {
    const ok = await copyText(value);
    text.textContent = ok ? t('dl.copied') : t('dl.copyFailed');
    btn.classList.toggle('is-copied', ok);
    if (!ok) {
      const range = document.createRange();
      range.selectNodeContents(code);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
    }
    clearTimeout(timer);
    timer = setTimeout(() => { text.textContent = t('dl.copy'); btn.classList.remove('is-copied'); }, 2000);
  });
  const el = h('div.cmd', null, h('div.cmd-head', null, h('span.cmd-label', { text: label }), btn), code);
  return {
    el,
    set(words) {
      value = words.map((w) => (Array.isArray(w) ? w.join(' ') : typeof w === 'object' ? w.url : w)).join(' ');
      const nodes = [];
      words.forEach((w, i) => {
        if (i) nodes.push(' ');
        if (Array.isArray(w)) nodes.push(h('span.cmd-keep', { text: w.join(' ') }));
        else if (typeof w === 'object') nodes.push(h('span.cmd-url', null, urlPieces(w.url)));
        else nodes.push(w);
      });
      code.replaceChildren(...nodes);
    },
  };
}

/**
 * A link's pieces, laid out to wrap where a reader expects: after the
 * path's slashes (<wbr>), and between query parameters, each "?k=v" or
 * "&k=v" kept whole on a line where it fits and else wrapped after its =.
 */
function urlPieces(url) {
  const scheme = url.indexOf('://');
  const query = url.indexOf('?');
  const pathEnd = query < 0 ? url.length : query;
  const path = url.slice(0, pathEnd);
  const out = [];
  let last = 0;
  for (let i = path.indexOf('/', scheme >= 0 ? scheme + 3 : 0); i >= 0 && i < path.length - 1; i = path.indexOf('/', i + 1)) {
    out.push(path.slice(last, i + 1), h('wbr'));
    last = i + 1;
  }
  out.push(path.slice(last));
  if (query >= 0) {
    for (const param of url.slice(query).match(/[?&][^&]*/g)) {
      const eq = param.indexOf('=');
      out.push(h('wbr'), h('span.cmd-keep', null, eq < 0 ? param : [param.slice(0, eq + 1), h('wbr'), param.slice(eq + 1)]));
    }
  }
  return out;
}
