/** The audit log's latest entries: who changed what, and when. */
import { html } from 'lit';
import { ago, words } from '../format.js';
import type { DashboardAuditEntryFragment } from '../gql/graphql.js';

export function auditPanel(entries: DashboardAuditEntryFragment[], now: number) {
  return html`<section class="panel" aria-labelledby="audit-title">
    <h2 id="audit-title">Audit log</h2>
    ${entries.length === 0
      ? html`<p class="empty">No changes recorded yet.</p>`
      : html`<ol class="audit">
          ${entries.map(
            (e) => html`<li>
              <time datetime=${e.at}>${ago(e.at, now)}</time>
              <span><strong>${e.actor}</strong> ${e.action} <span class="target" title=${words(e.targetType).toLowerCase()}>${e.target}</span></span>
            </li>`,
          )}
        </ol>`}
  </section>`;
}
