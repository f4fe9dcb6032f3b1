// The console's views. Each reads what it shows from /console/api/* and refreshes when a live
// snapshot says something changed (a commit happened), so new sagas and lag show within a second.
import htm from 'htm';
import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { api } from './client.js';

const html = htm.bind(h);

const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '');
const round = (value, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : '–');

/** Per-second rates between consecutive snapshots. */
function rates(history) {
  const points = { t: [], requests: [], errors: [], latencyMs: [], units: [] };
  for (let i = 1; i < history.length; i++) {
    const a = history[i - 1];
    const b = history[i];
    const seconds = Math.max(0.001, (b.atMs - a.atMs) / 1000);
    const count = b.http.latencyCount - a.http.latencyCount;
    points.t.push(b.atMs / 1000);
    points.requests.push((b.http.requests - a.http.requests) / seconds);
    points.errors.push((b.http.errors - a.http.errors) / seconds);
    points.units.push((b.commits.units - a.commits.units) / seconds);
    points.latencyMs.push(
      count > 0 ? ((b.http.latencySumSeconds - a.http.latencySumSeconds) / count) * 1000 : null,
    );
  }
  return points;
}

/** A uPlot chart of `series` over `t`, redrawn with new data, sized to its container. */
function Chart({ title, t, series, testid }) {
  const element = useRef(null);
  const plot = useRef(null);
  useEffect(() => {
    const width = Math.max(300, element.current.clientWidth - 10);
    plot.current = new uPlot(
      {
        width,
        height: 200,
        title,
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2 }))],
        axes: [{}, { size: 60 }],
      },
      [t, ...series.map((s) => s.values)],
      element.current,
    );
    return () => plot.current.destroy();
  }, [series.length]);
  useEffect(() => {
    plot.current?.setData([t, ...series.map((s) => s.values)]);
  });
  return html`<div class="chart" ref=${element} data-testid=${testid}></div>`;
}

export function Overview({ live }) {
  const latest = live.latest;
  if (latest === null) return html`<p class="loading">Waiting for the first live figures…</p>`;
  const points = rates(live.history);
  const last = (values) => values[values.length - 1];
  const cards = [
    ['Requests/s', round(last(points.requests) ?? 0)],
    ['Mean latency (ms)', round(last(points.latencyMs) ?? Number.NaN)],
    ['Errors/s (5xx)', round(last(points.errors) ?? 0)],
    ['Commits units/s', round(last(points.units) ?? 0)],
    ['Active sagas', latest.sagas.active],
    ['Sleeping sagas', latest.sagas.sleeping],
    ['Queued sagas', latest.sagas.queued],
  ];
  return html`<div data-testid="view-overview">
    <div class="cards">
      ${cards.map(([label, value]) => html`<div class="card"><div class="label">${label}</div><div class="value">${value}</div></div>`)}
    </div>
    <section class="panel">
      <h2>Throughput</h2>
      <${Chart}
        title=""
        testid="chart-throughput"
        t=${points.t}
        series=${[
          { label: 'requests/s', color: '#1d4fa6', values: points.requests },
          { label: 'commit units/s', color: '#2f9e5b', values: points.units },
          { label: 'errors/s', color: '#c23b3b', values: points.errors },
        ]}
      />
    </section>
    <section class="panel">
      <h2>Latency</h2>
      <${Chart} title="" testid="chart-latency" t=${points.t} series=${[{ label: 'mean ms', color: '#8a5a00', values: points.latencyMs }]} />
    </section>
    <section class="panel">
      <h2>Node</h2>
      <p>
        <span class="mono">${latest.node}</span>
        ${latest.ownedPartitions === null ? ' · embedded shape (one node owns everything)' : ` · owns work partitions [${latest.ownedPartitions.join(', ')}]`}
      </p>
      ${
        latest.problems.length === 0
          ? html`<p class="muted">No recent problems.</p>`
          : html`<ul>${latest.problems.map((p) => html`<li class="error">${time(p.at)} ${p.message}</li>`)}</ul>`
      }
    </section>
  </div>`;
}

/** Reloads `load` when the live commit count moves (and at first). */
function useRefreshing(load, live, dependencies) {
  const [state, setState] = useState({ data: null, error: null });
  const units = live.latest?.commits.units ?? 0;
  useEffect(() => {
    let current = true;
    load().then(
      (data) => current && setState({ data, error: null }),
      (error) => current && setState((s) => ({ data: s.data, error })),
    );
    return () => {
      current = false;
    };
  }, [units, ...dependencies]);
  return state;
}

export function Sagas({ live }) {
  const [status, setStatus] = useState('');
  const [type, setType] = useState('');
  const [q, setQ] = useState('');
  const query = new URLSearchParams({
    limit: '200',
    ...(status ? { status } : {}),
    ...(type ? { type } : {}),
    ...(q ? { q } : {}),
  });
  const { data, error } = useRefreshing(() => api(`/console/api/sagas?${query}`), live, [status, type, q]);
  return html`<section class="panel" data-testid="view-sagas">
    <h2>Sagas</h2>
    <div class="filters">
      <select value=${status} onChange=${(e) => setStatus(e.target.value)} data-testid="saga-status">
        <option value="">any status</option>
        ${['running', 'compensating', 'completed', 'compensated', 'failed', 'cancelled'].map((s) => html`<option value=${s}>${s}</option>`)}
      </select>
      <input placeholder="type" value=${type} onInput=${(e) => setType(e.target.value)} data-testid="saga-type" />
      <input placeholder="search by id" value=${q} onInput=${(e) => setQ(e.target.value)} data-testid="saga-search" />
    </div>
    ${error ? html`<p class="error">${error.message}</p>` : null}
    <table>
      <thead><tr><th>id</th><th>type</th><th>status</th><th>created</th><th>updated</th><th>reason</th></tr></thead>
      <tbody>
        ${(data?.sagas ?? []).map(
          (saga) => html`<tr data-testid="saga-row">
            <td class="mono"><a href=${`#/sagas/${encodeURIComponent(saga.id)}`}>${saga.id}</a></td>
            <td>${saga.type}</td>
            <td><span class=${`status ${saga.status}`}>${saga.status}</span></td>
            <td>${time(saga.createdAt)}</td>
            <td>${time(saga.updatedAt)}</td>
            <td class="muted">${saga.reason ?? ''}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${data !== null && data.sagas.length === 0 ? html`<p class="muted">No sagas match.</p>` : null}
  </section>`;
}

function callLabel(call) {
  if (call.kind === 'send') return `${call.entity}.${call.command}`;
  if (call.kind === 'cancelled') return call.reason;
  return call.name ?? call.topic ?? call.kind;
}

/**
 * The operator's Cancel action for a running saga: the node records the cancellation (routed to
 * the saga's owner); the saga stops at its next durable boundary, compensates and ends cancelled,
 * which the timeline shows live.
 */
function CancelSaga({ id }) {
  const [reason, setReason] = useState('');
  const [message, setMessage] = useState(null);
  async function cancel() {
    try {
      const { cancellation } = await api(`/console/api/sagas/${encodeURIComponent(id)}/cancel`, {
        ...(reason.trim() === '' ? {} : { reason: reason.trim() }),
      });
      setMessage(
        cancellation === 'requested' ? 'Cancellation requested' : 'Cancellation was already requested',
      );
    } catch (failure) {
      setMessage(failure.message);
    }
  }
  return html`<div class="filters">
    <input placeholder="reason (optional)" maxlength="500" value=${reason} onInput=${(e) => setReason(e.target.value)} data-testid="cancel-reason" />
    <button onClick=${cancel} data-testid="cancel-saga">Cancel saga</button>
    ${message ? html`<span data-testid="cancel-message">${message}</span>` : null}
  </div>`;
}

export function SagaTimeline({ id, live }) {
  const { data, error } = useRefreshing(() => api(`/console/api/sagas/${encodeURIComponent(id)}`), live, [
    id,
  ]);
  if (error && data === null)
    return html`<section class="panel"><p class="error">${error.message}</p></section>`;
  if (data === null) return html`<p class="loading">Loading saga ${id}…</p>`;
  const { progress, journal, traceId, traceUrl } = data;
  const started = progress.createdAt;
  const endAt = Math.max(started + 1, ...journal.map((entry) => entry.at), progress.updatedAt);
  const span = endAt - started;
  let previous = started;
  return html`<div data-testid="view-saga">
    <section class="panel">
      <h2>Saga <span class="mono">${progress.id}</span> · ${progress.type} · <span class=${`status ${progress.status}`} data-testid="saga-status-badge">${progress.status}</span></h2>
      ${progress.reason ? html`<p class="error">${progress.reason}</p>` : null}
      ${progress.status === 'running' ? html`<${CancelSaga} id=${progress.id} />` : null}
      <p class="muted">
        created ${time(progress.createdAt)} · updated ${time(progress.updatedAt)} · trace
        ${traceId === null ? ' –' : traceUrl === null ? html` <span class="mono">${traceId}</span>` : html` <a class="mono" href=${traceUrl} target="_blank">${traceId}</a>`}
      </p>
    </section>
    <section class="panel">
      <h2>Timeline</h2>
      <ul class="timeline" data-testid="timeline">
        ${progress.calls.map((call) => {
          const duration = Math.max(0, call.at - previous);
          const offset = ((previous - started) / span) * 100;
          previous = call.at;
          const kindClass =
            call.kind === 'compensation' || call.kind === 'cancelled'
              ? 'compensation'
              : call.status === 'failed'
                ? 'failed'
                : '';
          return html`<li data-testid="timeline-call">
            <span>${call.kind}</span>
            <span><strong>${callLabel(call)}</strong>${call.error ? html` <span class="error">${call.error}</span>` : null}
              <div class=${`bar ${kindClass}`} style=${`margin-left:${offset}%;width:${Math.max(0.5, (duration / span) * 100)}%`}></div>
            </span>
            <span>${call.attempts === undefined ? '' : `${call.attempts} attempt${call.attempts === 1 ? '' : 's'}`}</span>
            <span>${duration} ms</span>
            <span class="muted">${time(call.at)}</span>
          </li>`;
        })}
      </ul>
    </section>
    <section class="panel">
      <h2>Journal</h2>
      <table>
        <thead><tr><th>#</th><th>kind</th><th>name</th><th>status</th><th>attempts</th><th>at</th></tr></thead>
        <tbody>
          ${journal.map(
            (entry) =>
              html`<tr><td>${entry.sequence}</td><td>${entry.kind}</td><td class="mono">${entry.name}</td><td>${entry.status}</td><td>${entry.attempts}</td><td>${time(entry.at)}</td></tr>`,
          )}
        </tbody>
      </table>
    </section>
  </div>`;
}

export function Topics({ live }) {
  const { data, error } = useRefreshing(() => api('/console/api/topics'), live, []);
  const groups = new Set();
  for (const snapshot of live.history)
    for (const lag of Object.values(snapshot.lag)) for (const g of Object.keys(lag)) groups.add(g);
  const names = [...groups].sort();
  const t = live.history.map((s) => s.atMs / 1000);
  const series = names.map((group, index) => ({
    label: group,
    color: ['#1d4fa6', '#2f9e5b', '#c23b3b', '#8a5a00', '#6b3fa0'][index % 5],
    values: live.history.map((s) => Object.values(s.lag).reduce((sum, lag) => sum + (lag[group] ?? 0), 0)),
  }));
  return html`<div data-testid="view-topics">
    <section class="panel">
      <h2>Consumer lag over time</h2>
      ${names.length === 0 ? html`<p class="muted">No subscriptions consume here.</p>` : html`<${Chart} title="" testid="chart-lag" t=${t} series=${series} />`}
    </section>
    <section class="panel">
      <h2>Topics</h2>
      ${error ? html`<p class="error">${error.message}</p>` : null}
      <table>
        <thead><tr><th>topic</th><th>partition</th><th>start</th><th>end</th><th>group</th><th>committed</th><th>lag</th></tr></thead>
        <tbody>
          ${(data?.topics ?? []).flatMap((topic) =>
            topic.partitions.flatMap((p) =>
              (p.groups.length === 0 ? [null] : p.groups).map(
                (g) => html`<tr data-testid="topic-row">
                  <td class="mono">${topic.topic}</td><td>${p.partition}</td><td>${p.start}</td><td>${p.end}</td>
                  <td class="mono">${g?.group ?? ''}</td><td>${g?.committed ?? ''}</td><td data-testid=${g ? 'lag-cell' : undefined}>${g?.lag ?? ''}</td>
                </tr>`,
              ),
            ),
          )}
        </tbody>
      </table>
    </section>
  </div>`;
}

export function DeadLetters({ live }) {
  const [selected, setSelected] = useState(new Set());
  const [message, setMessage] = useState(null);
  const [reload, setReload] = useState(0);
  const { data, error } = useRefreshing(() => api('/console/api/dead-letters'), live, [reload]);
  const key = (letter) => `${letter.deadLetter.partition}/${letter.deadLetter.offset}`;
  async function retry(letters) {
    try {
      const { results } = await api('/console/api/dead-letters/retry', {
        letters: letters.map((l) => l.deadLetter),
      });
      const ok = results.filter((r) => r.ok).length;
      setMessage(
        `Retried ${ok} of ${results.length}${ok < results.length ? `: ${results.find((r) => !r.ok).error}` : ''}`,
      );
      setSelected(new Set());
      setReload((n) => n + 1);
    } catch (failure) {
      setMessage(failure.message);
    }
  }
  const letters = data?.deadLetters ?? [];
  return html`<section class="panel" data-testid="view-dead-letters">
    <h2>Dead letters</h2>
    ${error ? html`<p class="error">${error.message}</p>` : null}
    ${message ? html`<p data-testid="retry-message">${message}</p>` : null}
    <div class="filters">
      <button disabled=${selected.size === 0} onClick=${() => retry(letters.filter((l) => selected.has(key(l))))} data-testid="retry-selected">
        Retry selected (${selected.size})
      </button>
    </div>
    <table>
      <thead><tr><th></th><th>subscription</th><th>from</th><th>error</th><th>attempts</th><th>at</th><th>value</th><th></th></tr></thead>
      <tbody>
        ${letters.map(
          (letter) => html`<tr data-testid="dead-letter-row">
            <td><input type="checkbox" checked=${selected.has(key(letter))} onChange=${(e) => {
              const next = new Set(selected);
              if (e.target.checked) next.add(key(letter));
              else next.delete(key(letter));
              setSelected(next);
            }} /></td>
            <td>${letter.subscription}</td>
            <td class="mono">${letter.topic}/${letter.partition}@${letter.offset}</td>
            <td class="error">${letter.error}</td>
            <td>${letter.attempts}</td>
            <td>${time(letter.at)}</td>
            <td class="mono">${letter.value}</td>
            <td><button onClick=${() => retry([letter])} data-testid="retry-one">Retry</button></td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${data !== null && letters.length === 0 ? html`<p class="muted">No dead letters.</p>` : null}
  </section>`;
}

export function Policies({ live }) {
  const tick = Math.floor((live.latest?.atMs ?? 0) / 2000);
  const [state, setState] = useState({ data: null, error: null });
  useEffect(() => {
    api('/policies').then(
      (data) => setState({ data, error: null }),
      (error) => setState((s) => ({ ...s, error })),
    );
  }, [tick]);
  const policies = Object.entries(state.data?.policies ?? {});
  return html`<section class="panel" data-testid="view-policies">
    <h2>Resilience policies</h2>
    ${state.error ? html`<p class="error">${state.error.message}</p>` : null}
    ${policies.length === 0 ? html`<p class="muted">No policies exposed on this node.</p>` : null}
    <table>
      <tbody>
        ${policies.map(([name, snapshot]) => html`<tr><td class="mono">${name}</td><td class="mono">${JSON.stringify(snapshot)}</td></tr>`)}
      </tbody>
    </table>
  </section>`;
}

/**
 * Which node owns which work partitions, with the fencing epoch of each claim: the cluster-wide
 * claims every live snapshot carries (cluster shape), so a rebalance shows within a second.
 */
export function Nodes({ live }) {
  const partitions = live.latest?.partitions;
  if (live.latest === null) return html`<p class="loading">Waiting for the first live figures…</p>`;
  if (partitions === null || partitions === undefined)
    return html`<section class="panel" data-testid="view-nodes"><h2>Nodes</h2>
      <p class="muted">Embedded shape: this node (${live.latest.node}) owns everything.</p></section>`;
  const byNode = new Map();
  for (const claim of partitions) byNode.set(claim.owner, [...(byNode.get(claim.owner) ?? []), claim]);
  return html`<div data-testid="view-nodes">
    <section class="panel">
      <h2>Nodes</h2>
      <table>
        <thead><tr><th>node</th><th>partitions (epoch)</th></tr></thead>
        <tbody>
          ${[...byNode.keys()].sort().map(
            (node) => html`<tr data-testid="node-row">
              <td class="mono">${node}${node === live.latest.node ? ' (this node)' : ''}</td>
              <td class="mono">${byNode
                .get(node)
                .map((claim) => `${claim.partition} (${claim.epoch})`)
                .join(', ')}</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </section>
    <section class="panel">
      <h2>Work partitions</h2>
      <table>
        <thead><tr><th>partition</th><th>owner</th><th>epoch</th><th>claimed</th></tr></thead>
        <tbody>
          ${partitions.map(
            (claim) => html`<tr data-testid="partition-row">
              <td>${claim.partition}</td><td class="mono">${claim.owner}</td><td>${claim.epoch}</td><td>${time(claim.claimedAt)}</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </section>
  </div>`;
}
