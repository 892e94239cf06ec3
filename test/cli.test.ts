/** The CLI as a new user meets it: real processes, real flags, real exit codes. */
import { describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { DtrainProcess } from './processes.ts';
import { tempDir } from './helpers.ts';
import { envBool } from '../coordinator/cli/train.ts';

async function run(args: string[], env: Record<string, string> = {}) {
  const p = new DtrainProcess(args, env);
  const { code } = await p.exited;
  return { code, lines: p.lines, stderr: p.stderr.join('\n') };
}

describe('dtrain train', () => {
  it('trains a short synthetic run end to end and writes the run folder', async () => {
    const out = await tempDir();
    const { code, lines } = await run(['train', '--dataset', 'synthetic', '--limit-train', '320', '--limit-test', '50', '--epochs', '1', '--workers', '2', '--out', out]);
    expect(code).toBe(0);
    const events = lines.map((l) => l.event);
    for (const e of ['run_started', 'backend_selected', 'worker_joined', 'step', 'epoch', 'evaluated', 'checkpoint', 'run_finished']) expect(events).toContain(e);
    // The epoch's checkpoint says the epoch it ended (1 of 1), not the one a resume would begin.
    expect(lines.filter((l) => l.event === 'checkpoint' && l.reason === 'epoch-end').map((l) => l.epoch)).toEqual([1]);
    const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    expect(metrics.model).toBe('lenet');
    expect(metrics.workers).toBe(2);
    for (const f of ['history.json', 'loss.png', 'accuracy.png', 'predictions.png', 'summary.txt', 'checkpoint/model.json']) await expect(readFile(join(out, f))).resolves.toBeDefined();
  });

  it('does not redo or overwrite a finished run when resumed', async () => {
    const out = await tempDir();
    const args = ['train', '--dataset', 'synthetic', '--limit-train', '64', '--limit-test', '20', '--epochs', '1', '--workers', '1', '--out', out];
    expect((await run(args)).code).toBe(0);
    const before = await readFile(join(out, 'metrics.json'), 'utf8');
    const again = await run([...args, '--resume']);
    expect(again.code).toBe(0);
    expect(again.lines.find((l) => l.event === 'run_finished')?.alreadyFinished).toBe(true);
    expect(again.lines.some((l) => l.event === 'step')).toBe(false);
    expect(await readFile(join(out, 'metrics.json'), 'utf8')).toBe(before);
  });

  it('refuses to start a fresh run over one --out holds, and replaces it with --overwrite, leaving other files be', async () => {
    const out = await tempDir();
    const args = ['train', '--dataset', 'synthetic', '--limit-train', '64', '--limit-test', '20', '--epochs', '1', '--workers', '1', '--no-plots', '--out', out];
    await writeFile(join(out, 'metrics.json'), JSON.stringify({ model: 'cnn-dropout', test_accuracy: 0.7 }));
    await writeFile(join(out, 'notes.txt'), 'mine');
    const refused = await run(args);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(new RegExp(`^dtrain: --out ${out} already holds a run \\(metrics\\.json\\): continue it with --resume, replace it with --overwrite, or give another folder`));
    expect(refused.lines.some((l) => l.event === 'step')).toBe(false);
    expect(JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8')).model).toBe('cnn-dropout');
    // A run that fails before it starts (here its data) replaces nothing, even with --overwrite.
    const failed = await run(['train', '--dataset', 'cifar10', '--data-dir', '/nonexistent/cifar', '--out', out, '--overwrite']);
    expect(failed.code).toBe(2);
    expect(JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8')).model).toBe('cnn-dropout');
    const replaced = await run([...args, '--overwrite']);
    expect(replaced.lines.find((l) => l.event === 'run_overwritten')?.files).toEqual(['metrics.json']);
    expect(replaced.code).toBe(0);
    expect(JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8')).model).toBe('lenet');
    expect(await readFile(join(out, 'notes.txt'), 'utf8')).toBe('mine');
  });

  it('leaves no run folder behind when the data cannot be read', async () => {
    const out = join(await tempDir(), 'new', 'run');
    const { code, stderr } = await run(['train', '--data-dir', '/nonexistent/cifar', '--out', out]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/\/nonexistent\/cifar/);
    expect(existsSync(join(out, '..'))).toBe(false);
  });

  it('stops at once on SIGTERM while its threads are still starting, with exit code 143', async () => {
    const out = await tempDir();
    // 16 threads load their backends on this machine's cores: seconds, long after the signal.
    const p = new DtrainProcess(['train', '--dataset', 'synthetic', '--limit-train', '64', '--limit-test', '20', '--epochs', '1', '--workers', '16', '--out', out], {});
    await p.waitFor('run_started');
    p.kill('SIGTERM');
    const { code } = await p.exited;
    expect(code).toBe(143);
    expect(p.lines.find((l) => l.event === 'run_stopped')?.msg).toMatch(/^stopped while the workers were starting, at step 0$/);
    expect(p.lines.some((l) => l.event === 'backend_selected' || l.event === 'step')).toBe(false);
    // Nothing trained, so nothing holds a fresh start in that folder back.
    const again = await run(['train', '--dataset', 'synthetic', '--limit-train', '64', '--limit-test', '20', '--epochs', '1', '--workers', '1', '--no-plots', '--out', out]);
    expect(again.code).toBe(0);
  });

  const badInput: [string, string[], Record<string, string>, RegExp][] = [
    ['--resume with --overwrite', ['train', '--out', '/tmp/x', '--resume', '--overwrite'], {}, /^dtrain: --resume and --overwrite contradict each other/],
    ['an unknown model', ['train', '--model', 'resnet'], {}, /--model must be one of mlp, lenet, cnn-dropout, cnn-bn, got "resnet"/],
    ['a non-numeric epoch count', ['train', '--epochs', 'abc'], {}, /--epochs must be an integer between 1 and 10000, got "abc"/],
    ['--resume without --out', ['train', '--resume'], {}, /--resume needs --out/],
    ['a malformed boolean variable', ['train', '--out', 'x'], { DTRAIN_RESUME: 'maybe' }, /DTRAIN_RESUME must be .* got "maybe"/],
    ['a missing data folder', ['train', '--data-dir', '/nonexistent/cifar'], {}, /\/nonexistent\/cifar/],
    ['a worker without a token', ['worker', '--connect', 'ws://127.0.0.1:9'], { DTRAIN_TOKEN: '' }, /No auth token/],
    ['a worker URL that is not ws://', ['worker', '--connect', 'http://x'], { DTRAIN_TOKEN: 'long-enough-token' }, /--connect must be a ws:\/\/ or wss:\/\/ URL/],
    ['a step timeout no timer can hold', ['train', '--step-timeout', '3000000'], {}, /--step-timeout must be a duration between 0.001 s and 2147483 s \(what a timer can hold\), got "3000000"/],
    ['a cool-down no timer can hold', ['coordinator', '--cool-down-ms', '2147483648'], { DTRAIN_TOKEN: 'long-enough-token' }, /--cool-down-ms must be a duration between 1 ms and 2147483647 ms/],
    ['an evaluation chunk of no images', ['train', '--eval-batch-size', '0'], {}, /--eval-batch-size must be an integer between 1 and 65536, got "0"/],
    ['a negative reduction grain', ['train', '--reduce-grain', '-1'], {}, /--reduce-grain must be an integer between 0 and 65536, got "-1"/],
    ['a malformed reduction grain variable', ['train'], { DTRAIN_REDUCE_GRAIN: 'four' }, /--reduce-grain must be an integer between 0 and 65536, got "four"/],
    ['a reduction grain with a robust aggregation', ['train', '--dataset', 'synthetic', '--limit-train', '64', '--limit-test', '20', '--reduce-grain', '4', '--aggregation', 'median'], {}, /--reduce-grain 4 needs --aggregation mean/],
    ['an unknown flag, with the flag meant', ['train', '--epoch', '3'], {}, /^dtrain: unknown option '--epoch' \(Did you mean --epochs\?\) \(--help lists the commands and flags\)$/],
    ['a missing required flag', ['samples', '--dataset', 'synthetic'], {}, /^dtrain: required option '--out <file.png>' not specified/],
    ['a stray argument', ['train', 'extra'], {}, /^dtrain: too many arguments for 'train'/],
    ['an unknown command', ['tarin'], {}, /^dtrain: unknown command 'tarin'/],
    ['an output folder that is a file', ['train', '--dataset', 'synthetic', '--limit-train', '64', '--out', '/dev/null'], {}, /^dtrain: --out \/dev\/null: \/dev\/null exists and is not a folder\.$/],
    ['a log file that is a folder', ['train', '--log-file', tmpdir()], {}, new RegExp(`^dtrain: --log-file ${tmpdir()}: cannot open it for writing \\(EISDIR\\)\\.$`)],
    ['a host that does not resolve', ['train', '--dataset', 'synthetic', '--limit-train', '64', '--port', '0', '--host', '999.1.1.1', '--out', '/tmp/dtrain-cli-no-host'], {}, /dtrain: --host 999\.1\.1\.1 does not resolve to an address \((ENOTFOUND|EAI_AGAIN)\)/],
    ['an epoch count from the environment that is not a number', ['train'], { DTRAIN_EPOCHS: 'abc' }, /^dtrain: --epochs must be an integer between 1 and 10000, got "abc"\. It came from the environment variable DTRAIN_EPOCHS\.$/],
    ['a worker URL with a port no socket can use', ['worker', '--connect', 'ws://127.0.0.1:99999'], { DTRAIN_TOKEN: 'long-enough-token' }, /^dtrain: --connect must be a ws:\/\/ or wss:\/\/ URL such as ws:\/\/coordinator:8787, got "ws:\/\/127\.0\.0\.1:99999"\.$/],
    ['a worker log level there is none of', ['worker', '--connect', 'ws://127.0.0.1:9', '--log-level', 'loud'], { DTRAIN_TOKEN: 'long-enough-token' }, /^dtrain: --log-level must be one of fatal, error, warn, info, debug, trace, silent, got "loud"\.$/],
    ['a give-up time no timer can hold', ['worker', '--connect', 'ws://127.0.0.1:9', '--give-up-after', '1e9'], { DTRAIN_TOKEN: 'long-enough-token' }, /--give-up-after must be a duration/],
  ];
  for (const [what, args, env, message] of badInput) {
    it(`refuses ${what} with one clear line and exit code 2`, async () => {
      const { code, stderr } = await run(args, env);
      expect(code).toBe(2);
      expect(stderr).toMatch(message);
      expect(stderr).not.toMatch(/\n\s+at /); // no stack trace
    });
  }
});

describe('a port already in use', () => {
  for (const command of ['coordinator', 'train'] as const) {
    it(`is refused by ${command} with one clear line and exit code 2`, async () => {
      const taken = createServer();
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
      const port = (taken.address() as AddressInfo).port;
      try {
        const { code, stderr } = await run([command, '--dataset', 'synthetic', '--limit-train', '64', '--host', '127.0.0.1', '--port', String(port), '--out', await tempDir()], { DTRAIN_TOKEN: 'long-enough-token' });
        expect(code).toBe(2);
        expect(stderr).toMatch(new RegExp(`^dtrain: --port ${port} is already in use on 127\\.0\\.0\\.1: `, 'm'));
        expect(stderr).not.toMatch(/\n\s+at /);
      } finally {
        taken.close();
      }
    });
  }
});

describe('envBool', () => {
  it('reads the usual spellings of true and false, and unset as undefined', () => {
    expect(envBool('X', { X: '1' })).toBe(true);
    expect(envBool('X', { X: 'TRUE' })).toBe(true);
    expect(envBool('X', { X: '0' })).toBe(false);
    expect(envBool('X', { X: 'no' })).toBe(false);
    expect(envBool('X', {})).toBeUndefined();
  });
});
