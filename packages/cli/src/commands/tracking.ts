import { Command } from 'commander';
import { SYNC_USAGE, syncCommandMain } from '@harmoq/tracking';
import { UsageError } from '../errors';

/** `harmoq tracking sync ...`: the arguments go to @harmoq/tracking's own parser unchanged. */
export function trackingCommand(): Command {
  const tracking = new Command('tracking').description('MLflow tracking store maintenance');
  tracking.addCommand(
    new Command('sync')
      .description(`push local runs (./mlruns) to a tracking server, idempotently by cell key. ${SYNC_USAGE.split('\n')[0]}`)
      .helpOption(false)
      .exitOverride()
      .allowUnknownOption()
      .allowExcessArguments()
      .argument('[args...]')
      .action(async (args: string[]) => {
        const code = await syncCommandMain(args);
        if (code === 2) throw new UsageError('tracking sync: bad usage (see above)');
        if (code !== 0) throw new Error('tracking sync did not finish; rerun it to push the rest');
      }),
  );
  return tracking;
}
