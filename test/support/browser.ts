/**
 * Debian's headless Chromium driven by playwright-core (no browser is ever downloaded), one
 * persistent context per page in a temporary profile, closed and removed after each test.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterEach } from 'vitest';

const CHROMIUM = '/usr/bin/chromium';

export function browserPool() {
  const opened: Array<{ context: BrowserContext; dir: string }> = [];

  afterEach(async () => {
    for (const { context, dir } of opened.splice(0)) {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  return {
    async page(): Promise<Page> {
      if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
      const dir = mkdtempSync(path.join(tmpdir(), 'helios-chromium-'));
      const context = await chromium.launchPersistentContext(dir, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
      });
      opened.push({ context, dir });
      return context.pages()[0] ?? (await context.newPage());
    },
  };
}
