// Pieces the search, popular and details views share.
import { h, icon } from '../dom.js';
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
