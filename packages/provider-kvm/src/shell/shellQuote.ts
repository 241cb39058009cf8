/**
 * POSIX shell quoting for every argument that reaches a host's shell.
 *
 * sshd hands an exec request's command line to the user's login shell, so every argument we
 * build is a shell word. Each one is wrapped in single quotes, inside which a POSIX shell
 * interprets nothing at all; a single quote itself is written as `'\''` (close, escaped
 * quote, reopen). That is the whole rule, which is why it is the only quoting function in
 * the package: names are also validated (see names.ts), but safety never depends on it.
 *
 * NUL cannot be passed in an argv at all, so it is refused rather than silently cut.
 */
export function shellQuote(arg: string): string {
  if (arg.includes('\0')) throw new TypeError('a shell argument cannot contain NUL');
  // Words made only of characters no shell treats specially are left bare: the command
  // lines in logs and errors stay readable. Everything else is single-quoted.
  if (arg !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** A command line from argv, every word quoted. */
export function shellCommand(argv: readonly string[]): string {
  if (argv.length === 0) throw new TypeError('empty command');
  return argv.map(shellQuote).join(' ');
}
