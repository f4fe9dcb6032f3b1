// The Meridian console: a Preact app with no build step (htm instead of JSX). It reads the
// node's /console/api/* with the operator's token (taken from the URL's #token=..., kept for the
// tab's session) and follows the live figures over Server-Sent Events.
import htm from 'htm';
import { h, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { authHeaders } from './client.js';
import { DeadLetters, Nodes, Overview, Policies, Sagas, SagaTimeline, Topics } from './views.js';

const html = htm.bind(h);

/** How many snapshots the charts keep: two minutes at two a second. */
const historyLength = 240;

/** Follows /console/api/events (fetch, so the token travels as a header); reconnects after a pause. */
function useLive() {
  const [state, setState] = useState({ latest: null, history: [], connected: false, error: null });
  useEffect(() => {
    let stopped = false;
    let controller;
    async function connect() {
      while (!stopped) {
        controller = new AbortController();
        try {
          const response = await fetch('/console/api/events', {
            headers: authHeaders(),
            signal: controller.signal,
          });
          if (!response.ok) {
            const payload = await response.json().catch(() => ({}));
            setState((s) => ({
              ...s,
              connected: false,
              error: { status: response.status, message: payload.detail ?? payload.title },
            }));
            if (response.status === 401 || response.status === 403) return;
          } else {
            await readEvents(response.body, (snapshot) =>
              setState((s) => ({
                latest: snapshot,
                history: [...s.history, snapshot].slice(-historyLength),
                connected: true,
                error: null,
              })),
            );
          }
        } catch {
          // The node went away or the page is closing: try again below.
        }
        setState((s) => ({ ...s, connected: false }));
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
    connect();
    return () => {
      stopped = true;
      controller?.abort();
    };
  }, []);
  return state;
}

async function readEvents(stream, onSnapshot) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(frame)?.[1];
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (event === 'snapshot' && data !== undefined) onSnapshot(JSON.parse(data));
      end = buffer.indexOf('\n\n');
    }
  }
}

function useRoute() {
  const [hash, setHash] = useState(location.hash || '#/');
  useEffect(() => {
    const onChange = () => setHash(location.hash || '#/');
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return hash.slice(1).split('/').filter(Boolean).map(decodeURIComponent);
}

function TokenForm({ error }) {
  const [token, setToken] = useState('');
  return html`<section class="panel" data-testid="token-form">
    <h2>Sign in</h2>
    <p class="error">${error.status}: ${error.message ?? 'not allowed'}</p>
    <p class="muted">The console is for operators: paste an operator token (the demo prints one at start).</p>
    <form onSubmit=${(event) => {
      event.preventDefault();
      sessionStorage.setItem('meridian-token', token.trim());
      location.reload();
    }}>
      <input type="password" placeholder="operator token" value=${token} onInput=${(e) => setToken(e.target.value)} />
      <button type="submit">Use token</button>
    </form>
  </section>`;
}

const tabs = [
  ['', 'Overview'],
  ['sagas', 'Sagas'],
  ['topics', 'Topics'],
  ['dead-letters', 'Dead letters'],
  ['policies', 'Policies'],
  ['nodes', 'Nodes'],
];

function App() {
  const live = useLive();
  const route = useRoute();
  const [section = '', id] = route;
  let view;
  if (live.error !== null && (live.error.status === 401 || live.error.status === 403))
    view = html`<${TokenForm} error=${live.error} />`;
  else if (section === 'sagas' && id !== undefined) view = html`<${SagaTimeline} id=${id} live=${live} />`;
  else if (section === 'sagas') view = html`<${Sagas} live=${live} />`;
  else if (section === 'topics') view = html`<${Topics} live=${live} />`;
  else if (section === 'dead-letters') view = html`<${DeadLetters} live=${live} />`;
  else if (section === 'policies') view = html`<${Policies} live=${live} />`;
  else if (section === 'nodes') view = html`<${Nodes} live=${live} />`;
  else view = html`<${Overview} live=${live} />`;
  return html`<div>
    <header>
      <h1>Meridian</h1>
      <nav>
        ${tabs.map(
          ([path, label]) =>
            html`<a href=${`#/${path}`} class=${section === path ? 'active' : ''} data-testid=${`nav-${path || 'overview'}`}>${label}</a>`,
        )}
      </nav>
      <span class=${live.connected ? 'live' : 'live off'} data-testid="live">${live.connected ? `● live · ${live.latest?.node ?? ''}` : '○ reconnecting'}</span>
    </header>
    <main>${view}</main>
  </div>`;
}

render(html`<${App} />`, document.getElementById('root'));
