/** Circuit breakers: state, failure rate, calls, the last transitions and a failure-rate sparkline. */
import { html, nothing, svg } from 'lit';
import { ago, percent, sparklinePoints, words } from '../format.js';
import { SPARKLINE_SAMPLES, type BreakerView } from '../store.js';

const W = 120;
const H = 28;

export interface BreakerActions {
  reset(name: string): void;
  forceOpen(name: string): void;
}

/** The line, and the area under it from its first point to its last. */
function sparkShape(points: string) {
  const xs = points.split(' ').map((p) => p.split(',')[0]);
  return svg`<polygon points="${xs[0]},${H - 1} ${points} ${xs.at(-1)},${H - 1}" class="spark-area" /><polyline points=${points} class="spark-line" />`;
}

function sparkline(b: BreakerView) {
  const last = b.rates.at(-1);
  const label = `Failure rate over the last ${b.rates.length} seconds; now ${percent(last)}`;
  return html`<svg class="spark" width=${W} height=${H} viewBox="0 0 ${W} ${H}" role="img" aria-label=${label}>
    ${svg`<line x1="0" y1=${H - 1} x2=${W} y2=${H - 1} class="spark-base" />`}
    ${b.rates.length > 0 ? sparkShape(sparklinePoints(b.rates, W, H, SPARKLINE_SAMPLES)) : nothing}
  </svg>`;
}

export function breakersPanel(breakers: BreakerView[], now: number, actions: BreakerActions | null) {
  return html`<section class="panel panel-wide" aria-labelledby="breakers-title">
    <h2 id="breakers-title">Circuit breakers <span class="count">${breakers.length}</span></h2>
    ${breakers.length === 0
      ? html`<p class="empty">No breakers yet.</p>`
      : html`<table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">State</th>
              <th scope="col" class="num">Failure rate</th>
              <th scope="col" class="num">Calls</th>
              <th scope="col" class="num">Failures</th>
              <th scope="col" class="num">Rejected</th>
              <th scope="col">Failure rate, last minute</th>
              <th scope="col">Last transitions</th>
              ${actions ? html`<th scope="col"><span class="visually-hidden">Actions</span></th>` : nothing}
            </tr>
          </thead>
          <tbody>
            ${breakers.map(
              (b) => html`<tr data-breaker=${b.name}>
                <th scope="row">${b.name}</th>
                <td><span class="state state-${b.state.toLowerCase()}" data-state=${b.state}>${words(b.state)}</span>
                  <div class="sub">${ago(b.stateChangedAt, now)}</div></td>
                <td class="num">${percent(b.metrics.failureRate)}</td>
                <td class="num">${b.metrics.calls}</td>
                <td class="num">${b.metrics.failures}</td>
                <td class="num">${b.metrics.rejections}</td>
                <td>${sparkline(b)}</td>
                <td>
                  ${b.transitions.length === 0
                    ? html`<span class="sub">none</span>`
                    : html`<ol class="transitions">
                        ${[...b.transitions].reverse().slice(0, 3).map(
                          (t) => html`<li>${words(t.from)} → <strong>${words(t.to)}</strong> <span class="sub">${words(t.reason).toLowerCase()}, ${ago(t.at, now)}</span></li>`,
                        )}
                      </ol>`}
                </td>
                ${actions
                  ? html`<td class="actions">
                      <button type="button" ?disabled=${b.state === 'CLOSED' || b.state === 'DISABLED'} aria-label="Reset breaker ${b.name}" @click=${() => actions.reset(b.name)}>Reset</button>
                      <button type="button" class="danger" ?disabled=${b.state === 'FORCED_OPEN'} aria-label="Force breaker ${b.name} open" @click=${() => actions.forceOpen(b.name)}>Force open</button>
                    </td>`
                  : nothing}
              </tr>`,
            )}
          </tbody>
        </table>`}
  </section>`;
}
