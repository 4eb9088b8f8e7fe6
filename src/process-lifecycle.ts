/**
 * The process entry shared by `npm start` and `npm run worker`: starts the app, prints a start-up
 * failure and sets exit code 1, and on SIGINT/SIGTERM stops gracefully (exit 0, or 1 when the stop
 * fails); a second signal exits 1 at once.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { redactSecrets, startupFailureText } from './errors.js';

/** What {@link runUntilSignalled} runs: something with a graceful stop. */
export interface SignalledApp {
  stop(): Promise<void>;
}

/** The messages {@link runUntilSignalled} writes to stderr. */
export interface LifecycleMessages<App> {
  /** The start-up failure text; default {@link startupFailureText}. */
  startupFailure?: (error: unknown) => string;
  /** Written on the first signal, before the graceful stop. */
  stopping: (signal: NodeJS.Signals, app: App) => string;
  /** Written on a second signal, before exiting 1. */
  exitingNow: (signal: NodeJS.Signals) => string;
}

/** Starts the app and wires SIGINT/SIGTERM to its graceful stop; sets the exit code. */
export async function runUntilSignalled<App extends SignalledApp>(start: () => Promise<App>, messages: LifecycleMessages<App>): Promise<void> {
  let app: App;
  try {
    app = await start();
  } catch (error) {
    process.stderr.write(`${(messages.startupFailure ?? startupFailureText)(error)}\n`);
    process.exitCode = 1;
    return;
  }
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      process.stderr.write(`${messages.exitingNow(signal)}\n`);
      process.exit(1);
    }
    process.stderr.write(`${messages.stopping(signal, app)}\n`);
    void app.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        process.stderr.write(`Shutdown failed: ${redactSecrets(String(error))}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** True when the module at `moduleUrl` is the script node was started with. */
export function isEntryPoint(moduleUrl: string): boolean {
  const invokedPath = process.argv[1];
  return invokedPath !== undefined && invokedPath !== '' && moduleUrl === pathToFileURL(path.resolve(invokedPath)).href;
}
