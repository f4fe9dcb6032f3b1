// The console's calls to its node, with the operator's token when it has one.
const tokenMatch = /^#token=([^&]+)/.exec(location.hash);
if (tokenMatch !== null) {
  sessionStorage.setItem('meridian-token', decodeURIComponent(tokenMatch[1]));
  history.replaceState(null, '', `${location.pathname}#/`);
}

export function authHeaders() {
  const token = sessionStorage.getItem('meridian-token');
  return token === null ? {} : { authorization: `Bearer ${token}` };
}

/** GET or POST JSON from the node; throws with the problem's detail when it refuses. */
export async function api(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { ...authHeaders(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(payload.detail ?? payload.title ?? `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return payload;
}
