// Shell completion scripts, generated from the command tree itself so they never fall behind it:
// commands, subcommands and each one's options. zsh runs the bash function through bashcompinit.
import type { Command } from 'commander';
import { TOPICS } from './topics.ts';

const optionsOf = (c: Command): string[] => [...c.options.flatMap((o) => [o.long, o.short].filter((x): x is string => !!x)), '--help'];
const visible = (c: Command): Command[] => c.commands.filter((x) => !(x as unknown as { _hidden?: boolean })._hidden);

/** `case` arms on "<command> <subcommand>", most specific first. */
function cases(program: Command): string[] {
  const arms: string[] = [];
  const arm = (pattern: string, words: string[]) => arms.push(`    ${pattern}) words=${JSON.stringify(words.join(' '))} ;;`);
  for (const c of visible(program)) {
    const subs = visible(c);
    for (const s of subs) arm(`"${c.name()} ${s.name()}"*`, optionsOf(s));
    if (subs.length > 0) arm(`"${c.name()} "*`, subs.map((s) => s.name()));
    else if (c.name() === 'help' || c.name() === 'completion') continue;
    else arm(`"${c.name()} "*`, optionsOf(c));
  }
  return arms;
}

export function bashCompletion(program: Command): string {
  const top = [...visible(program).map((c) => c.name()), '--help', '--version'];
  return `# ferry completion for bash: source <(ferry completion bash)
_ferry() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="" sub="" w words
  for w in "\${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    [[ $w == -* ]] && continue
    if [[ -z $cmd ]]; then cmd=$w; elif [[ -z $sub ]]; then sub=$w; fi
  done
  case "$cmd $sub" in
    "help "*) words=${JSON.stringify([...visible(program).map((c) => c.name()), ...Object.keys(TOPICS)].join(' '))} ;;
    "completion "*) words="bash zsh" ;;
${cases(program).join('\n')}
    *) words=${JSON.stringify(top.join(' '))} ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _ferry ferry
`;
}

export function zshCompletion(program: Command): string {
  return `#compdef ferry
# ferry completion for zsh: source <(ferry completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bashCompletion(program).split('\n').slice(1).join('\n')}`;
}
