// English and Chinese strings. The language follows the browser
// (navigator.languages) until the person picks one in select#lang; that
// choice is kept in localStorage. Static markup carries data-i18n (text),
// data-i18n-placeholder (with an optional data-i18n-placeholder-narrow for
// narrow screens), data-i18n-title and data-i18n-aria-label keys that
// apply() fills; views call t() when they render.

const STRINGS = {
  en: {
    'skip': 'Skip to content',
    'skipQuick': 'Skip to Quick download',
    'tagline': 'Docker images as tar files, one platform at a time',
    'lang.label': 'Language',
    'theme.toggle': 'Toggle dark theme',
    'theme.toDark': 'Switch to dark theme',
    'theme.toLight': 'Switch to light theme',
    'search.label': 'Search Docker Hub',
    'search.placeholder': 'Search Docker Hub, e.g. nginx',
    'search.placeholderShort': 'Search Docker Hub',
    'search.button': 'Search',
    'search.title': 'Search results',
    'search.loading': 'Searching Docker Hub for “{q}”…',
    'search.empty': 'No images match “{q}”. Check the spelling, or try a shorter word.',
    'search.error': 'Search failed: {msg}',
    'search.ok': '{total} results for “{q}”',
    'search.okOne': '1 result for “{q}”',
    'search.pageOf': 'Page {page} of {pages}',
    'search.prompt': 'Type a name above to search Docker Hub.',
    'search.prev': 'Previous',
    'search.next': 'Next',
    'search.pager': 'Result pages',
    'retry': 'Try again',
    'official': 'Official',
    'official.title': 'Docker Official Image',
    'stars': '{n} stars',
    'pulls': '{n} pulls',
    'updated': 'Updated {when}',
    'noDescription': 'No description.',
    'home.title': 'Download any container image as a tar',
    'home.lead': 'Docker Hub slow or blocked where you are? Search it here, pick a tag and a platform, and get one tar file from a fast link. Then run docker load, podman load or ctr import.',
    'home.step1': 'Search or paste a reference',
    'home.step2': 'Pick a tag and platform',
    'home.step3': 'Download the tar and load it',
    'home.cta': 'Download by reference',
    'popular.title': 'Popular images',
    'popular.hint': '“Download” gets the latest tag for {platform}; change the platform under Quick download.',
    'popular.loading': 'Loading popular images…',
    'popular.error': 'Could not load popular images: {msg}',
    'popular.empty': 'No popular images to show right now.',
    'popular.download': 'Download',
    'popular.downloadLabel': 'Download {name}:latest for {platform}',
    'popular.details': 'Details',
    'details.back': 'Back',
    'details.loading': 'Loading {name}…',
    'details.error': 'Could not load {name}: {msg}',
    'details.pick': 'Pick a tag and a platform',
    'details.tag': 'Tag',
    'details.platform': 'Platform',
    'details.size': 'Compressed size',
    'details.sizeUnknown': 'unknown',
    'details.download': 'Download tar',
    'details.noTags': 'No tags were found for this image. You can still try a reference under Quick download.',
    'details.useQuick': 'Use Quick download',
    'details.platformsUnknown': 'The registry did not list platforms for this tag; tarport checks the platform when you download.',
    'details.tags': 'Tags',
    'details.tagsCount': '{n} tags, newest first',
    'details.tagCol': 'Tag',
    'details.platformsCol': 'Platforms',
    'details.sizeCol': 'Size',
    'details.updatedCol': 'Updated',
    'details.readme': 'Full description',
    'details.curl': 'Or from a terminal (one command, however long the tar takes):',
    'token.title': 'Access token',
    'token.text': 'This tarport asks for an access token. Its operator gives it out; it is kept in this browser.',
    'token.label': 'Token',
    'token.save': 'Save',
    'details.pullsOf': '{n} pulls',
    'quick.title': 'Quick download',
    'quick.image': 'Image reference',
    'quick.imageHint': 'For example nginx:1.27, bitnami/redis or ghcr.io/owner/repo:tag',
    'quick.platform': 'Platform',
    'quick.offers': '{image} offers: {list}',
    'quick.moreGroup': 'Also offered by this image',
    'quick.creds': 'Registry login (only for private images)',
    'quick.username': 'Username',
    'quick.password': 'Password or token',
    'quick.credsHint': 'Sent once with this request; never stored.',
    'quick.submit': 'Download',
    'quick.required': 'Enter an image reference, such as nginx:1.27.',
    'downloads.title': 'Downloads',
    'downloads.empty': 'Downloads you start appear here with their progress.',
    'downloads.clear': 'Clear finished',
    'status.starting': 'Starting',
    'status.queued': 'Queued',
    'status.fetching': 'Fetching layers',
    'status.assembling': 'Assembling tar',
    'status.ready': 'Ready',
    'status.failed': 'Failed',
    'dl.bytes': '{done} / {total}',
    'dl.speedNone': '—',
    'dl.eta': '{t} left',
    'dl.cached': 'Ready from cache',
    'dl.layers': 'Layers ({n})',
    'dl.layersHide': 'Hide layers',
    'dl.layerDone': 'done',
    'dl.link': 'Download the tar',
    'dl.linkExpires': 'link valid until {time}',
    'dl.curl': 'curl',
    'dl.load': 'Load it',
    'dl.copy': 'Copy',
    'dl.copied': 'Copied',
    'dl.copyFailed': 'Copy failed; select the text',
    'dl.dismiss': 'Remove {image} from the list',
    'dl.retry': 'Retry',
    'dl.enterCreds': 'Enter registry login',
    'dl.pickPlatform': 'See its platforms',
    'dl.started': 'Download of {image} ({platform}) started.',
    'dl.readyAnnounce': '{image} ({platform}) is ready; your browser is saving {file}.',
    'dl.failedAnnounce': '{image} ({platform}) failed: {msg}',
    'dl.conn': 'Lost contact with the server; retrying…',
    'dl.streamed': 'saved as it was built (if your browser says that download failed, save it again here)',
    'dl.cut': 'The copy of {file} your browser was saving as the tar was built stopped short and is incomplete: delete it. No complete file was written.',
    'dl.unknownStatus': 'The server answered with a status this page does not know (“{status}”); reload the page.',
    'dl.more': 'Podman or containerd instead',
    'dl.alsoPodman': 'Podman',
    'dl.alsoCtr': 'containerd',
    'err.network': 'The server could not be reached. Check your connection and try again.',
    'err.badAnswer': 'The server sent an answer the page could not read (HTTP {status}).',
    'time.justNow': 'just now',
    'footer.text': 'tarport builds a tar of any image for one platform. Load it with docker load, podman load or ctr import.',
  },
  zh: {
    'skip': '跳到主要内容',
    'skipQuick': '跳到快速下载',
    'tagline': '把 Docker 镜像按平台下载为 tar 文件',
    'lang.label': '语言',
    'theme.toggle': '切换深色主题',
    'theme.toDark': '切换到深色主题',
    'theme.toLight': '切换到浅色主题',
    'search.label': '搜索 Docker Hub',
    'search.placeholder': '搜索 Docker Hub，例如 nginx',
    'search.placeholderShort': '搜索 Docker Hub',
    'search.button': '搜索',
    'search.title': '搜索结果',
    'search.loading': '正在 Docker Hub 中搜索“{q}”…',
    'search.empty': '没有与“{q}”匹配的镜像。请检查拼写，或换个更短的关键词。',
    'search.error': '搜索失败：{msg}',
    'search.ok': '“{q}”共有 {total} 个结果',
    'search.okOne': '“{q}”共有 1 个结果',
    'search.pageOf': '第 {page} 页，共 {pages} 页',
    'search.prompt': '在上方输入名称即可搜索 Docker Hub。',
    'search.prev': '上一页',
    'search.next': '下一页',
    'search.pager': '结果分页',
    'retry': '重试',
    'official': '官方',
    'official.title': 'Docker 官方镜像',
    'stars': '{n} 星标',
    'pulls': '{n} 次拉取',
    'updated': '{when}更新',
    'noDescription': '暂无描述。',
    'home.title': '把任意容器镜像下载为 tar 文件',
    'home.lead': 'Docker Hub 访问慢或被墙？在这里搜索镜像，选好标签和平台，就能通过高速链接下载单个 tar 文件，再用 docker load、podman load 或 ctr import 导入。',
    'home.step1': '搜索或粘贴镜像地址',
    'home.step2': '选择标签和平台',
    'home.step3': '下载 tar 并导入',
    'home.cta': '按镜像地址下载',
    'popular.title': '热门镜像',
    'popular.hint': '“下载”会获取 latest 标签的 {platform} 版本；可在“快速下载”中更改平台。',
    'popular.loading': '正在加载热门镜像…',
    'popular.error': '无法加载热门镜像：{msg}',
    'popular.empty': '暂时没有热门镜像。',
    'popular.download': '下载',
    'popular.downloadLabel': '下载 {name}:latest（{platform}）',
    'popular.details': '详情',
    'details.back': '返回',
    'details.loading': '正在加载 {name}…',
    'details.error': '无法加载 {name}：{msg}',
    'details.pick': '选择标签和平台',
    'details.tag': '标签',
    'details.platform': '平台',
    'details.size': '压缩后大小',
    'details.sizeUnknown': '未知',
    'details.download': '下载 tar',
    'details.noTags': '没有找到这个镜像的标签。你仍可以在“快速下载”中输入镜像地址试试。',
    'details.useQuick': '使用快速下载',
    'details.platformsUnknown': '镜像仓库没有列出这个标签的平台；下载时 tarport 会检查平台是否存在。',
    'details.tags': '标签',
    'details.tagsCount': '共 {n} 个标签，最新的在前',
    'details.tagCol': '标签',
    'details.platformsCol': '平台',
    'details.sizeCol': '大小',
    'details.updatedCol': '更新时间',
    'details.readme': '完整说明',
    'details.curl': '也可以在终端中下载（一条命令，无论 tar 需要多久）：',
    'token.title': '访问令牌',
    'token.text': '此 tarport 需要访问令牌。令牌由运营者提供，并保存在此浏览器中。',
    'token.label': '令牌',
    'token.save': '保存',
    'details.pullsOf': '{n} 次拉取',
    'quick.title': '快速下载',
    'quick.image': '镜像地址',
    'quick.imageHint': '例如 nginx:1.27、bitnami/redis 或 ghcr.io/owner/repo:tag',
    'quick.platform': '平台',
    'quick.offers': '{image} 提供：{list}',
    'quick.moreGroup': '该镜像还提供',
    'quick.creds': '镜像仓库登录（仅私有镜像需要）',
    'quick.username': '用户名',
    'quick.password': '密码或令牌',
    'quick.credsHint': '只随本次请求发送一次，不会被保存。',
    'quick.submit': '下载',
    'quick.required': '请输入镜像地址，例如 nginx:1.27。',
    'downloads.title': '下载任务',
    'downloads.empty': '开始下载后，任务和进度会显示在这里。',
    'downloads.clear': '清除已结束',
    'status.starting': '正在开始',
    'status.queued': '排队中',
    'status.fetching': '正在获取镜像层',
    'status.assembling': '正在打包 tar',
    'status.ready': '已就绪',
    'status.failed': '失败',
    'dl.bytes': '{done} / {total}',
    'dl.speedNone': '—',
    'dl.eta': '剩余 {t}',
    'dl.cached': '已从缓存就绪',
    'dl.layers': '镜像层（{n}）',
    'dl.layersHide': '隐藏镜像层',
    'dl.layerDone': '完成',
    'dl.link': '下载 tar 文件',
    'dl.linkExpires': '链接有效期至 {time}',
    'dl.curl': 'curl',
    'dl.load': '导入',
    'dl.copy': '复制',
    'dl.copied': '已复制',
    'dl.copyFailed': '复制失败，请手动选择文本',
    'dl.dismiss': '从列表中移除 {image}',
    'dl.retry': '重试',
    'dl.enterCreds': '填写仓库登录信息',
    'dl.pickPlatform': '查看可用平台',
    'dl.started': '已开始下载 {image}（{platform}）。',
    'dl.readyAnnounce': '{image}（{platform}）已就绪，浏览器正在保存 {file}。',
    'dl.failedAnnounce': '{image}（{platform}）失败：{msg}',
    'dl.conn': '与服务器的连接中断，正在重试…',
    'dl.streamed': '已在构建时边下边存（如果浏览器提示该下载失败，请在此重新保存）',
    'dl.cut': '浏览器在构建时边下边存的 {file} 已中断，文件不完整，请删除它。没有写出完整的文件。',
    'dl.unknownStatus': '服务器返回了本页面不认识的状态（“{status}”），请刷新页面。',
    'dl.more': '改用 Podman 或 containerd',
    'dl.alsoPodman': 'Podman',
    'dl.alsoCtr': 'containerd',
    'err.network': '无法连接服务器。请检查网络后重试。',
    'err.badAnswer': '服务器返回了无法识别的内容（HTTP {status}）。',
    'time.justNow': '刚刚',
    'footer.text': 'tarport 为任意镜像的单个平台生成 tar 文件，可用 docker load、podman load 或 ctr import 导入。',
  },
};

export const LANGS = ['en', 'zh'];
// Below this width a long placeholder is cut off: data-i18n-placeholder-narrow applies.
const narrow = window.matchMedia('(max-width: 480px)');
narrow.addEventListener('change', () => apply(document));
const KEY = 'tarport.lang';
let lang = 'en';
const listeners = new Set();

function stored() {
  try { return localStorage.getItem(KEY); } catch { return null; }
}

/** The language to start with: a stored choice, else the browser's first zh/en preference. */
export function initialLang() {
  const s = stored();
  if (LANGS.includes(s)) return s;
  for (const l of navigator.languages || [navigator.language || 'en']) {
    const base = String(l).toLowerCase().split('-')[0];
    if (LANGS.includes(base)) return base;
  }
  return 'en';
}

export function getLang() { return lang; }

/** The BCP 47 tag for Intl formatters and <html lang>. */
export function locale() { return lang === 'zh' ? 'zh-CN' : 'en'; }

export function setLang(l, { save = false } = {}) {
  lang = LANGS.includes(l) ? l : 'en';
  if (save) {
    try { localStorage.setItem(KEY, lang); } catch { /* private mode */ }
  }
  document.documentElement.lang = locale();
  apply(document);
  for (const fn of listeners) fn(lang);
}

export function onLangChange(fn) { listeners.add(fn); }

/** t('search.ok', {q, total}) looks the key up and fills {name} placeholders. */
export function t(key, vars) {
  const s = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  if (!vars) return s;
  return s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** Fills the static markup's data-i18n* attributes under root. */
export function apply(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) {
    const narrowKey = el.dataset.i18nPlaceholderNarrow;
    el.placeholder = t(narrowKey && narrow.matches ? narrowKey : el.dataset.i18nPlaceholder);
  }
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll('[data-i18n-aria-label]')) el.setAttribute('aria-label', t(el.dataset.i18nAriaLabel));
}
