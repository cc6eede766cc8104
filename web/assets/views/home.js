// #/: what tarport does, in three steps, and the popular images, each one
// click from its details (the name) or a download of its latest tag for the
// platform picked under Quick download.
import * as api from '../api.js';
import { h, icon } from '../dom.js';
import { t } from '../i18n.js';
import { platformLabel } from '../format.js';
import { addButton } from './basket.js';
import { imageHref, officialBadge, avatar, nameParts, stats, statusLine, skeletons } from './parts.js';

export function renderHome(view, params, ctx) {
  document.title = `tarport · ${t('tagline')}`;
  const status = statusLine('popular-status');
  const list = h('ul#popular.popular-grid', { 'aria-labelledby': 'popular-title' });
  const hint = h('p.muted.popular-hint');
  const setHint = () => { hint.textContent = t('popular.hint', { platform: platformLabel(ctx.quickPlatform()) }); };
  setHint();
  ctx.onQuickPlatform(setHint);

  view.append(
    h('section.hero', { 'aria-labelledby': 'page-title' },
      h('h1#page-title.hero-title', { tabindex: '-1', text: t('home.title') }),
      h('p.hero-lead', { text: t('home.lead') }),
      h('ol.steps', null,
        h('li', null, h('span.step-n', { text: '1' }), h('span', { text: t('home.step1') })),
        h('li', null, h('span.step-n', { text: '2' }), h('span', { text: t('home.step2') })),
        h('li', null, h('span.step-n', { text: '3' }), h('span', { text: t('home.step3') }))),
      // On narrow screens the Quick download form sits below the popular list.
      h('button.btn.btn-primary.hero-cta', { type: 'button', on: { click: () => ctx.prefillQuick(null) } },
        icon('pull'), h('span', { text: t('home.cta') }))),
    h('section.popular', { 'aria-labelledby': 'popular-title' },
      h('div.section-head', null, h('h2#popular-title.section-title', { text: t('popular.title') }), hint),
      status.el, list),
  );

  const load = () => {
    status.set('loading', t('popular.loading'));
    list.replaceChildren(...skeletons(6, 'pop'));
    list.setAttribute('aria-busy', 'true');
    api.popular(24).then((res) => {
      if (!ctx.current()) return;
      list.removeAttribute('aria-busy');
      const items = Array.isArray(res.results) ? res.results : [];
      list.replaceChildren(...items.map((item) => popularItem(item, ctx)));
      if (items.length) status.set('ok', '');
      else status.set('empty', t('popular.empty'));
    }, (err) => {
      if (!ctx.current()) return;
      list.removeAttribute('aria-busy');
      list.replaceChildren();
      status.set('error', t('popular.error', { msg: err.message }), load);
    });
  };
  load();
}

function popularItem(item, ctx) {
  // The button names the platform it downloads (the Quick download one).
  const plat = h('span.btn-sub');
  const btn = h('button.btn.btn-primary.btn-small.pop-download', {
    type: 'button',
    dataset: { testid: 'popular-download' },
  }, icon('pull'), h('span', { text: t('popular.download') }), plat);
  const setPlatform = () => {
    const platform = platformLabel(ctx.quickPlatform());
    plat.textContent = platform;
    const label = t('popular.downloadLabel', { name: item.name, platform });
    btn.setAttribute('aria-label', label);
    btn.title = label;
  };
  setPlatform();
  ctx.onQuickPlatform(setPlatform);
  btn.addEventListener('click', async () => {
    btn.disabled = true;
    btn.setAttribute('aria-busy', 'true');
    try {
      await ctx.download({ image: `${item.name}:latest`, platform: ctx.quickPlatform() });
    } finally {
      btn.disabled = false;
      btn.removeAttribute('aria-busy');
    }
  });
  return h('li.pop.card', { dataset: { testid: 'popular-item', name: item.name } },
    h('div.pop-head', null,
      avatar(item.name),
      h('div.pop-title', null,
        h('h3.pop-name', { title: item.name },
          h('a.stretched', { href: imageHref(item.name), dataset: { testid: 'popular-details' } }, nameParts(item.name))),
        item.official ? officialBadge() : null)),
    h('p.pop-desc', { text: item.description || t('noDescription'), class: item.description ? '' : 'muted' }),
    h('div.pop-foot', null, stats(item), h('div.pop-buttons', null, addButton(ctx.basket, `${item.name}:latest`), btn)));
}
