/** Modules: state, the version serving, the one a rollback returns to. */
import { html } from 'lit';
import { ago, words } from '../format.js';
import type { DashboardModuleFragment } from '../gql/graphql.js';

export function modulesPanel(modules: DashboardModuleFragment[], now: number) {
  return html`<section class="panel" aria-labelledby="modules-title">
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
          <tbody>
            ${modules.map(
              (m) => html`<tr data-module=${m.name}>
                <th scope="row">${m.name}</th>
                <td><span class="state state-${m.state.toLowerCase()}">${words(m.state)}</span>
                  ${m.desiredState !== m.state && m.state !== 'FAILED' ? html`<div class="sub">wants ${words(m.desiredState)}</div>` : ''}
                  ${m.lastError ? html`<div class="sub error-text" title=${m.lastError}>${m.lastError.slice(0, 60)}</div>` : ''}</td>
                <td><code>${m.version}</code></td>
                <td>${m.previousVersion ? html`<code>${m.previousVersion}</code>` : html`<span class="sub">—</span>`}</td>
                <td class="sub">${ago(m.updatedAt, now)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`}
  </section>`;
}
