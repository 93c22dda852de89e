/**
 * Command-line options of the bench scripts: `parseArgs` with `--help` (or `-h`) printing the
 * script's usage, its leading doc comment and its options with their defaults, and an unknown or
 * malformed option printing a one-line error and exiting 2 instead of a parse-error stack trace.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

/** The leading block comment of `file` (the script's description), without its comment markers. */
export function leadingDoc(file: string): string {
  const text = readFileSync(file, 'utf8');
  const m = /^(?:#![^\n]*\n)?\s*\/\*\*?([\s\S]*?)\*\//.exec(text);
  if (!m) return '';
  return m[1]!
    .split('\n')
    .map((l) => l.replace(/^\s*\* ?/, ''))
    .join('\n')
    .trim();
}

/** The usage text: the script's doc comment, then one line per option with its default. */
export function usageText(moduleUrl: string, options: Options = {}): string {
  const file = fileURLToPath(moduleUrl);
  const lines = [`usage: node ${basename(file)} [options]`, '', leadingDoc(file)];
  const names = Object.keys(options);
  if (names.length) {
    lines.push('', 'options:');
    for (const name of names) {
      const o = options[name]!;
      const arg = o.type === 'string' ? ' VALUE' : '';
      const dflt = o.default === undefined ? '' : ` (default ${JSON.stringify(o.default)})`;
      lines.push(`  --${name}${arg}${o.multiple ? ' (repeatable)' : ''}${dflt}`);
    }
  }
  lines.push('  --help, -h (this text)');
  return lines.join('\n') + '\n';
}

/** Exits 0 after printing the usage when the command line asks for help (--help or -h). */
export function exitOnHelp(moduleUrl: string, options: Options = {}, args = process.argv.slice(2)): void {
  if (!args.includes('--help') && !args.includes('-h')) return;
  process.stdout.write(usageText(moduleUrl, options));
  process.exit(0);
}

/**
 * `parseArgs(config)` for the bench script at `moduleUrl` (its `import.meta.url`), with --help, and
 * with a bad command line reported as `SCRIPT: MESSAGE` and exit code 2.
 */
export function benchArgs<const O extends Options>(
  moduleUrl: string,
  config: { options: O },
  args = process.argv.slice(2),
): ReturnType<typeof parseArgs<{ options: O }>> {
  exitOnHelp(moduleUrl, config.options, args);
  try {
    return parseArgs({ options: config.options, args });
  } catch (err) {
    const code = (err as { code?: string }).code ?? '';
    if (!code.startsWith('ERR_PARSE_ARGS')) throw err;
    process.stderr.write(`${basename(fileURLToPath(moduleUrl))}: ${(err as Error).message} (--help for usage)\n`);
    process.exit(2);
  }
}
