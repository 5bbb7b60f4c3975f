/**
 * GraphiQL in a real browser (Debian's headless Chromium driven by playwright-core; no browser
 * is ever downloaded): with anonymous access off, a subscription run without a token shows the
 * error, and with a token typed into the Headers tab it receives the events of a flag changed
 * over HTTP. Set HELIOS_GRAPHIQL_SCREENSHOT=<file.png> to keep a screenshot of the result.
 */
import type { Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { browserPool } from '../support/browser.js';
import { serverPool } from '../support/pool.js';
import { untilListening, TEST_ADMIN_TOKEN } from '../support/server.js';

const pool = serverPool();
const browsers = browserPool();

/** Replaces an editor's text the way a user types it (insertText: no auto-closed brackets). */
async function typeInto(page: Page, editor: ReturnType<Page['locator']>, text: string): Promise<void> {
  await editor.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.insertText(text);
}

/** The result pane's text; Monaco renders spaces as non-breaking ones, so all runs become one space. */
const resultText = async (page: Page) => (await page.locator('.graphiql-response').innerText()).replace(/\s+/g, ' ');

/**
 * Runs the editor's operation. GraphiQL re-reads the document's operations a moment after an
 * edit; a click inside that moment still sends the welcome query's operation name ("Cannot infer
 * operation ModularityStatus"), so such a click is made again once GraphiQL has caught up.
 */
async function execute(page: Page): Promise<void> {
  for (let attempt = 0; attempt < 20; attempt++) {
    await page.locator('.graphiql-execute-button').click();
    await page.waitForTimeout(250);
    if (!(await resultText(page)).includes('Cannot infer operation')) return;
  }
  throw new Error(`GraphiQL kept answering: ${await resultText(page)}`);
}

describe('GraphiQL in Chromium', () => {
  it('runs a subscription with the token from its Headers tab while HELIOS_ANONYMOUS=none', { timeout: 120_000 }, async () => {
    const h = await pool.start({ env: { HELIOS_ANONYMOUS: 'none' } });
    const page = await browsers.page();
    await page.goto(h.url);
    const queryEditor = page.locator('.graphiql-query-editor .monaco-editor');
    await queryEditor.waitFor({ timeout: 60_000 });
    await typeInto(page, queryEditor, 'subscription { featureFlagChanged(name: "websocket_v2") { name actor flag { percentage } } }');

    // Without a token: the error is shown, instead of a spinner that never ends.
    await execute(page);
    await expect.poll(() => resultText(page), { timeout: 15_000 }).toContain('UNAUTHENTICATED');

    await page.getByText('Headers', { exact: true }).click();
    await typeInto(page, page.locator('.graphiql-editor-tool .monaco-editor').last(), `{"Authorization": "Bearer ${TEST_ADMIN_TOKEN}"}`);
    await execute(page);
    await untilListening(h, 'featureFlagChanged');

    const changed = await fetch(h.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_ADMIN_TOKEN}` },
      body: JSON.stringify({ query: 'mutation { setFlagPercentage(name: "websocket_v2", percentage: 42) { errors { code } } }' }),
    });
    expect(await changed.json()).toEqual({ data: { setFlagPercentage: { errors: [] } } });

    await expect.poll(() => resultText(page), { timeout: 15_000 }).toContain('"percentage": 42');
    const shown = await resultText(page);
    expect(shown).toContain('"featureFlagChanged"');
    expect(shown).toContain('"name": "websocket_v2"');
    expect(shown).not.toContain('UNAUTHENTICATED');
    if (process.env.HELIOS_GRAPHIQL_SCREENSHOT) await page.screenshot({ path: process.env.HELIOS_GRAPHIQL_SCREENSHOT });
  });
});
