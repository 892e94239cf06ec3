import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

// Runs the CLI's main() in a fresh Node process (through tsx, as bin/dtrain.js does) and reports,
// after it returns, which TensorFlow.js files Node loaded: CommonJS modules, imported or required,
// are in require.cache.
const PROBE = `
import { register } from 'tsx/esm/api';
import { createRequire } from 'node:module';
register();
const require = createRequire(import.meta.url);
const { main } = await import('./coordinator/cli/main.ts');
await main(['node', 'dtrain', ...JSON.parse(process.env.PROBE_ARGS)]);
const loaded = Object.keys(require.cache).filter((k) => k.includes('@tensorflow'));
process.stderr.write('\\nLOADED ' + JSON.stringify(loaded) + '\\n');
`;

function run(args: string[]): { stdout: string; stderr: string; status: number | null; tfjs: string[] } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', PROBE], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, PROBE_ARGS: JSON.stringify(args) }, timeout: 60_000 });
  const line = r.stderr.split('\n').find((l) => l.startsWith('LOADED '));
  if (!line) throw new Error(`the probe did not finish (status ${r.status}): ${r.stderr.slice(-2000)}`);
  return { stdout: r.stdout, stderr: r.stderr, status: r.status, tfjs: JSON.parse(line.slice('LOADED '.length)) as string[] };
}

describe('dtrain main', () => {
  it('answers --help without loading TensorFlow.js', () => {
    const r = run(['--help']);
    expect(r.stdout).toContain('Usage: dtrain');
    for (const command of ['train', 'coordinator', 'worker', 'summary', 'scratch', 'samples', 'report']) expect(r.stdout).toContain(command);
    expect(r.tfjs).toEqual([]);
  });

  it('lists every flag of a command without loading TensorFlow.js', () => {
    const r = run(['train', '--help']);
    expect(r.stdout).toContain('--model <name>');
    expect(r.stdout).toContain('mlp | lenet | cnn-dropout | cnn-bn');
    expect(r.stdout).toContain('compute backend: auto | tensorflow | webgpu');
    expect(r.tfjs).toEqual([]);
  });

  it('refuses a bad flag value without loading TensorFlow.js', () => {
    const r = run(['train', '--epochs', 'x']);
    expect(r.stderr).toContain('--epochs must be an integer between 1 and 10000, got "x"');
    expect(r.tfjs).toEqual([]);
  });

  it('loads TensorFlow.js, on the cpu backend, once a command runs', () => {
    const r = run(['summary', '--model', 'mlp']);
    expect(r.stdout).toMatch(/Total params: 402,?250/);
    expect(r.tfjs.some((f) => f.includes('tfjs-core'))).toBe(true);
  });
});
