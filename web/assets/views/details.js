// #/image/<name>[?tag=..]: an image's facts, its tags with their platforms
// and compressed sizes, and a download of one tag for one platform that the
// tag really has.
import * as api from '../api.js';
import { h, icon, clear } from '../dom.js';
import { t } from '../i18n.js';
import * as fmt from '../format.js';
import { renderMarkdown } from '../markdown.js';
import { officialBadge, avatar, nameParts, stats, statusLine, imageHref, commandBox, shellQuote } from './parts.js';
import { QUICK_PLATFORMS } from './quick.js';
import { addButton } from './basket.js';

const TAGS_SHOWN = 20;

export function renderDetails(view, params, ctx, name) {
  document.title = `${name} · tarport`;
  const section = h('section#details.details', { dataset: { name }, 'aria-labelledby': 'page-title' });
  const back = h('a.back-link', { href: '#/' }, icon('back'), h('span', { text: t('details.back') }));
  back.addEventListener('click', (ev) => {
    if (ctx.hasHistory()) { ev.preventDefault(); history.back(); }
  });
  const title = h('h1#page-title.details-title', { tabindex: '-1' }, nameParts(name));
  const head = h('div.details-head', null, avatar(name), h('div.details-heading', null, title));
  const status = statusLine('details-status');
  const body = h('div.details-body');
  section.append(back, head, status.el, body);
  view.append(section);

  const load = () => {
    status.set('loading', t('details.loading', { name }));
    clear(body);
    api.imageDetails(name).then((d) => {
      if (!ctx.current()) return;
      status.set('ok', '');
      fill(d);
    }, (err) => {
      if (!ctx.current()) return;
      status.set('error', t('details.error', { name, msg: err.message }), load);
    });
  };

  const fill = (d) => {
    const heading = head.querySelector('.details-heading');
    if (d.official) heading.append(officialBadge());
    const st = stats(d);
    if (st) heading.append(st);
    if (d.description) section.insertBefore(h('p.details-desc', { text: d.description }), status.el);

    const tags = Array.isArray(d.tags) ? d.tags.filter((tg) => tg && tg.name) : [];
    if (tags.length === 0) {
      body.append(h('div.card.notice', null,
        h('p', { text: t('details.noTags') }),
        h('button.btn', { type: 'button', on: { click: () => ctx.prefillQuick(`${name}:latest`) } }, t('details.useQuick'))));
      readme(d);
      return;
    }

    const wanted = params.get('tag');
    const tagSelect = h('select#tag-select.select', { name: 'tag' },
      tags.map((tg) => h('option', { value: tg.name, text: tg.name })));
    tagSelect.value = tags.some((tg) => tg.name === wanted) ? wanted
      : (tags.some((tg) => tg.name === 'latest') ? 'latest' : tags[0].name);
    const platformSelect = h('select#platform-select.select', { name: 'platform' });
    const size = h('strong.size-value', { dataset: { testid: 'size' } });
    const note = h('p.hint.platform-note', { hidden: true, text: t('details.platformsUnknown') });
    const dlBtn = h('button#details-download.btn.btn-primary.btn-block', { type: 'button' },
      icon('pull'), h('span', { text: t('details.download') }));
    const curl = commandBox(t('details.curl'), { name: 'curl' });

    const tagOf = () => tags.find((tg) => tg.name === tagSelect.value) || tags[0];

    // Platforms of the selected tag only; keeps the person's choice when the
    // new tag has it, else prefers the Quick download platform, then amd64.
    const fillPlatforms = () => {
      const tg = tagOf();
      const known = (tg.platforms || []).map((p) => ({ value: fmt.platformString(p), size: p.size }));
      const seen = new Set();
      const options = known.filter((p) => p.value && !seen.has(p.value) && seen.add(p.value));
      const unknown = options.length === 0;
      const values = unknown ? QUICK_PLATFORMS.map((v) => ({ value: v, size: null })) : options;
      const prevValue = platformSelect.value;
      platformSelect.replaceChildren(...values.map((p) =>
        h('option', { value: p.value, text: fmt.platformLabel(p.value) })));
      const norm = (v) => fmt.platformLabel(v || '');
      const pick = [prevValue, params.get('platform'), ctx.quickPlatform(), 'linux/amd64']
        .map((v) => values.find((p) => norm(p.value) === norm(v)))
        .find(Boolean) || values[0];
      platformSelect.value = pick.value;
      note.hidden = !unknown;
      platformSelect._sizes = new Map(values.map((p) => [p.value, p.size]));
    };

    const refresh = () => {
      const tg = tagOf();
      const s = platformSelect._sizes.get(platformSelect.value);
      const value = s != null ? s : (note.hidden ? null : tg.size);
      size.textContent = value != null ? fmt.bytes(value) : t('details.sizeUnknown');
      size.title = value != null ? `${fmt.full(value)} B` : '';
      const ref = `${name}:${tg.name}`;
      const plat = fmt.platformLabel(platformSelect.value);
      const file = `${ref.replace(/^.*\//, '')}_${plat}`.replace(/[^\w.+-]+/g, '_') + '.tar';
      // Each part encoded: a crafted name must not change the command's
      // path or query.
      const seg = (v) => encodeURIComponent(v).replace(/%3A/gi, ':').replace(/%40/g, '@');
      const path = name.split('/').map(seg).join('/') + ':' + seg(tg.name);
      const query = new URLSearchParams({ platform: plat }).toString().replace(/%2F/gi, '/');
      const pull = new URL(`/api/pull/${path}?${query}`, location.href).href;
      const token = api.accessToken();
      curl.set(['curl -fL --retry 100', ...(token ? [['-H', shellQuote(`X-Tarport-Token: ${token}`)]] : []), ['-o', shellQuote(file)], { url: shellQuote(pull) }]);
      dlBtn.setAttribute('aria-label', `${t('details.download')}: ${ref} (${fmt.platformLabel(platformSelect.value)})`);
      for (const row of tagList.querySelectorAll('li')) row.classList.toggle('is-selected', row.dataset.tag === tg.name);
    };

    // The choice lives in the URL (replaceState: no hashchange, no re-render),
    // so a reload, a language switch or a shared link keeps it.
    const remember = () => history.replaceState(history.state, '', imageHref(name, tagSelect.value, platformSelect.value));
    tagSelect.addEventListener('change', () => {
      fillPlatforms();
      refresh();
      remember();
    });
    platformSelect.addEventListener('change', () => { refresh(); remember(); });
    dlBtn.addEventListener('click', async () => {
      dlBtn.disabled = true;
      dlBtn.setAttribute('aria-busy', 'true');
      try {
        await ctx.download({ image: `${name}:${tagOf().name}`, platform: platformSelect.value });
      } finally {
        dlBtn.disabled = false;
        dlBtn.removeAttribute('aria-busy');
      }
    });

    const pick = h('div.card.pick-card', null,
      h('h2.card-title', { text: t('details.pick') }),
      h('div.pick-fields', null,
        h('div.field', null, h('label', { for: 'tag-select', text: t('details.tag') }), tagSelect),
        h('div.field', null, h('label', { for: 'platform-select', text: t('details.platform') }), platformSelect)),
      note,
      h('p.size-line', null, h('span.muted', { text: `${t('details.size')}: ` }), size),
      dlBtn,
      addButton(ctx.basket, () => `${name}:${tagOf().name}`, { small: false, testid: 'details-add' }),
      curl.el);
    curl.el.classList.add('pick-curl');

    const tagList = h('ul.tag-list');
    const showTags = (n) => {
      tagList.replaceChildren(...tags.slice(0, n).map((tg) => tagRow(tg, () => {
        tagSelect.value = tg.name;
        tagSelect.dispatchEvent(new Event('change'));
        tagSelect.focus();
      })));
    };
    showTags(TAGS_SHOWN);
    const more = tags.length > TAGS_SHOWN
      ? h('button.btn.btn-ghost.btn-small.tags-more', {
        type: 'button',
        on: { click: (ev) => { showTags(tags.length); refresh(); ev.currentTarget.remove(); } },
      }, t('details.tagsCount', { n: tags.length }))
      : null;
    const tagsCard = h('div.card.tags-card', null,
      h('div.section-head', null,
        h('h2.card-title', { text: t('details.tags') }),
        h('span.muted', { text: t('details.tagsCount', { n: tags.length }) })),
      tagList, more);

    body.append(h('div.details-grid', null, pick, tagsCard));
    fillPlatforms();
    refresh();
    readme(d);
  };

  const readme = (d) => {
    if (!d.full_description) return;
    const md = h('div.markdown');
    md.append(renderMarkdown(d.full_description));
    body.append(h('details.card.readme', null, h('summary', null, h('span', { text: t('details.readme') })), md));
  };

  load();
}

function tagRow(tg, select) {
  const plats = (tg.platforms || []).map((p) => fmt.platformLabel(fmt.platformString(p))).filter(Boolean);
  const when = fmt.relative(tg.updated);
  return h('li.tag-row', { dataset: { tag: tg.name } },
    h('button.tag-name', { type: 'button', on: { click: select }, text: tg.name }),
    h('span.tag-size', { text: tg.size != null ? fmt.bytes(tg.size) : '' }),
    when ? h('time.tag-when.muted', { datetime: tg.updated, title: fmt.dateTime(tg.updated), text: when }) : h('span'),
    h('ul.chips', { 'aria-label': t('details.platformsCol') }, [...new Set(plats)].map((p) => h('li.chip', { text: p }))));
}
