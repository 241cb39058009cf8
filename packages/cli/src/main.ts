import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { NovaCronError, toNovaCronError } from '@novacron/core';
import type { GlobalOptions, Io } from './context.js';
import { EXIT } from './exit.js';
import { applyCommand } from './commands/apply.js';
import { destroyCommand } from './commands/destroy.js';
import { drainCommand, migrateCommand } from './commands/migrate.js';
import { placeCommand } from './commands/place.js';
import { planCommand } from './commands/plan.js';
import { schemaCommand } from './commands/schema.js';
import { registerSnapshotCommands } from './commands/snapshot.js';
import { statusCommand } from './commands/status.js';
import { adoptCommand } from './commands/adopt.js';
import { importCommand } from './commands/import.js';

const CLIENT_CODES = new Set(['InvalidSpec', 'InvalidInput', 'Conflict', 'Unsupported', 'NotFound']);

/** Runs the CLI and returns its exit code; never calls process.exit, so tests can run it in process. */
export async function main(argv: readonly string[], io: Io): Promise<number> {
  let exitCode: number = EXIT.ok;
  let globals: GlobalOptions = { file: 'fleet.yaml', json: false, debug: false };
  const program = new Command('novacron')
    .description('Declare a VM fleet once; place, create, reconcile, migrate and snapshot it on KVM hosts, EC2 and GCE.')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .showSuggestionAfterError(true);

  const run = (fn: (opts: Record<string, unknown>) => Promise<number>) => async (opts: Record<string, unknown>, cmd: Command) => {
    const all = { ...cmd.optsWithGlobals(), ...opts } as Record<string, unknown>;
    globals = { file: String(all['file'] ?? 'fleet.yaml'), json: all['json'] === true, debug: all['debug'] === true, ...(all['stateDir'] ? { stateDir: String(all['stateDir']) } : {}) };
    exitCode = await fn({ ...all, ...globals });
  };

  const common = (cmd: Command) =>
    cmd
      .option('-f, --file <path>', 'fleet file (YAML or JSON)', 'fleet.yaml')
      .option('--json', 'machine-readable output on stdout', false)
      .option('--state-dir <dir>', 'where the sim provider keeps its world (default: NOVACRON_STATE_DIR or .novacron/)')
      .option('--debug', 'print stack traces', false);
  const concurrency = new Option('-c, --concurrency <n>', 'steps run at once').default(10).argParser(positiveInt);

  const rebalance = new Option('--rebalance <target>', 'also move running VMs: balance[:MAX_IMBALANCE], consolidate[:MAX_ACTIVE_HOSTS], or drain:HOST[,HOST…] (otherwise where a VM runs is not drift)');
  const weights = new Option('--weights <list>', "weights of the soft rules, e.g. cost=1,balance=0.5 (cost, consolidation, balance, headroom, preferLabels, locality); they replace the fleet's placement.weights");
  common(program.command('plan').description('show what apply would change, and why'))
    .addOption(rebalance)
    .addOption(weights)
    .action(run((o) => planCommand(io, o as never)));
  common(program.command('apply').description('create, change and delete VMs until the fleet matches its spec'))
    .addOption(concurrency)
    .addOption(rebalance)
    .addOption(weights)
    .action(run((o) => applyCommand(io, o as never)));
  common(program.command('status').description("the fleet's VMs and hosts as the providers report them")).action(run((o) => statusCommand(io, o as unknown as GlobalOptions)));
  common(program.command('destroy').description('delete every VM the fleet owns'))
    .addOption(concurrency)
    .option('-y, --yes', 'do not ask for confirmation', false)
    .action(run((o) => destroyCommand(io, o as never)));

  const policyFlags = (cmd: Command) =>
    cmd
      .addOption(new Option('--mode <mode>', 'live or cold (default: the group policy; live when the VM runs and the provider can)').choices(['live', 'cold']))
      .option('--max-downtime <ms>', 'downtime limit in milliseconds', positiveInt)
      .option('--bandwidth <mbps>', 'cap on the migration stream, Mbit/s', positiveInt)
      .option('--pacing <share>', "the stream's rate as a share of the measured link, 0.5-1 (1: unpaced)", share)
      .option('--auto-converge', 'allow throttling the guest to converge')
      .option('--no-auto-converge', 'never throttle the guest')
      .option('--post-copy', 'allow switching to post-copy')
      .option('--post-copy-after <rounds>', 'switch to post-copy after this many rounds', positiveInt)
      .addOption(new Option('--compression <kind>', 'page compression').choices(['none', 'xbzrle', 'multifd-zstd', 'multifd-zlib']))
      .option('--parallel <n>', 'parallel connections (multifd)', positiveInt)
      .option('--timeout-per-gib <duration>', 'completion timeout per GiB of guest memory, e.g. 2m')
      .addOption(new Option('--on-timeout <action>', 'what to do on timeout').choices(['abort', 'postcopy']))
      .addOption(new Option('--wan-profile <profile>', 'link profile').choices(['lan', 'wan', 'adaptive']))
      .option('--dry-run', 'check and predict, move nothing', false);

  policyFlags(common(program.command('migrate <vm>').description('move one VM to another host, live or cold; prints predicted and measured figures')))
    .requiredOption('--to <host>', 'destination host (name or provider/name)')
    .action((vm: string, opts: Record<string, unknown>, cmd: Command) => run((o) => migrateCommand(io, vm, o as never))(opts, cmd));
  policyFlags(common(program.command('drain <host>').description('move every VM of the fleet off a host')))
    .addOption(concurrency)
    .action((host: string, opts: Record<string, unknown>, cmd: Command) => run((o) => drainCommand(io, host, o as never))(opts, cmd));

  registerSnapshotCommands(program, io, common, run);

  common(program.command('adopt').description("take VMs on the fleet's hosts that no fleet owns into the fleet, without restarting them"))
    .option('-g, --group <group>', 'only into this group (also adopts VMs whose image cannot be told, as the group\'s)')
    .option('--names <glob>', 'only VMs whose names match, e.g. "web-*"')
    .option('--write-fleet <file>', 'write a new fleet file for the VMs (one group per size and image) and adopt them into it')
    .option('--fleet-name <name>', 'the new fleet\'s name (default: the file\'s name)')
    .option('--dry-run', 'match and explain, change nothing', false)
    .action(run((o) => adoptCommand(io, o as never)));
  common(program.command('import').description('print the Pulumi or CDKTF program that manages this (adopted) fleet'))
    .option('--pulumi', 'a Pulumi program (@novacron/pulumi VmFleet)')
    .option('--cdktf', 'a CDKTF stack (@novacron/cdktf VmFleet), importing the running VMs')
    .option('-o, --out <file>', 'write it here instead of stdout')
    .action(run((o) => importCommand(io, o as never)));

  program
    .command('place')
    .description('place VMs on hosts from inventory files and say why, touching nothing (a what-if)')
    .requiredOption('--hosts <file>', 'hosts: a JSON list of {id, cpu, memoryMiB, diskGiB?, zone?, labels?, pricePerHour?, overcommit?, state?}')
    .requiredOption('--vms <file>', 'VMs: a JSON list of {id, cpu, memoryMiB, diskGiB?, group?, labels?, host?} (with host: running there already)')
    .option('--rules <file>', 'placement rules per group: a JSON object {group: rules}, as in a fleet file')
    .option('--weights <list>', 'weights of the soft rules, e.g. cost=1,balance=0.5 (cost, consolidation, balance, headroom, preferLabels, locality)')
    .option('--seed <n>', 'seed for ties and the search: the same seed gives the same placement', nonNegativeInt)
    .option('--json', 'machine-readable output on stdout', false)
    .option('--html <file>', 'also write a self-contained HTML report: each host\'s fill and every explanation')
    .option('--debug', 'print stack traces', false)
    .action(run((o) => placeCommand(io, o as never)));

  program
    .command('schema')
    .description('print the JSON Schema of fleet files (for editors: yaml-language-server, VS Code)')
    .action(async () => {
      exitCode = await schemaCommand(io);
    });

  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (thrown) {
    if (thrown instanceof CommanderError) {
      return thrown.exitCode === 0 ? EXIT.ok : EXIT.invalid;
    }
    return reportError(io, globals, thrown);
  }
}

function reportError(io: Io, options: GlobalOptions, thrown: unknown): number {
  const error = toNovaCronError(thrown);
  const code = error.fault === 'client' && CLIENT_CODES.has(error.code) ? EXIT.invalid : EXIT.failed;
  if (options.json) {
    io.stdout.write(`${JSON.stringify({ ok: false, error: error.toJSON() }, null, 2)}\n`);
  } else {
    io.stderr.write(`error: ${NovaCronError.isInstance(thrown) ? error.describe() : error.message}\n`);
  }
  if (options.debug) io.stderr.write(`${(error.cause instanceof Error ? error.cause : error).stack ?? ''}\n`);
  return code;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number of 0 or more');
  return n;
}

function share(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0.5 || n > 1) throw new InvalidArgumentError('expected a number from 0.5 to 1');
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number of 1 or more');
  return n;
}
