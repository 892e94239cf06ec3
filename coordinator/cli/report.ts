/**
 * `dtrain report RUN_DIR...`: compares finished runs in one self-contained HTML page, with a
 * Markdown twin and its PNGs written beside it.
 */
import { Command } from 'commander';
import { extname, resolve } from 'node:path';
import { ConfigError } from '../../common/errors.ts';

export function checkHtmlPath(flag: string, value: string): string {
  const ext = extname(value).toLowerCase();
  if (value.trim() === '' || (ext !== '.html' && ext !== '.htm')) {
    throw new ConfigError(`${flag} must be a file name ending in .html, got "${value}".`);
  }
  return value;
}

export interface ReportCommandDependencies {
  /** Where the "wrote ..." lines go; default stdout. */
  print?: (line: string) => void;
}

export function registerReportCommand(program: Command, deps: ReportCommandDependencies = {}): Command {
  return program
    .command('report')
    .description('compare finished runs: a table, overlaid curves, the overfitting gap, and dropout vs batch normalization')
    .argument('<run-dirs...>', 'run folders, each holding history.json and metrics.json')
    .requiredOption('--out <file.html>', 'the HTML report; report.md and its PNGs are written beside it', (value: string) => checkHtmlPath('--out', value))
    .action(async (runDirs: string[], flags: { out: string }) => {
      const print = deps.print ?? ((line: string) => process.stdout.write(`${line}\n`));
      const { writeReport } = await import('../../common/report/report.ts');
      const written = await writeReport(runDirs, resolve(flags.out));
      print(`wrote ${written.html}`);
      print(`wrote ${written.markdown} (with ${written.images.length} PNGs beside it)`);
    });
}
