/** The experiment modules, by name; an alias resolves to its module (one implementation per table). */
import { asymmetry } from './experiments/asymmetry';
import { baselines } from './experiments/baselines';
import { components } from './experiments/components';
import { headline } from './experiments/harmoq';
import { sensitivity } from './experiments/sensitivity';
import { ExperimentError } from './errors';
import type { AnyExperiment } from './grid';
import { nearest } from '@harmoq/quant';

export const EXPERIMENTS: Readonly<Record<string, AnyExperiment>> = { baselines, asymmetry, sensitivity, components, harmoq: headline };

/** Every name `harmoq exp` accepts: module names and their aliases. */
export function experimentNames(): string[] {
  return Object.values(EXPERIMENTS).flatMap((m) => [m.name, ...m.aliases]);
}

export function experimentByName(name: string): AnyExperiment {
  const found = Object.values(EXPERIMENTS).find((m) => m.name === name || m.aliases.includes(name));
  if (!found) {
    const choices = experimentNames();
    const guess = nearest(name, choices);
    throw new ExperimentError(`unknown experiment '${name}' (${guess ? `did you mean '${guess}'? ` : ''}choices: ${choices.join(', ')})`, {
      value: name, choices,
    });
  }
  return found;
}
