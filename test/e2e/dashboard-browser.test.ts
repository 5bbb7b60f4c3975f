/**
 * The dashboard in a real browser (Debian's headless Chromium, playwright-core): it loads
 * offline in under 300 KB, shows the state and follows it live over graphql-ws, offers actions
 * only to roles that may take them (each confirmed), and comes back by itself after a restart.
 * Screenshots go to test/artifacts/ (ignored by git).
 */
import { cpSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import {
  AdvanceRolloutDocument,
  CircuitBreakerDocument,
  ConfigureCircuitBreakerDocument,
  CreateApiTokenDocument,
  InvokeModuleDocument,
  LoadModuleDocument,
  OpenCircuitBreakerDocument,
  RegisterModuleDocument,
  RolloutDocument,
  SetFlagPercentageDocument,
  StartRolloutDocument,
  TestModuleDocument,
  TestRunDocument,
} from '../gql/graphql.js';
import { browserPool } from '../support/browser.js';
import { serverPool } from '../support/pool.js';
import { untilListening, type TestServer } from '../support/server.js';

const pool = serverPool();
const browsers = browserPool();
const ARTIFACTS = path.resolve('test/artifacts');
const SEED_FLAGS = 8;

const dashboardUrl = (h: TestServer) => new URL('/dashboard', h.url).toString();
const status = (page: Page) => page.locator('[role="status"]');
const breakerState = (page: Page, name: string) => page.locator(`tr[data-breaker="${name}"] [data-state]`);

/** Opens the page and waits until it is live and has read the state. */
async function open(page: Page, h: TestServer): Promise<void> {
  await page.goto(dashboardUrl(h));
  await expect.poll(() => status(page).getAttribute('data-status'), { timeout: 10_000 }).toBe('live');
  await page.locator('main[aria-busy="false"]').waitFor({ timeout: 10_000 });
}

async function useToken(page: Page, token: string, role: string): Promise<void> {
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Use token' }).click();
  await page.locator(`[data-role="${role}"]`).waitFor({ timeout: 10_000 });
}

async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage: true });
}

describe('the dashboard in Chromium', () => {
  it('loads from Helios alone in under 300 KB over the wire and lists the seed\'s eight flags', { timeout: 60_000 }, async () => {
    const h = await pool.start();
    const page = await browsers.page();
    const origin = new URL(h.url).origin;
    const sizes: Array<Promise<number>> = [];
    const urls: string[] = [];
    page.on('requestfinished', (request) => {
      urls.push(request.url());
      sizes.push(request.sizes().then((s) => s.responseHeadersSize + s.responseBodySize));
    });
    await open(page, h);
    await expect.poll(() => page.locator('tr[data-flag]').count()).toBe(SEED_FLAGS);
    const names = await page.locator('tr[data-flag] th').allInnerTexts();
    expect(names).toContain('neural_network_v2');
    expect(names).toContain('paper_trading_v2');

    // Everything came from this origin (no CDN), compressed: the whole first load is small.
    expect(urls.length).toBeGreaterThan(2);
    expect(urls.every((u) => u.startsWith(origin) || u.startsWith('data:')), urls.join(' ')).toBe(true);
    const wire = (await Promise.all(sizes)).reduce((a, b) => a + b, 0);
    expect(wire).toBeGreaterThan(10_000);
    expect(wire).toBeLessThan(300 * 1024);
  });

  it('shows a breaker forced open over HTTP within 2 s and a module loaded, without a reload', { timeout: 60_000 }, async () => {
    const h = await pool.start({ env: { HELIOS_MODULES_DIR: pool.modulesDir() } });
    await h.query(ConfigureCircuitBreakerDocument, { name: 'payments', failureThreshold: 3 });
    await h.query(RegisterModuleDocument, { name: 'counter', modulePath: 'counter.js', version: '1.0.0' });
    const page = await browsers.page();
    await open(page, h);
    await expect.poll(() => breakerState(page, 'payments').getAttribute('data-state')).toBe('CLOSED');
    await expect.poll(() => page.locator('tr[data-module="counter"]').innerText()).toContain('UNLOADED');
    await untilListening(h, 'breakerStateChanged');
    await untilListening(h, 'moduleStateChanged');

    const opened = Date.now();
    expect((await h.query(OpenCircuitBreakerDocument, { name: 'payments' })).openCircuitBreaker.errors).toEqual([]);
    await expect.poll(() => breakerState(page, 'payments').getAttribute('data-state'), { timeout: 2000, interval: 50 }).toBe('FORCED_OPEN');
    expect(Date.now() - opened).toBeLessThan(2000);
    await expect.poll(() => breakerState(page, 'payments').innerText()).toBe('FORCED OPEN');
    await expect.poll(() => page.locator('tr[data-breaker="payments"] .transitions').innerText()).toContain('manual open');
    // The audit panel follows too.
    await expect.poll(() => page.locator('.audit').innerText()).toContain('openCircuitBreaker');

    expect((await h.query(LoadModuleDocument, { name: 'counter' })).loadModule.errors).toEqual([]);
    await expect.poll(() => page.locator('tr[data-module="counter"]').innerText(), { timeout: 2000 }).toContain('ACTIVE');
    // Calls through the module's breaker: the sparkline draws its failure rate second by second.
    for (let i = 0; i < 12; i++) {
      await h.request(InvokeModuleDocument, i % 3 === 0 ? { name: 'counter', method: 'fail' } : { name: 'counter', method: 'increment' });
      if (i % 4 === 3) await page.waitForTimeout(1000);
    }
    await expect.poll(() => page.locator('tr[data-breaker="module:counter"] td.num').nth(1).innerText(), { timeout: 3000 }).not.toBe('0');
    await expect.poll(() => page.locator('tr[data-breaker="module:counter"] .spark-line').count(), { timeout: 3000 }).toBe(1);

    // A test run nobody on this page started shows up (testRunStarted) and follows to its end (testProgress).
    const run = (await h.query(TestModuleDocument, { name: 'counter', moduleType: 'GENERIC' })).testModule.testRun!;
    const shown = page.locator(`li[data-run="${run.id}"]`);
    await shown.waitFor({ timeout: 3000 });
    await expect.poll(() => shown.locator('.state').innerText(), { timeout: 20_000 }).toMatch(/^(PASSED|FAILED)$/);
    const stored = (await h.query(TestRunDocument, { id: run.id })).testRun!;
    expect(await shown.innerText()).toContain(`${stored.passed} passed`);
    await screenshot(page, 'dashboard.png');
  });

  it('offers a VIEWER no buttons; an OPERATOR resets a breaker after confirming', { timeout: 60_000 }, async () => {
    const h = await pool.start();
    await h.query(ConfigureCircuitBreakerDocument, { name: 'payments' });
    await h.query(OpenCircuitBreakerDocument, { name: 'payments' });
    const viewer = (await h.query(CreateApiTokenDocument, { name: 'wall-screen', role: 'VIEWER' })).createApiToken.token!;
    const operator = (await h.query(CreateApiTokenDocument, { name: 'on-call', role: 'OPERATOR' })).createApiToken.token!;
    const page = await browsers.page();
    await open(page, h);

    await useToken(page, viewer, 'VIEWER');
    await expect.poll(() => breakerState(page, 'payments').getAttribute('data-state')).toBe('FORCED_OPEN');
    expect(await page.locator('#panels button').count()).toBe(0);
    // The token lives in sessionStorage, not in the page's URL or a cookie.
    expect(await page.evaluate(() => Object.values(sessionStorage))).toEqual([viewer]);

    await useToken(page, operator, 'OPERATOR');
    const reset = page.getByRole('button', { name: 'Reset breaker payments' });
    await reset.waitFor();
    await expect.poll(() => page.getByRole('button', { name: 'Force breaker payments open' }).isDisabled()).toBe(true);

    // Dismissing the confirmation changes nothing.
    page.once('dialog', (dialog) => void dialog.dismiss());
    await reset.click();
    await page.waitForTimeout(300);
    expect((await h.query(CircuitBreakerDocument, { name: 'payments' })).circuitBreaker?.state).toBe('FORCED_OPEN');

    const asked: string[] = [];
    page.once('dialog', (dialog) => {
      asked.push(dialog.message());
      void dialog.accept();
    });
    await reset.focus();
    await page.keyboard.press('Enter'); // a real <button>: the keyboard works as well as the mouse
    await expect.poll(() => breakerState(page, 'payments').getAttribute('data-state'), { timeout: 5000 }).toBe('CLOSED');
    expect(asked).toEqual([expect.stringContaining('Reset circuit breaker "payments"')]);
    expect((await h.query(CircuitBreakerDocument, { name: 'payments' })).circuitBreaker?.state).toBe('CLOSED');
    await expect.poll(() => page.locator('.audit').innerText()).toContain('on-call resetCircuitBreaker');

    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('button', { name: 'Force breaker payments open' }).click();
    await expect.poll(() => breakerState(page, 'payments').getAttribute('data-state'), { timeout: 5000 }).toBe('FORCED_OPEN');
    await screenshot(page, 'dashboard-operator.png');
  });

  it('shows a rollout step\'s new percentage at once; an OPERATOR pauses and aborts it after confirming', { timeout: 90_000 }, async () => {
    const modulesDir = pool.modulesDir();
    cpSync('test/fixtures/modules/rollout', path.join(modulesDir, 'rollout'), { recursive: true });
    const h = await pool.start({ env: { HELIOS_MODULES_DIR: modulesDir } });
    await h.query(RegisterModuleDocument, { name: 'pricing', modulePath: 'rollout/stable.js', version: '1.0.0' });
    expect((await h.query(LoadModuleDocument, { name: 'pricing' })).loadModule.errors).toEqual([]);
    const operator = (await h.query(CreateApiTokenDocument, { name: 'on-call', role: 'OPERATOR' })).createApiToken.token!;
    const page = await browsers.page();
    await open(page, h);
    await untilListening(h, 'rolloutProgress');

    const started = await h.query(StartRolloutDocument, { module: 'pricing', newVersionPath: 'rollout/healthy.js', newVersion: '2.0.0', steps: [10, 50, 100], stepIntervalSeconds: null });
    expect(started.startRollout.errors).toEqual([]);
    const share = page.locator('tr[data-rollout="pricing"] .rollout-share');
    const status = page.locator('tr[data-rollout="pricing"] [data-rollout-status]');
    await expect.poll(() => share.getAttribute('data-percentage'), { timeout: 5000 }).toBe('10');
    expect(await status.innerText()).toBe('RUNNING');
    expect(await page.locator('tr[data-rollout="pricing"]').innerText()).toContain('step 1 of 3');
    // The anonymous VIEWER is offered no rollout command either.
    expect(await page.locator('#panels button').count()).toBe(0);

    const stepped = Date.now();
    expect((await h.query(AdvanceRolloutDocument, { module: 'pricing' })).advanceRollout.errors).toEqual([]);
    await expect.poll(() => share.getAttribute('data-percentage'), { timeout: 2000, interval: 50 }).toBe('50');
    expect(Date.now() - stepped).toBeLessThan(2000);
    expect(await share.innerText()).toBe('50%');
    expect(await page.locator('tr[data-rollout="pricing"]').innerText()).toContain('step 2 of 3');
    expect(await page.locator('tr[data-rollout="pricing"] .gates').innerText()).toContain('canary');

    await useToken(page, operator, 'OPERATOR');
    await page.getByRole('button', { name: 'Pause the rollout of pricing' }).waitFor();
    await screenshot(page, 'dashboard-rollout.png');

    const asked: string[] = [];
    page.on('dialog', (dialog) => {
      asked.push(dialog.message());
      void dialog.accept();
    });
    await page.getByRole('button', { name: 'Pause the rollout of pricing' }).click();
    await expect.poll(() => status.innerText(), { timeout: 5000 }).toBe('PAUSED');
    expect((await h.query(RolloutDocument, { module: 'pricing' })).rollout?.status).toBe('PAUSED');
    await page.getByRole('button', { name: 'Abort the rollout of pricing' }).click();
    await expect.poll(() => status.innerText(), { timeout: 5000 }).toBe('ABORTED');
    expect((await h.query(RolloutDocument, { module: 'pricing' })).rollout?.status).toBe('ABORTED');
    expect(asked).toEqual([expect.stringContaining('Pause the rollout of "pricing"'), expect.stringContaining('Abort the rollout of "pricing"')]);
    // A finished rollout offers nothing more.
    expect(await page.locator('tr[data-rollout="pricing"] button').count()).toBe(0);
  });

  it('with anonymous access off, asks for a token, says when one is refused, and goes live with a good one', { timeout: 60_000 }, async () => {
    const h = await pool.start({ env: { HELIOS_ANONYMOUS: 'none' } });
    const viewer = (await h.query(CreateApiTokenDocument, { name: 'wall-screen', role: 'VIEWER' })).createApiToken.token!;
    const page = await browsers.page();
    await page.goto(dashboardUrl(h));
    await expect.poll(() => page.locator('[role="alert"]').innerText(), { timeout: 10_000 }).toContain('A bearer token is required');
    expect(await page.locator('tr[data-flag]').count()).toBe(0);

    await page.getByLabel('API token').fill('hel_not-a-real-token');
    await page.getByRole('button', { name: 'Use token' }).click();
    await expect.poll(() => status(page).getAttribute('data-status'), { timeout: 10_000 }).toBe('refused');
    expect(await status(page).innerText()).toContain('Token refused');

    await useToken(page, viewer, 'VIEWER');
    await expect.poll(() => status(page).getAttribute('data-status')).toBe('live');
    await expect.poll(() => page.locator('tr[data-flag]').count()).toBe(SEED_FLAGS);
    expect(await page.locator('[role="alert"]').count()).toBe(0);
    // The token survives a reload of the tab (sessionStorage).
    await page.reload();
    await page.locator('[data-role="VIEWER"]').waitFor({ timeout: 10_000 });
  });

  it('says it is reconnecting while the server is down and comes back by itself after a restart', { timeout: 90_000 }, async () => {
    const first = await pool.start();
    const page = await browsers.page();
    await open(page, first);
    const port = first.server.port;

    await pool.stop(first);
    await expect.poll(() => status(page).getAttribute('data-status'), { timeout: 10_000 }).toBe('reconnecting');
    expect(await status(page).innerText()).toContain('Reconnecting');
    expect(await status(page).getAttribute('aria-live')).toBe('polite');
    expect(await page.title()).toBe('Reconnecting… · Helios dashboard');

    const second = await pool.start({ dir: first.dir, env: { PORT: String(port) } });
    await expect.poll(() => status(page).getAttribute('data-status'), { timeout: 15_000 }).toBe('live');
    expect(await page.title()).toBe('Helios dashboard');
    // Live again, subscriptions included: a change on the new server shows without a reload.
    await untilListening(second, 'featureFlagChanged');
    await second.query(SetFlagPercentageDocument, { name: 'neural_network_v2', percentage: 64 });
    await expect.poll(() => page.locator('tr[data-flag="neural_network_v2"]').innerText(), { timeout: 5000 }).toContain('64%');
  });
});
