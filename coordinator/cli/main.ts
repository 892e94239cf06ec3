/**
 * The `dtrain` command line. Expected failures (bad flags, missing data, no backend) print one clear
 * message and exit 2, without a stack trace; anything else is a bug and prints everything.
 */
import { Command, CommanderError } from 'commander';
import { DtrainError } from '../../common/errors.ts';
import { registerSummaryCommand, registerTrainCommand } from './train.ts';
import { registerScratchCommand } from './scratch.ts';
import { registerCoordinatorCommand, registerWorkerCommand } from './distributed.ts';
import { registerSamplesCommand } from './samples.ts';
import { registerReportCommand } from './report.ts';
import { setNodeThreads } from '../../common/background-threads.ts';

export function buildProgram(): Command {
  const program = new Command('dtrain')
    .description('Distributed data-parallel training of CIFAR-10 classifiers')
    .version('0.1.0')
    // commander's own refusals (an unknown flag or command, a missing value or option, a stray
    // argument) read like ours: one line, "dtrain: ...", exit code 2 (main below).
    .configureOutput({ outputError: (str, write) => write(commanderLine(str)) })
    .allowExcessArguments(false)
    .exitOverride()
    // The coordinating process only builds models and saves checkpoints: the cpu backend is enough.
    // TensorFlow.js is loaded here, before a command runs, not for --help or a refused flag.
    .hook('preAction', async () => {
      const { tf } = await import('../../common/tf.ts');
      await tf.setBackend('cpu');
    });
  registerTrainCommand(program);
  registerCoordinatorCommand(program);
  registerWorkerCommand(program);
  registerSummaryCommand(program);
  registerScratchCommand(program);
  registerSamplesCommand(program);
  registerReportCommand(program);
  return program;
}

/** commander's error text ("error: unknown option '--x'" and, where it has one, its suggestion on the next line) as one line of ours. */
export function commanderLine(text: string): string {
  const said = text.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim();
  return `dtrain: ${said} (--help lists the commands and flags)\n`;
}

/** `nodeThreads`: the threads bin/dtrain.js found at start (Node's own), which yield to training later (background-threads.ts). */
export async function main(argv: string[], nodeThreads: readonly number[] = []): Promise<void> {
  setNodeThreads(nodeThreads);
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and --version end with 0; every refusal of the command line is bad input.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    if (err instanceof DtrainError && err.expected) {
      process.stderr.write(`dtrain: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}
