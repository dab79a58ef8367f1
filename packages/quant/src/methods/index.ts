/**
 * The PTQ method registry. A method is one file in this folder and one line here; the CLI, the docs
 * listing and the tests all read PTQ_METHODS.
 */
import type { AnyPtqMethod } from '../method';
import { dobi } from './dobi';
import { harmoq } from './harmoq';
import { minmax } from './minmax';
import { mse } from './mse';
import { noisyQuant } from './noisyquant';
import { percentile } from './percentile';
import { ptq4vit } from './ptq4vit';
import { twoDQuant } from './twodquant';

export const PTQ_METHODS = { minmax, percentile, mse, dobi, '2dquant': twoDQuant, ptq4vit, noisyquant: noisyQuant, harmoq } satisfies Record<string, AnyPtqMethod>;

export type MethodName = keyof typeof PTQ_METHODS;
export const METHOD_NAMES = Object.keys(PTQ_METHODS) as MethodName[];
