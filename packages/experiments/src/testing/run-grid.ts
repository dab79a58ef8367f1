/** Runs a tiny grid in its own process (argv: data folder, results folder, bits), so a test can kill -9 it. */
import { runExperiment } from '../run';

const [data, results, bits] = process.argv.slice(2);
const set = ['scales=2', 'methods=minmax', `bits=${bits}`, 'datasets=Set5', 'quant.calibration.count=4', 'quant.calibration.heldOutCount=0'];
runExperiment({ name: 'baselines', set, dataDir: data, resultsDir: results, tracker: null, log: () => {}, threads: 1 }).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  },
);
