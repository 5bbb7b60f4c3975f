/** Feature flags: strategy, effective percentage, gradual progress, last change and who made it. */
import { html, nothing } from 'lit';
import { ago, percent, until, words } from '../format.js';
import type { DashboardFlagFragment } from '../gql/graphql.js';
import type { FlagChangeView } from '../store.js';

function progress(flag: DashboardFlagFragment, now: number) {
  const g = flag.gradual;
  if (flag.strategy !== 'GRADUAL' || !g) {
    if (flag.effectivePercentage === null || flag.effectivePercentage === undefined) return html`<span class="sub">—</span>`;
    const share = flag.enabled ? flag.effectivePercentage : 0;
    return html`<div class="bar" role="img" aria-label="${percent(share)} of contexts"><span style="width:${share}%"></span></div>
      ${flag.enabled ? nothing : html`<div class="sub">${percent(flag.effectivePercentage)} once enabled</div>`}`;
  }
  const span = g.targetPercentage - g.startPercentage;
  const done = span === 0 ? 100 : Math.round(((g.currentPercentage - g.startPercentage) / span) * 100);
  const label = `Gradual rollout from ${percent(g.startPercentage)} to ${percent(g.targetPercentage)}: ${done}% done`;
  return html`<div class="bar bar-gradual" role="progressbar" aria-label=${label} aria-valuemin="0" aria-valuemax="100" aria-valuenow=${done}>
      <span style="width:${g.currentPercentage}%"></span><i style="left:${g.targetPercentage}%"></i>
    </div>
    <div class="sub">${percent(g.startPercentage)} → ${percent(g.targetPercentage)}, ${Date.parse(g.endsAt) > now ? `ends ${until(g.endsAt, now)}` : 'complete'}</div>`;
}

export function flagsPanel(flags: DashboardFlagFragment[], changes: Map<string, FlagChangeView>, now: number) {
  return html`<section class="panel panel-wide" aria-labelledby="flags-title">
    <h2 id="flags-title">Feature flags <span class="count">${flags.length}</span></h2>
    <table>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Strategy</th>
          <th scope="col" class="num">Effective</th>
          <th scope="col" class="col-rollout">Rollout</th>
          <th scope="col">Last change</th>
        </tr>
      </thead>
      <tbody>
        ${flags.map((f) => {
          const change = changes.get(f.name);
          return html`<tr data-flag=${f.name}>
            <th scope="row">${f.name}</th>
            <td class="nowrap"><span class="tag ${f.enabled ? 'tag-on' : 'tag-off'}">${f.enabled ? 'on' : 'off'}</span> ${words(f.strategy)}</td>
            <td class="num">${f.enabled ? percent(f.effectivePercentage ?? (f.strategy === 'ALL_ON' ? 100 : null)) : '0%'}</td>
            <td>${progress(f, now)}</td>
            <td>${ago(change?.at ?? f.updatedAt, now)} <span class="sub">${change ? html`by <strong class="actor">${change.actor ?? 'the scheduler'}</strong> · ${change.action}` : ''}</span></td>
          </tr>`;
        })}
      </tbody>
    </table>
  </section>`;
}
