// form#quick: a full reference, a platform, optional registry credentials.
// Credentials go into the POST body; the password field is emptied right
// after submit. The downloads panel keeps them in memory for that private
// job's own status reads (its link needs them), never in storage. While a reference is
// typed, the image's details are looked up (debounced) so the platforms it
// offers beyond the standard list can be picked too.
import * as api from '../api.js';
import { h } from '../dom.js';
import { t } from '../i18n.js';
import * as fmt from '../format.js';

/** The seed's platform list, linux/amd64 first (the default). */
export const QUICK_PLATFORMS = ['linux/amd64', 'linux/arm64', 'linux/arm/v7', 'linux/arm/v6', 'linux/386', 'windows/amd64'];

/** Splits "ghcr.io/o/r:tag" into repository and tag (or digest); null if it cannot be a reference. */
export function parseRef(ref) {
  const s = String(ref || '').trim();
  if (!s || /\s/.test(s) || s.length > 512) return null;
  const at = s.indexOf('@');
  const base = at >= 0 ? s.slice(0, at) : s;
  const slash = base.lastIndexOf('/');
  const colon = base.lastIndexOf(':');
  const hasTag = colon > slash;
  const repo = hasTag ? base.slice(0, colon) : base;
  if (!/^[a-z0-9][a-z0-9._\-/:]*$/i.test(repo) || repo.endsWith('/')) return null;
  return { repo, tag: hasTag ? base.slice(colon + 1) : (at >= 0 ? null : 'latest'), digest: at >= 0 ? s.slice(at + 1) : null };
}

export function setupQuick({ form, download, addToBasket }) {
  const image = form.querySelector('#quick-image');
  const platform = form.querySelector('#quick-platform');
  const username = form.querySelector('#quick-username');
  const password = form.querySelector('#quick-password');
  const submit = form.querySelector('#quick-submit');
  const imageHint = form.querySelector('#quick-image-hint');
  const platformHint = form.querySelector('#quick-platform-hint');
  const listeners = new Set();

  platform.addEventListener('change', () => { for (const fn of listeners) fn(platform.value); });

  const clearInvalid = () => {
    image.removeAttribute('aria-invalid');
    imageHint.classList.remove('is-error');
    imageHint.textContent = t('quick.imageHint');
  };

  // The typed reference, or null (and the field marked) when there is none.
  const typed = () => {
    const ref = image.value.trim();
    if (!ref) {
      image.setAttribute('aria-invalid', 'true');
      imageHint.classList.add('is-error');
      imageHint.textContent = t('quick.required');
      image.focus();
      return null;
    }
    clearInvalid();
    return ref;
  };
  form.querySelector('#quick-add').addEventListener('click', () => {
    const ref = typed();
    if (ref && addToBasket(ref)) image.value = '';
  });

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const ref = typed();
    if (!ref) return;
    const req = {
      image: ref,
      platform: platform.value,
      username: username.value.trim(),
      password: password.value,
    };
    password.value = ''; // never kept beyond this request
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    try {
      await download(req);
    } finally {
      req.password = '';
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
    }
  });

  // Extra platforms the typed image offers (ppc64le, s390x, ...).
  let timer = 0;
  let asked = '';
  const extraGroup = () => platform.querySelector('optgroup');
  const lookUp = async () => {
    const ref = parseRef(image.value);
    const key = ref ? `${ref.repo}:${ref.tag || ''}` : '';
    if (key === asked) return;
    asked = key;
    if (!ref || !ref.tag) { setExtras([], ''); return; }
    try {
      const d = await api.imageDetails(ref.repo);
      if (asked !== key) return;
      const tag = (d.tags || []).find((tg) => tg.name === ref.tag);
      const offered = tag ? [...new Set((tag.platforms || []).map(fmt.platformString).filter(Boolean))] : [];
      setExtras(offered, `${ref.repo}:${ref.tag}`);
    } catch {
      if (asked === key) setExtras([], '');
    }
  };
  const setExtras = (offered, label) => {
    const standard = new Set(QUICK_PLATFORMS.map(fmt.platformLabel));
    const extras = offered.filter((p) => !standard.has(fmt.platformLabel(p)));
    const keep = platform.value;
    const old = extraGroup();
    if (old) old.remove();
    if (extras.length) {
      platform.append(h('optgroup', { label: t('quick.moreGroup') },
        extras.map((p) => h('option', { value: p, text: fmt.platformLabel(p) }))));
    }
    if ([...platform.options].some((o) => o.value === keep)) platform.value = keep;
    else { platform.value = QUICK_PLATFORMS[0]; platform.dispatchEvent(new Event('change')); }
    platformHint.textContent = offered.length ? t('quick.offers', { image: label, list: offered.map(fmt.platformLabel).join(', ') }) : '';
  };
  // The lookup's hint changes the form's height: not while a button of the
  // form is being pressed (leaving the field to click one fires change),
  // or the button moves away between press and release and the click is lost.
  let pressed = false;
  let pending = false;
  const lookUpSoon = () => {
    if (pressed) pending = true;
    else lookUp();
  };
  form.addEventListener('pointerdown', () => { pressed = true; }, true);
  const released = () => {
    if (!pressed) return;
    pressed = false;
    if (pending) {
      pending = false;
      setTimeout(lookUp, 0); // after the click this release makes
    }
  };
  // A touch that turns into a scroll ends in pointercancel; a release
  // outside the window may never reach it.
  for (const ev of ['pointerup', 'pointercancel']) window.addEventListener(ev, released, true);
  window.addEventListener('blur', released);
  image.addEventListener('input', () => {
    clearInvalid();
    clearTimeout(timer);
    timer = setTimeout(lookUpSoon, 700);
  });
  image.addEventListener('change', () => { clearTimeout(timer); lookUpSoon(); });

  /** Selects plat (adding it when the list lacks it) and tells the listeners. */
  const setPlatform = (plat) => {
    if (![...platform.options].some((o) => o.value === plat)) {
      platform.append(h('option', { value: plat, text: fmt.platformLabel(plat) }));
    }
    platform.value = plat;
    platform.dispatchEvent(new Event('change'));
  };

  return {
    value: () => platform.value,
    setPlatform,
    /** The login typed for private images, when both fields are; the password field is emptied (used once). */
    takeCreds() {
      const c = { username: username.value.trim(), password: password.value };
      password.value = '';
      return c.username && c.password ? c : { username: '', password: '' };
    },
    onChange: (fn) => { listeners.add(fn); return () => listeners.delete(fn); },
    /** Puts a reference (and platform) in the form, e.g. to retry with credentials. */
    prefill(ref, plat, focusCreds) {
      if (ref != null) image.value = ref;
      clearInvalid();
      if (plat) setPlatform(plat);
      form.closest('section').scrollIntoView({ block: 'start' });
      (focusCreds ? username : image).focus();
      clearTimeout(timer);
      lookUp();
    },
    relabel() {
      const g = extraGroup();
      if (g) g.label = t('quick.moreGroup');
      if (image.getAttribute('aria-invalid')) imageHint.textContent = t('quick.required');
      asked = '';
      lookUp();
    },
  };
}
