/** Test runs: running ones test by test (testProgress), then the recent results. */
import { html } from 'lit';
import { ago, words } from '../format.js';
import type { DashboardTestRunFragment } from '../gql/graphql.js';

function run(r: DashboardTestRunFragment, now: number) {
  const finished = r.results.length;
  const label = `${r.passed} passed, ${r.failed + r.timedOut} failed, ${r.skipped} skipped of ${r.total}`;
  return html`<li class="run" data-run=${r.id}>
    <div class="run-head">
      <strong>${r.moduleName}</strong> <code>${r.moduleVersion}</code>
      <span class="state state-${r.status.toLowerCase()}">${words(r.status)}</span>
    </div>
    <div class="bar bar-tests" role="img" aria-label=${label}>
      <span class="ok" style="width:${r.total ? (r.passed / r.total) * 100 : 0}%"></span><span class="bad" style="width:${r.total ? ((r.failed + r.timedOut) / r.total) * 100 : 0}%"></span>
    </div>
    <div class="sub">${r.status === 'RUNNING' ? `${finished} of ${r.total} tests done` : label} · ${r.actor} · ${ago(r.startedAt, now)}</div>
  </li>`;
}

export function testRunsPanel(runs: DashboardTestRunFragment[], now: number) {
  const running = runs.filter((r) => r.status === 'RUNNING');
  const recent = runs.filter((r) => r.status !== 'RUNNING');
  return html`<section class="panel" aria-labelledby="runs-title">
    <h2 id="runs-title">Test runs <span class="count">${running.length} running</span></h2>
    ${runs.length === 0 ? html`<p class="empty">No test runs yet.</p>` : ''}
    ${running.length ? html`<h3>Running</h3><ul class="runs">${running.map((r) => run(r, now))}</ul>` : ''}
    ${recent.length ? html`<h3>Recent</h3><ul class="runs">${recent.map((r) => run(r, now))}</ul>` : ''}
  </section>`;
}
