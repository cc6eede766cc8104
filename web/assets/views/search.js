// #/search?q=..&page=..: Docker Hub search results with paging.
import * as api from '../api.js';
import { h, icon } from '../dom.js';
import { t } from '../i18n.js';
import { addButton } from './basket.js';
import { imageHref, officialBadge, avatar, nameParts, stats, statusLine, skeletons } from './parts.js';

export const PAGE_SIZE = 25;
const MAX_PAGE = 100; // the API's bound on page

export function searchHref(q, page = 1, limit = PAGE_SIZE) {
  const p = new URLSearchParams({ q });
  if (page > 1) p.set('page', String(page));
  if (limit !== PAGE_SIZE) p.set('limit', String(limit));
  return `#/search?${p}`;
}

export function renderSearch(view, params, ctx) {
  const q = (params.get('q') || '').trim();
  const page = Math.min(MAX_PAGE, Math.max(1, parseInt(params.get('page') || '1', 10) || 1));
  // limit= in the route (1..100) sets the page size; 25 when absent.
  const limit = Math.min(100, Math.max(1, parseInt(params.get('limit') || '', 10) || PAGE_SIZE));
  ctx.setSearchText(q);
  document.title = q ? `${q} · tarport` : 'tarport';

  const status = statusLine('results-status');
  const list = h('ul#results.result-list', { 'aria-labelledby': 'page-title' });
  const prev = h('button#prev-page.btn', { type: 'button', disabled: true, 'aria-label': t('search.prev') }, icon('back'), h('span', { text: t('search.prev') }));
  const next = h('button#next-page.btn', { type: 'button', disabled: true, 'aria-label': t('search.next') }, h('span', { text: t('search.next') }), icon('chevron'));
  const pageInfo = h('span.pager-info', { 'aria-live': 'polite' });
  const pager = h('nav.pager', { 'aria-label': t('search.pager') }, prev, pageInfo, next);
  view.append(
    h('h1#page-title.page-title', { tabindex: '-1', text: q ? `${t('search.title')}: ${q}` : t('search.title') }),
    status.el, list, pager,
  );

  if (!q) {
    status.set('empty', t('search.prompt'));
    pager.hidden = true;
    return;
  }

  const load = () => {
    status.set('loading', t('search.loading', { q }));
    pager.hidden = false;
    list.replaceChildren(...skeletons(4, 'result'));
    list.setAttribute('aria-busy', 'true');
    prev.disabled = true;
    next.disabled = true;
    api.search(q, page, limit).then((res) => {
      if (!ctx.current()) return;
      list.removeAttribute('aria-busy');
      const results = Array.isArray(res.results) ? res.results : [];
      const total = Number(res.total) || 0;
      const pages = Math.max(1, Math.min(MAX_PAGE, Math.ceil(total / limit)));
      list.replaceChildren(...results.map((r) => resultItem(r, ctx)));
      pager.hidden = page === 1 && (results.length === 0 || pages <= 1); // one page needs no pager
      if (results.length === 0) {
        status.set('empty', t('search.empty', { q }));
      } else {
        status.set('ok', total === 1 ? t('search.okOne', { q }) : t('search.ok', { q, total: total.toLocaleString() }));
      }
      pageInfo.textContent = t('search.pageOf', { page, pages: Math.max(pages, page) });
      prev.disabled = page <= 1;
      next.disabled = page >= pages || results.length === 0;
    }, (err) => {
      if (!ctx.current()) return;
      list.removeAttribute('aria-busy');
      list.replaceChildren();
      status.set('error', t('search.error', { msg: err.message }), load);
      pager.hidden = page === 1;
      prev.disabled = page <= 1;
      next.disabled = true;
      pageInfo.textContent = '';
    });
  };
  prev.addEventListener('click', () => { location.hash = searchHref(q, page - 1, limit); });
  next.addEventListener('click', () => { location.hash = searchHref(q, page + 1, limit); });
  load();
}

function resultItem(r, ctx) {
  const link = h('a.result-link.stretched', { href: imageHref(r.name), dataset: { testid: 'result-link' } }, nameParts(r.name));
  return h('li.result.card', { dataset: { testid: 'result', name: r.name } },
    avatar(r.name),
    h('div.result-body', null,
      h('div.result-head', null, h('h2.result-name', null, link), r.official ? officialBadge() : null,
        addButton(ctx.basket, `${r.name}:latest`)),
      h('p.result-desc', { text: r.description || t('noDescription'), class: r.description ? '' : 'muted' }),
      stats(r)),
    icon('chevron', 'result-chevron'));
}
