// `ferry version`, `ferry help [TOPIC|COMMAND]`, `ferry completion bash|zsh`: about ferry itself.
import type { Command } from 'commander';
import { ErrorCode, FerryError } from '../../shared/errors.ts';
import { action, printResult } from '../output.ts';
import { ferryVersion } from '../version.ts';
import { bashCompletion, zshCompletion } from '../completion.ts';
import { TOPICS } from '../topics.ts';

export function registerMeta(program: Command): void {
  program
    .command('version')
    .description("print ferry's version (and with --json: Node's, the wire protocol's and the image format's)")
    .option('--json', 'print as JSON')
    .action(
      action(async (opts: { json?: boolean }) => {
        const version = ferryVersion();
        if (!opts.json) return void process.stdout.write(`ferry ${version}\n`);
        const [{ PROTOCOL_VERSION }, { IMAGE_VERSION }, { Version }] = await Promise.all([import('../../shared/protocol.ts'), import('../../shared/image-format.ts'), import('../schemas.ts')]);
        printResult(true, Version.parse({ name: 'ferry', version, node: process.version, protocol: PROTOCOL_VERSION, imageFormat: IMAGE_VERSION }), () => '');
      }),
    );

  program.helpCommand(false);
  program
    .command('help')
    .description(`help on a command, or on a topic: ${Object.keys(TOPICS).join(', ')}`)
    .argument('[topic...]', 'a command (e.g. "lab up") or a topic')
    .action(
      action(async (topic: string[]) => {
        if (topic.length === 0) return void program.outputHelp();
        const text = TOPICS[topic.join(' ')];
        if (text) return void process.stdout.write(text.trimStart());
        let cmd: Command | undefined = program;
        for (const word of topic) cmd = cmd?.commands.find((c) => c.name() === word || c.aliases().includes(word));
        if (cmd) return void cmd.outputHelp();
        throw new FerryError(ErrorCode.InvalidRequest, `no command or help topic "${topic.join(' ')}"; topics: ${Object.keys(TOPICS).join(', ')}`);
      }),
    );

  program
    .command('completion')
    .description('print a shell completion script: `source <(ferry completion bash)`, or in zsh `source <(ferry completion zsh)`')
    .argument('<shell>', 'bash or zsh')
    .action(
      action(async (shell: string) => {
        if (shell === 'bash') process.stdout.write(bashCompletion(program));
        else if (shell === 'zsh') process.stdout.write(zshCompletion(program));
        else throw new FerryError(ErrorCode.InvalidRequest, `completion for "${shell}": only bash and zsh`);
      }),
    );
}
