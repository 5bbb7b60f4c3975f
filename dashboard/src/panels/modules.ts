/**
 * Modules: state, the version serving, the one a rollback returns to; and each module's
 * rollout: the canary's share, the step, the gate figures and when the next step is judged.
 */
import { html, nothing } from 'lit';
import { ago, percent, until, words } from '../format.js';
import type { DashboardModuleFragment, DashboardRolloutFragment, DashboardRolloutStatsFragment } from '../gql/graphql.js';
import type { RolloutCommand } from '../store.js';

export type RolloutActions = (command: RolloutCommand, module: string) => void;

const UNFINISHED = new Set(['TESTING', 'RUNNING', 'HOLDING', 'PAUSED']);

/** Which commands the rollout's status accepts (the engine's transition table). */
function commandsFor(r: DashboardRolloutFragment): RolloutCommand[] {
  switch (r.status) {
    case 'RUNNING':
    case 'HOLDING':
      return ['pause', 'promote', 'abort'];
    case 'PAUSED':
      return ['resume', 'promote', 'abort'];
    case 'TESTING':
      return ['abort'];
    default:
      return [];
  }
}

function stats(label: string, s: DashboardRolloutStatsFragment | null | undefined, limits?: DashboardRolloutFragment['gates']) {
  if (!s) return nothing;
  const rate = s.failureRate === null || s.failureRate === undefined ? null : s.failureRate * 100;
  return html`<span class="gate"><strong>${label}</strong> ${s.calls} calls${limits ? html` (needs ${limits.minCalls})` : nothing},
    ${percent(rate)} failed${limits ? html` (max ${percent(limits.maxFailureRate * 100)})` : nothing},
    p99 ${s.p99Ms === null || s.p99Ms === undefined ? '—' : `${Math.round(s.p99Ms)} ms`}${limits?.maxP99LatencyMs ? html` (max ${limits.maxP99LatencyMs} ms)` : nothing}</span>`;
}

function timing(r: DashboardRolloutFragment, now: number): string {
  if (!UNFINISHED.has(r.status)) return `${words(r.status).toLowerCase()} ${ago(r.finishedAt, now)}`;
  if (r.status === 'PAUSED') return r.remainingSeconds === null || r.remainingSeconds === undefined ? 'paused' : `paused, ${r.remainingSeconds} s of the step left`;
  if (r.awaitingPromotion) return 'last step passed: awaiting promotion';
  if (r.stepIntervalSeconds === null || r.stepIntervalSeconds === undefined) return 'manual steps';
  return r.nextStepAt ? `next step ${until(r.nextStepAt, now)}` : '';
}

const COMMAND_TEXT: Record<RolloutCommand, string> = { pause: 'Pause', resume: 'Resume', promote: 'Promote', abort: 'Abort' };

function rolloutRow(r: DashboardRolloutFragment, now: number, actions: RolloutActions | null) {
  const live = UNFINISHED.has(r.status);
  const step = `step ${Math.min(r.stepIndex + 1, r.steps.length)} of ${r.steps.length}`;
  return html`<tr class="rollout-row" data-rollout=${r.module}>
    <td colspan="5">
      <div class="rollout">
        <div class="rollout-head">
          <span class="sub">Rollout</span> <code>${r.fromVersion}</code> → <code>${r.toVersion}</code>
          <span class="state state-${r.status.toLowerCase()}" data-rollout-status=${r.status}>${words(r.status)}</span>
          ${live ? html`<strong class="rollout-share" data-percentage=${r.percentage}>${percent(r.percentage)}</strong> <span class="sub">of calls · ${step}</span>` : nothing}
          <span class="sub">· ${timing(r, now)}</span>
          ${actions && live
            ? html`<span class="actions rollout-actions">${commandsFor(r).map(
                (command) => html`<button type="button" class=${command === 'abort' ? 'danger' : ''} aria-label="${COMMAND_TEXT[command]} the rollout of ${r.module}" @click=${() => actions(command, r.module)}>${COMMAND_TEXT[command]}</button>`,
              )}</span>`
            : nothing}
        </div>
        ${live
          ? html`<div class="bar bar-steps" role="img" aria-label="${percent(r.percentage)} of calls on ${r.toVersion}, ${step}">
                <span style="width:${r.percentage}%"></span>${r.steps.map((s) => html`<i style="left:calc(${s}% - 1px)"></i>`)}
              </div>
              <div class="sub gates">${stats('canary', r.canary, r.gates)} ${stats('stable', r.stable)}</div>`
          : r.abortReason
            ? html`<div class="sub error-text">${r.abortReason}</div>`
            : nothing}
      </div>
    </td>
  </tr>`;
}

export function modulesPanel(modules: DashboardModuleFragment[], rollouts: Map<string, DashboardRolloutFragment>, now: number, actions: RolloutActions | null) {
  return html`<section class="panel panel-wide" aria-labelledby="modules-title">
    <h2 id="modules-title">Modules <span class="count">${modules.length}</span></h2>
    ${modules.length === 0
      ? html`<p class="empty">No modules registered.</p>`
      : html`<table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">State</th>
              <th scope="col">Version</th>
              <th scope="col">Previous</th>
              <th scope="col">Changed</th>
            </tr>
          </thead>
          ${modules.map((m) => {
            const rollout = rollouts.get(m.name);
            return html`<tbody>
              <tr data-module=${m.name}>
                <th scope="row">${m.name}</th>
                <td><span class="state state-${m.state.toLowerCase()}">${words(m.state)}</span>
                  ${m.desiredState !== m.state && m.state !== 'FAILED' ? html`<div class="sub">wants ${words(m.desiredState)}</div>` : ''}
                  ${m.lastError ? html`<div class="sub error-text" title=${m.lastError}>${m.lastError.slice(0, 60)}</div>` : ''}</td>
                <td><code>${m.version}</code></td>
                <td>${m.previousVersion ? html`<code>${m.previousVersion}</code>` : html`<span class="sub">—</span>`}</td>
                <td class="sub">${ago(m.updatedAt, now)}</td>
              </tr>
              ${rollout ? rolloutRow(rollout, now, actions) : nothing}
            </tbody>`;
          })}
        </table>`}
  </section>`;
}
