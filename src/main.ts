/** Entry point: `npm start`. Reads config, starts the server, stops gracefully on SIGTERM/SIGINT. */
import { ConfigError, loadConfig } from './config.js';
import { DatabaseInUseError } from './db/lock.js';
import { createLogger, errorFields } from './logger.js';
import { startServer } from './server.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const server = await startServer(config, { logger });
  process.stdout.write(`Helios is ready: GraphiQL at ${server.url}\n`);

  let signalled = false;
  const shutdown = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn('second signal: exiting now', { signal });
      process.exit(1);
    }
    signalled = true;
    logger.info('shutting down', { signal });
    // A hard stop a little after the graceful deadline, in case something hangs.
    setTimeout(() => process.exit(1), config.shutdownTimeoutMs + 2000).unref();
    server.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error('shutdown failed', errorFields(error));
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`Configuration error: ${error.message}\n`);
  } else if (error instanceof DatabaseInUseError) {
    process.stderr.write(`Helios did not start (${error.code}): ${error.message}\n`);
  } else {
    process.stderr.write(`Helios failed to start: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  }
  process.exit(1);
});
