// The page's only connection to the server: same-origin /api/* (the CSP's
// connect-src 'self'). Every failure becomes an ApiError whose message is the
// server's own {"error":{"code","message"}} text when there is one.
import { t } from './i18n.js';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The operator's access token (TARPORT_ACCESS_TOKEN), when the server has
// one: asked for once, kept in this browser, sent on every API call.
const TOKEN_KEY = 'tarport.token';

export function accessToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setAccessToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch { /* private mode: this page only */ }
  memoryToken = token;
  cache.clear();
}
let memoryToken = '';

async function request(path, init = {}) {
  let resp;
  const token = accessToken() || memoryToken;
  const headers = { ...(init.headers || {}) };
  if (token) headers['X-Tarport-Token'] = token;
  try {
    resp = await fetch(path, { credentials: 'same-origin', cache: 'no-store', ...init, headers });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', t('err.network'));
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const err = body && body.error;
    // The server wants a token: the page asks for it (app.js).
    if (err && err.code === 'access_denied') window.dispatchEvent(new CustomEvent('tarport:token-needed'));
    if (err && err.message) throw new ApiError(resp.status, err.code || 'error', err.message);
    throw new ApiError(resp.status, 'bad_answer', t('err.badAnswer', { status: resp.status }));
  }
  if (body == null) throw new ApiError(resp.status, 'bad_answer', t('err.badAnswer', { status: resp.status }));
  return body;
}

// Discovery answers are cached by the server for minutes; a short cache here
// keeps back/forward and language switches from asking again. It holds at
// most CACHE_MAX answers, none older than CACHE_MS: a page left open for a
// day of searching does not grow.
const cache = new Map();
const CACHE_MS = 60_000;
const CACHE_MAX = 100;

function cachedGet(path, signal) {
  const now = Date.now();
  const hit = cache.get(path);
  if (hit && now - hit.at < CACHE_MS) return hit.promise;
  // Oldest first (insertion order): drop the stale, then the oldest over the cap.
  for (const [k, v] of cache) {
    if (now - v.at < CACHE_MS && cache.size < CACHE_MAX) break;
    cache.delete(k);
  }
  const promise = request(path, { signal });
  cache.delete(path); // set anew, so the map's order stays oldest first
  cache.set(path, { at: now, promise });
  promise.catch(() => { if (cache.get(path)?.promise === promise) cache.delete(path); });
  return promise;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v != null && v !== '') q.set(k, String(v));
  return q.toString();
}

/** How many answers the cache holds (for tests). */
export function cacheSize() {
  return cache.size;
}

export function search(q, page = 1, limit = 25, signal) {
  return cachedGet(`/api/search?${query({ q, page, limit })}`, signal);
}

export function popular(limit = 24, signal) {
  return cachedGet(`/api/popular?${query({ limit })}`, signal);
}

export function imageDetails(image, signal) {
  return cachedGet(`/api/image-details?${query({ image })}`, signal);
}

/**
 * Starts (or joins) a download job: one image, or several in one tar
 * (images, a bundle); credentials, if any, travel in this body.
 */
export function createDownload({ image, images, platform, username, password }) {
  const body = Array.isArray(images) && images.length ? { images, platform } : { image, platform };
  if (username) body.username = username;
  if (password) body.password = password;
  return request('/api/downloads', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
}

/** What a bundle of a Compose file holds: its services, each image once. */
export function composeImages(compose) {
  return request('/api/compose', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ compose }),
  });
}

/**
 * Reads a job. A private job's link is given only with the registry
 * credentials it was asked with (HTTP basic auth; kept in memory by the
 * caller, never stored).
 */
export function getDownload(id, signal, creds) {
  const headers = {};
  if (creds && creds.username) headers.Authorization = `Basic ${base64(`${creds.username}:${creds.password}`)}`;
  return request(`/api/downloads/${encodeURIComponent(id)}`, { signal, headers });
}

// base64 of a string's UTF-8 bytes (btoa alone takes only Latin-1).
function base64(s) {
  let bin = '';
  for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
  return btoa(bin);
}
