/**
 * <helios-dashboard>: the token form, the connection status and the panels. Rendered into the
 * light DOM so one style sheet (dashboard.css) styles it all. Actions are offered only to a
 * role that may perform them (OPERATOR, ADMIN), each after a confirmation.
 */
import { html, LitElement, nothing } from 'lit';
import { Connection, storedToken, storeToken, type ConnectionStatus } from './connection.js';
import { auditPanel } from './panels/audit.js';
import { breakersPanel, type BreakerActions } from './panels/breakers.js';
import { flagsPanel } from './panels/flags.js';
import { modulesPanel, type RolloutActions } from './panels/modules.js';
import { testRunsPanel } from './panels/test-runs.js';
import { DashboardStore, type RolloutCommand } from './store.js';

const STATUS_TEXT: Record<ConnectionStatus, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  refused: 'Token refused',
};

const ROLLOUT_QUESTIONS: Record<RolloutCommand, (module: string) => string> = {
  pause: (m) => `Pause the rollout of "${m}"? Steps stop; the canary keeps its share of calls.`,
  resume: (m) => `Resume the rollout of "${m}"?`,
  promote: (m) => `Promote the canary of "${m}"? It takes all calls at once and the rollout ends.`,
  abort: (m) => `Abort the rollout of "${m}"? Every call goes back to the stable version.`,
};

const byName = <T extends { name: string }>(items: Iterable<T>) => [...items].sort((a, b) => a.name.localeCompare(b.name));

export class HeliosDashboard extends LitElement {
  private connection: Connection | null = null;
  private store: DashboardStore | null = null;
  private ticker: ReturnType<typeof setInterval> | null = null;

  protected override createRenderRoot(): HTMLElement {
    return this;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    this.connect(storedToken());
    // Relative times ("4 s ago") move on even when nothing else does.
    this.ticker = setInterval(() => this.requestUpdate(), 1000);
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    if (this.ticker) clearInterval(this.ticker);
    this.store?.stop();
    this.connection?.dispose();
  }

  private connect(token: string): void {
    this.store?.stop();
    this.connection?.dispose();
    const connection = new Connection(token);
    connection.onStatus(() => this.requestUpdate());
    this.connection = connection;
    this.store = new DashboardStore(connection, () => this.requestUpdate());
    this.store.start();
    this.requestUpdate();
  }

  private useToken(event: SubmitEvent): void {
    event.preventDefault();
    const input = (event.target as HTMLFormElement).elements.namedItem('token') as HTMLInputElement;
    storeToken(input.value.trim());
    input.value = '';
    this.connect(storedToken());
  }

  private forgetToken(): void {
    storeToken('');
    this.connect('');
  }

  private actions(store: DashboardStore): BreakerActions {
    return {
      reset: (name) => {
        if (confirm(`Reset circuit breaker "${name}"? It closes and lets calls through again.`)) void store.resetBreaker(name);
      },
      forceOpen: (name) => {
        if (confirm(`Force circuit breaker "${name}" open? Every call through it is rejected until it is reset.`)) void store.openBreaker(name);
      },
    };
  }

  private rolloutActions(store: DashboardStore): RolloutActions {
    return (command, module) => {
      if (confirm(ROLLOUT_QUESTIONS[command](module))) void store.commandRollout(command, module);
    };
  }

  /** A wall screen's tab says it too, so a page left in the background still tells. */
  protected override updated(): void {
    const status = this.connection?.status ?? 'connecting';
    document.title = status === 'live' ? 'Helios dashboard' : `${STATUS_TEXT[status]} · Helios dashboard`;
  }

  protected override render() {
    const store = this.store!;
    const connection = this.connection!;
    const now = Date.now();
    const token = connection.token;
    const me = store.me;
    return html`<header class="top">
        <h1>Helios <span>operations</span></h1>
        <p class="status status-${connection.status}" role="status" aria-live="polite" data-status=${connection.status}>
          <span class="dot" aria-hidden="true"></span>${STATUS_TEXT[connection.status]}
          ${connection.status === 'live' ? nothing : html`<span class="sub">${connection.detail}</span>`}
        </p>
        <p class="who">${me ? html`${me.anonymous ? 'Anonymous' : me.name} · <strong data-role=${me.role}>${me.role}</strong>` : nothing}</p>
        <form class="token" @submit=${(e: SubmitEvent) => this.useToken(e)}>
          <label for="token">API token</label>
          <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" placeholder=${token ? 'a token is in use' : 'hel_…'} />
          <button type="submit">Use token</button>
          ${token ? html`<button type="button" @click=${() => this.forgetToken()}>Forget</button>` : nothing}
        </form>
      </header>
      ${store.problem ? html`<p class="problem" role="alert">${store.problem}</p>` : nothing}
      <main id="panels" aria-busy=${store.loaded || store.problem ? 'false' : 'true'}>
        ${breakersPanel(byName(store.breakers.values()), now, store.canOperate ? this.actions(store) : null)}
        ${flagsPanel(byName(store.flags.values()), store.flagChanges, now)}
        ${modulesPanel(byName(store.modules.values()), store.rollouts, now, store.canOperate ? this.rolloutActions(store) : null)}
        ${testRunsPanel([...store.runs.values()].sort((a, b) => b.startedAt.localeCompare(a.startedAt)), now)}
        ${auditPanel(store.audit, now)}
      </main>`;
  }
}

customElements.define('helios-dashboard', HeliosDashboard);
