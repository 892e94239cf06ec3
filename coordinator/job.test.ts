import { describe, expect, it } from 'vitest';
import { resumeCommand } from './job.ts';

describe('resumeCommand', () => {
  it('repeats the command line with --resume, adding --out where it was implicit and quoting for a shell', () => {
    expect(resumeCommand('runs/x', ['coordinator', '--dataset', 'synthetic', '--limit-train', '5000', '--out', 'runs/x'])).toBe('dtrain coordinator --dataset synthetic --limit-train 5000 --out runs/x --resume');
    expect(resumeCommand('runs/lenet-1', ['train', '--epochs', '2'])).toBe('dtrain train --epochs 2 --out runs/lenet-1 --resume');
    expect(resumeCommand('/tmp/a b', ['train', '--out', '/tmp/a b', '--overwrite', '--resume'])).toBe("dtrain train --out '/tmp/a b' --resume");
    expect(resumeCommand('/tmp/o', ['train', "--name=it's"])).toBe("dtrain train '--name=it'\\''s' --out /tmp/o --resume");
  });

  it('falls back to the flags alone without the command line', () => {
    expect(resumeCommand('runs/x', undefined)).toBe('--resume --out runs/x');
  });
});
