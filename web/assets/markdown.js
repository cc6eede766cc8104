// A small Markdown renderer for Docker Hub's full descriptions. It builds DOM
// nodes (never innerHTML): headings, paragraphs, lists, quotes, fenced code,
// tables, rules, and inline code, emphasis and links. Raw HTML is shown as
// text; links are kept only for http(s) and mailto; images become links
// (img-src 'self' would block them anyway).
import { h } from './dom.js';

export function renderMarkdown(src) {
  const root = document.createDocumentFragment();
  const lines = String(src || '').replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  let para = [];
  let list = null; // {el, ordered}

  const flushPara = () => {
    if (para.length) root.append(h('p', null, inline(para.join(' '))));
    para = [];
  };
  const closeList = () => { list = null; };

  while (i < lines.length) {
    const line = lines[i];
    const trimmed = line.trim();

    // Fenced code.
    const fence = trimmed.match(/^(```|~~~)/);
    if (fence) {
      flushPara(); closeList();
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++;
      root.append(h('pre', null, h('code', { text: body.join('\n') })));
      continue;
    }
    if (!trimmed) { flushPara(); closeList(); i++; continue; }

    const heading = trimmed.match(/^(#{1,6})\s+(.*?)\s*#*$/);
    if (heading) {
      flushPara(); closeList();
      const level = Math.min(6, heading[1].length + 2); // the page owns h1 and h2
      root.append(h(`h${level}`, null, inline(heading[2])));
      i++;
      continue;
    }
    if (/^([-*_])(\s*\1){2,}$/.test(trimmed)) {
      flushPara(); closeList();
      root.append(h('hr'));
      i++;
      continue;
    }
    if (trimmed.startsWith('>')) {
      flushPara(); closeList();
      const body = [];
      while (i < lines.length && lines[i].trim().startsWith('>')) body.push(lines[i++].trim().replace(/^>\s?/, ''));
      root.append(h('blockquote', null, h('p', null, inline(body.join(' ')))));
      continue;
    }
    if (trimmed.startsWith('|') && i + 1 < lines.length && /^\|?\s*:?-{2,}/.test(lines[i + 1].trim())) {
      flushPara(); closeList();
      const cells = (l) => l.trim().replace(/^\||\|$/g, '').split('|').map((c) => c.trim());
      const head = cells(line);
      i += 2;
      const rows = [];
      while (i < lines.length && lines[i].trim().startsWith('|')) rows.push(cells(lines[i++]));
      root.append(h('div.md-table', null, h('table', null,
        h('thead', null, h('tr', null, head.map((c) => h('th', null, inline(c))))),
        h('tbody', null, rows.map((r) => h('tr', null, r.map((c) => h('td', null, inline(c)))))))));
      continue;
    }
    const item = line.match(/^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/);
    if (item) {
      flushPara();
      const ordered = /\d/.test(item[2]);
      const nested = item[1].length >= 2 && list;
      if (!list || list.ordered !== ordered) {
        list = { el: h(ordered ? 'ol' : 'ul'), ordered };
        root.append(list.el);
      }
      const li = h('li', nested ? { class: 'md-nested' } : null, inline(item[3]));
      list.el.append(li);
      i++;
      // Continuation lines of the item.
      while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !/^\s*([-*+]|\d{1,9}[.)])\s+/.test(lines[i])) {
        li.append(' ', inline(lines[i++].trim()));
      }
      continue;
    }
    closeList();
    para.push(trimmed);
    i++;
  }
  flushPara();
  return root;
}

const INLINE = /(`+)([\s\S]*?)\1|!?\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+"[^"]*")?\s*\)|<(https?:\/\/[^>\s]+)>|\*\*([^*]+)\*\*|__([^_]+)__|\*([^*\s][^*]*)\*|(?<![\w])_([^_\s][^_]*)_(?![\w])|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/g;

function inline(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    last = m.index + m[0].length;
    if (m[1]) out.push(h('code', { text: m[2].trim() }));
    else if (m[4] !== undefined || m[3] !== undefined) out.push(link(m[4], m[3] || m[4]));
    else if (m[5]) out.push(link(m[5], m[5]));
    else if (m[6] || m[7]) out.push(h('strong', null, inline(m[6] || m[7])));
    else if (m[8] || m[9]) out.push(h('em', null, inline(m[8] || m[9])));
    else if (m[10]) out.push(link(m[10], m[10]));
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function link(href, label) {
  const text = inline(label || href || '');
  if (!/^(https?:|mailto:)/i.test(href || '')) return h('span', null, text);
  return h('a', { href, target: '_blank', rel: 'noopener noreferrer nofollow' }, text);
}
