// The runnable steps of docs/operators.md and the parts of a systemd unit the guide's test
// starts a daemon from. Pure text handling: test/integration/operators-guide.test.ts runs them.
//
// A step is a ```sh block right after a marker line:
//   <!-- guide: on=m1,m2,m3 [as=install|copy] [retry] [until="REGEX"]... [id=NAME] -->
// on: the machines it runs on, in order; as=install: the package installation, which the test
// carries out itself; as=copy: `scp` lines, carried out by the test between the machines;
// retry: run again until it succeeds and its output matches every `until`; id: the test reads
// that step's output.

export interface GuideStep {
  /** 1-based line of the marker in the page, for messages. */
  line: number;
  on: string[];
  as: 'shell' | 'install' | 'copy';
  retry: boolean;
  until: RegExp[];
  id: string | null;
  script: string;
}

const MARKER = /^<!-- guide: (.*) -->$/;
const ATTR = /(\w+)(?:=("([^"]*)"|\S+))?/g;

export function guideSteps(markdown: string): GuideStep[] {
  const lines = markdown.split('\n');
  const steps: GuideStep[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = MARKER.exec(lines[i]!);
    if (!m) continue;
    if (lines[i + 1] !== '```sh') throw new Error(`docs/operators.md:${i + 1}: a guide marker must be followed by a \`\`\`sh block`);
    const end = lines.indexOf('```', i + 2);
    if (end < 0) throw new Error(`docs/operators.md:${i + 1}: unterminated block`);
    const stray = lines.slice(i + 2, end).findIndex((l) => l.startsWith('```'));
    if (stray >= 0) throw new Error(`docs/operators.md:${i + 3 + stray}: a fence inside a guide block (a block not closed by a line of its own?)`);
    const step: GuideStep = { line: i + 1, on: [], as: 'shell', retry: false, until: [], id: null, script: lines.slice(i + 2, end).join('\n') + '\n' };
    for (const a of m[1]!.matchAll(ATTR)) {
      const [, key, raw, quoted] = a;
      const value = quoted ?? raw;
      if (key === 'on' && value) step.on = value.split(',');
      else if (key === 'as' && (value === 'install' || value === 'copy')) step.as = value;
      else if (key === 'retry' && !value) step.retry = true;
      else if (key === 'until' && value) step.until.push(new RegExp(value));
      else if (key === 'id' && value) step.id = value;
      else throw new Error(`docs/operators.md:${i + 1}: unknown guide attribute ${a[0]}`);
    }
    if (step.on.length === 0) throw new Error(`docs/operators.md:${i + 1}: a guide step needs on=MACHINES`);
    steps.push(step);
    i = end;
  }
  return steps;
}

/** A script split at its `systemctl` lines, which the test carries out itself (no systemd in a namespace). */
export type ScriptPart = { kind: 'shell'; text: string } | { kind: 'start' | 'stop'; units: string[] };

export function splitAtSystemctl(script: string): ScriptPart[] {
  const parts: ScriptPart[] = [];
  let shell: string[] = [];
  const flush = () => {
    if (shell.some((l) => l.trim())) parts.push({ kind: 'shell', text: shell.join('\n') + '\n' });
    shell = [];
  };
  for (const line of script.split('\n')) {
    const cmd = line.replace(/#.*/, '').trim();
    if (!cmd.startsWith('systemctl ')) {
      shell.push(line);
      continue;
    }
    const m = /^systemctl (enable --now|start|stop) ([\w@.-]+(?: [\w@.-]+)*)$/.exec(cmd);
    if (!m) throw new Error(`the guide's test cannot carry out "${cmd}" (only systemctl enable --now, start and stop)`);
    flush();
    parts.push({ kind: m[1] === 'stop' ? 'stop' : 'start', units: m[2]!.split(' ') });
  }
  flush();
  return parts;
}

/** What the test needs of a unit's [Service] section to start it as systemd would. */
export interface ServiceUnit {
  execStart: string[];
  user: string | null;
  group: string | null;
  environment: Record<string, string>;
  stateDirectories: string[];
}

export function parseServiceUnit(text: string, name: string): ServiceUnit {
  let section = '';
  const unit: ServiceUnit = { execStart: [], user: null, group: null, environment: {}, stateDirectories: [] };
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const sec = /^\[(\w+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      continue;
    }
    if (section !== 'Service') continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1).trim();
    if (key === 'ExecStart') {
      // Prefixes: - (failure ignored), @, :, +, ! (privilege handling); none changes what runs here.
      unit.execStart = value.replace(/^[-@:+!]+/, '').split(/\s+/);
      if (unit.execStart.some((a) => /%|\$|["']/.test(a))) throw new Error(`${name}: ExecStart with specifiers, variables or quotes is beyond the guide's test: ${value}`);
    } else if (key === 'User') unit.user = value;
    else if (key === 'Group') unit.group = value;
    else if (key === 'StateDirectory') unit.stateDirectories.push(...value.split(/\s+/));
    else if (key === 'Environment') {
      for (const kv of value.split(/\s+/)) {
        const i = kv.indexOf('=');
        if (i > 0) unit.environment[kv.slice(0, i)] = kv.slice(i + 1);
      }
    }
  }
  if (unit.execStart.length === 0) throw new Error(`${name} has no ExecStart`);
  return unit;
}
