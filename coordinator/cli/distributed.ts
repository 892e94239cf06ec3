/**
 * `dtrain coordinator` and `dtrain worker`: the same job as `dtrain train`, with workers that connect
 * over WebSockets. Every flag also reads a DTRAIN_* environment variable, for containers.
 */
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../common/errors.ts';
import { createLogger } from '../../common/logger.ts';
import { ADMISSION_DEFAULTS } from '../admission.ts';
import { BACKEND_CHOICES, NET_DEFAULTS, type BackendChoice, type DatasetName } from '../../common/config.ts';
import { WIRE_DTYPES, type WireDtype } from '../../common/wire-dtype.ts';
import { addTrainingOptions, envBool, exitCodeAfter, LOG_LEVELS, loggerFromFlags, shutdownSignal, trainConfigFromFlags } from './train.ts';
import { duration, envOption, integer, oneOf } from './flags.ts';
import { gcMode, warnGcMode } from '../../common/gc-mode.ts';
import { keepFreedMemory } from '../../common/freed-memory.ts';

/** The shared secret: from a file (Docker secrets) or the environment, never a plain flag value. */
export function readToken(flags: { tokenFile?: string }): string {
  let token: string | undefined;
  if (flags.tokenFile) {
    try {
      token = readFileSync(flags.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new ConfigError(`Cannot read --token-file ${flags.tokenFile}: ${(err as Error).message}`);
    }
  } else {
    token = process.env.DTRAIN_TOKEN?.trim();
  }
  if (!token) throw new ConfigError('No auth token: pass --token-file FILE (or DTRAIN_TOKEN_FILE), or set DTRAIN_TOKEN. Coordinator and workers must share it.');
  if (token.length < 8) throw new ConfigError(`The auth token must be at least 8 characters, got ${token.length}.`);
  return token;
}

/** `--connect`: a ws:// or wss:// URL that parses, with a host and a port a socket can use. */
export function checkConnectUrl(value: string): void {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'ws:' && url.protocol !== 'wss:') || url.hostname === '' || /\s/.test(value)) {
    throw new ConfigError(`--connect must be a ws:// or wss:// URL such as ws://coordinator:8787, got "${value}".`);
  }
}

export function registerCoordinatorCommand(program: Command): void {
  const cmd = program.command('coordinator').description('serve a training job to workers that connect over WebSockets');
  cmd
    .addOption(envOption('--port <port>', 'port to listen on', 'DTRAIN_PORT').default(8787).argParser(integer('--port', 0, 65535)))
    .addOption(envOption('--host <addr>', 'address to listen on', 'DTRAIN_HOST').default('0.0.0.0'))
    .addOption(envOption('--min-workers <n>', 'workers to wait for before the first step', 'DTRAIN_MIN_WORKERS').default(1).argParser(integer('--min-workers', 1, 4096)))
    .addOption(envOption('--token-file <path>', 'file holding the shared auth token (or set DTRAIN_TOKEN)', 'DTRAIN_TOKEN_FILE'))
    .addOption(envOption('--max-frame-mb <mb>', 'largest frame accepted from a worker, in MiB', 'DTRAIN_MAX_FRAME_MB').default(256).argParser(integer('--max-frame-mb', 1, 2047)))
    .addOption(envOption('--heartbeat-ms <ms>', 'ping interval; a worker that has not answered by the next ping is dropped', 'DTRAIN_HEARTBEAT_MS').default(2000).argParser(integer('--heartbeat-ms', 100, 600_000)))
    .addOption(envOption('--ready-timeout-ms <ms>', 'time a welcomed worker has to build its model and say ready', 'DTRAIN_READY_TIMEOUT_MS').default(NET_DEFAULTS.readyTimeoutMs).argParser(duration('--ready-timeout-ms', 'ms', 100)))
    .addOption(envOption('--max-workers <n>', 'worker connections accepted at once; more are refused with HTTP 503', 'DTRAIN_MAX_WORKERS').default(ADMISSION_DEFAULTS.maxWorkers).argParser(integer('--max-workers', 1, 65_536)))
    .addOption(envOption('--max-evictions <n>', 'evictions of one address within 10 minutes that refuse it for --cool-down-ms (0: never)', 'DTRAIN_MAX_EVICTIONS').default(ADMISSION_DEFAULTS.evictionStrikes.maxStrikes).argParser(integer('--max-evictions', 0, 1_000_000)))
    .addOption(envOption('--cool-down-ms <ms>', 'how long an address evicted --max-evictions times is refused', 'DTRAIN_COOL_DOWN_MS').default(ADMISSION_DEFAULTS.evictionStrikes.coolDownMs).argParser(duration('--cool-down-ms', 'ms', 1)))
    .addOption(envOption('--wire-dtype <dtype>', `weights and gradients on the wire: ${WIRE_DTYPES.join(' | ')} (a worker may ask for its own)`, 'DTRAIN_WIRE_DTYPE').default('float32').argParser(oneOf('--wire-dtype', WIRE_DTYPES)));
  cmd.option('--no-http', 'do not answer HTTP on --port (dashboard, /api/status, /metrics, /healthz); workers still connect (env: DTRAIN_HTTP=1|0)');
  addTrainingOptions(cmd).action(async (flags) => {
    const [{ runJob }, { startWsServer }, { createRunWeb, httpEnabled, logDashboardUrl }, { registerBrowserWorkerRoutes }] = await Promise.all([
      import('../job.ts'),
      import('../ws-server.ts'),
      import('../http/serve.ts'),
      import('../browser-worker.ts'),
    ]);
    const token = readToken(flags);
    const config = trainConfigFromFlags(flags, flags.minWorkers);
    const log = loggerFromFlags(flags, { role: 'coordinator' });
    // Before run_started: a signal from then on is a clean shutdown, not Node's default exit.
    const signal = shutdownSignal(log);
    log.info({ event: 'run_started', model: config.model, epochs: config.epochs, batchSize: config.batchSize, minWorkers: flags.minWorkers, dataset: config.dataset, wireDtype: flags.wireDtype, out: config.out, ...gcMode(), ...keepFreedMemory() }, `coordinator: ${config.model}, waiting for ${flags.minWorkers} worker(s)`);
    warnGcMode(log);
    const web = httpEnabled(flags) ? createRunWeb(config, 'websocket', log) : undefined;
    if (web) registerBrowserWorkerRoutes(web.frontend.routes, log);
    const outcome = await runJob({
      config,
      log,
      signal,
      commandLine: process.argv.slice(2),
      observer: web?.monitor,
      startWorkers: async (membership, welcome, expect) => {
        const limits = { maxPayloadBytes: flags.maxFrameMb * 1024 * 1024, heartbeatIntervalMs: flags.heartbeatMs, readyTimeoutMs: flags.readyTimeoutMs };
        const admission = { maxWorkers: flags.maxWorkers, evictionStrikes: { ...ADMISSION_DEFAULTS.evictionStrikes, maxStrikes: flags.maxEvictions, coolDownMs: flags.coolDownMs } };
        const server = await startWsServer(membership, { port: flags.port, host: flags.host, token, welcome: { ...welcome, wireDtype: flags.wireDtype }, expect, log, limits, admission, httpServer: web?.frontend.server, onRejected: web?.monitor.onRejected });
        if (web) logDashboardUrl(log, flags.host, server.port);
        const backends = () => [...new Set(membership.live().map((w) => w.backend))].join('+') || 'remote';
        return { backend: backends, stop: (why) => server.close(why) };
      },
      minWorkers: flags.minWorkers,
    });
    await web?.close();
    process.exitCode = outcome.status === 'interrupted' ? exitCodeAfter(signal) : 0;
  });
}

export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('compute gradients for a coordinator')
    .addOption(envOption('--connect <url>', 'coordinator URL, e.g. ws://coordinator:8787', 'DTRAIN_COORDINATOR_URL').makeOptionMandatory())
    .addOption(envOption('--token-file <path>', 'file holding the shared auth token (or set DTRAIN_TOKEN)', 'DTRAIN_TOKEN_FILE'))
    .addOption(envOption('--backend <name>', `compute backend: ${BACKEND_CHOICES.join(' | ')}`, 'DTRAIN_BACKEND').default('auto').argParser(oneOf('--backend', BACKEND_CHOICES)))
    .addOption(envOption('--name <name>', 'name shown in the coordinator logs (default: hostname)', 'DTRAIN_WORKER_NAME'))
    .addOption(envOption('--log-level <level>', LOG_LEVELS.join(' | '), 'DTRAIN_LOG_LEVEL').default('info').argParser(oneOf('--log-level', LOG_LEVELS)))
    .addOption(envOption('--give-up-after <seconds>', 'exit 1 after this long without reaching the coordinator (0: never)', 'DTRAIN_GIVE_UP_AFTER').default(0).argParser((v) => (v.trim() === '0' ? 0 : duration('--give-up-after', 's')(v))))
    .addOption(envOption('--wire-dtype <dtype>', `ask for this dtype on the wire: ${WIRE_DTYPES.join(' | ')} (default: the coordinator's)`, 'DTRAIN_WORKER_WIRE_DTYPE').argParser(oneOf('--wire-dtype', WIRE_DTYPES)))
    .addOption(envOption('--data-dir <dir>', 'our own copy of CIFAR-10 (as the coordinator\'s --data-dir): tasks then carry indices, not pixels', 'DTRAIN_WORKER_DATA_DIR'))
    .addOption(envOption('--dataset <name>', 'read the dataset locally: cifar10 (with --data-dir) | synthetic (generated here)', 'DTRAIN_WORKER_DATASET').argParser(oneOf('--dataset', ['cifar10', 'synthetic'] as const)))
    .option('--compute-thread', 'compute every task in a thread of its own (default: on the socket\'s thread, except synchronized BatchNorm and long steps; env: DTRAIN_WORKER_COMPUTE_THREAD=1|0)')
    .action(async (flags: { connect: string; tokenFile?: string; backend: BackendChoice; name?: string; logLevel: string; giveUpAfter: number; wireDtype?: WireDtype; dataDir?: string; dataset?: DatasetName; computeThread?: boolean }) => {
      checkConnectUrl(flags.connect);
      const token = readToken(flags);
      const [{ runWorker }, { LocalData }] = await Promise.all([import('../../worker/client.ts'), import('../../worker/local-data.ts')]);
      const log = createLogger({ level: flags.logLevel, base: { role: 'worker', pid: process.pid } });
      const controller = new AbortController();
      const stop = (sig: string) => {
        if (controller.signal.aborted) process.exit(130); // a second signal: now
        log.info({ event: 'shutdown_requested', signal: sig }, `${sig}: leaving the job`);
        controller.abort();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      const dataset = flags.dataset ?? (flags.dataDir !== undefined ? 'cifar10' : undefined);
      if (dataset === 'synthetic' && flags.dataDir !== undefined) throw new ConfigError('--data-dir holds CIFAR-10 files; it cannot be combined with --dataset synthetic.');
      const localData = dataset ? await LocalData.open({ dataset, dataDir: flags.dataDir, log }) : undefined;
      const exit = await runWorker({ url: flags.connect, token, backend: flags.backend, name: flags.name, log, signal: controller.signal, giveUpAfterMs: flags.giveUpAfter, wireDtype: flags.wireDtype, localData, computeThread: flags.computeThread === true || (envBool('DTRAIN_WORKER_COMPUTE_THREAD') ?? false) });
      log.info({ event: 'worker_exit', code: exit.code, reason: exit.reason }, `worker exiting: ${exit.reason}`);
      process.exitCode = exit.code;
    });
}
