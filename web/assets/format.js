// Human-readable numbers, sizes and dates in the current language.
import { locale, t } from './i18n.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** bytes(536870912) = "512 MiB", bytes(1073741824) = "1.0 GiB" (binary units). */
export function bytes(n) {
  if (n == null || !Number.isFinite(Number(n))) return '—';
  let v = Number(n);
  if (v < 1024) return `${v} B`;
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
  // Three significant digits at most: 1.0 GiB, 69.0 MiB, 512 MiB.
  if (v >= 1023.95) { v /= 1024; i++; }
  return `${v >= 100 ? Math.round(v) : v.toFixed(1)} ${UNITS[i]}`;
}

export function speed(bytesPerSecond) {
  if (!(bytesPerSecond > 0)) return t('dl.speedNone');
  return `${bytes(Math.round(bytesPerSecond))}/s`;
}

/** 13718294112 -> "13.7B" in English, "137.2亿" in Chinese. */
export function compact(n) {
  if (n == null) return '';
  try {
    return new Intl.NumberFormat(locale(), { notation: 'compact', maximumFractionDigits: 1 }).format(n);
  } catch {
    return String(n);
  }
}

export function full(n) {
  if (n == null) return '';
  return new Intl.NumberFormat(locale()).format(n);
}

const STEPS = [
  ['year', 365 * 24 * 3600],
  ['month', 30 * 24 * 3600],
  ['week', 7 * 24 * 3600],
  ['day', 24 * 3600],
  ['hour', 3600],
  ['minute', 60],
];

/** "3 days ago" / "3天前"; null when the date is missing or unreadable. */
export function relative(iso, now = Date.now()) {
  if (!iso) return null;
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return null;
  const secs = (ms - now) / 1000;
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: 'auto' });
  for (const [unit, size] of STEPS) {
    if (Math.abs(secs) >= size) return rtf.format(Math.round(secs / size), unit);
  }
  return t('time.justNow');
}

/** A full localized date and time, for title attributes and expiry times. */
export function dateTime(iso) {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return '';
  return new Intl.DateTimeFormat(locale(), { dateStyle: 'medium', timeStyle: 'short' }).format(ms);
}

export function time(iso) {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return '';
  return new Intl.DateTimeFormat(locale(), { timeStyle: 'short' }).format(ms);
}

/** A short duration for ETAs: "45 s", "3 min", "1 h 5 min" (or the Chinese units). */
export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '';
  const s = Math.round(seconds);
  const zh = locale().startsWith('zh');
  const u = zh ? { s: '秒', m: '分钟', h: '小时' } : { s: ' s', m: ' min', h: ' h' };
  if (s < 60) return `${s}${u.s}`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m}${u.m}`;
  return `${Math.floor(m / 60)}${u.h} ${m % 60}${u.m}`;
}

/** "linux/arm/v7" from an API platform object; variant "" or null is left out. */
export function platformString(p) {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** How a platform is shown: arm64's default variant v8 is left out, as docker does. */
export function platformLabel(value) {
  return String(value ?? '').replace(/^(\w+)\/arm64\/v8$/, '$1/arm64');
}
