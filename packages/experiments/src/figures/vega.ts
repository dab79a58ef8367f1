/**
 * Vega-Lite spec -> SVG (vega, in a child Node process: vega is ESM with top-level await) -> PNG (resvg).
 * Both steps are deterministic, so the same spec gives the same PNG bytes on the same machine and fonts.
 */
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import { ExperimentError } from '../errors';

/** A Vega-Lite spec (its JSON); kept loose since vega-lite's types are in an ES module this code cannot import. */
export type VegaLiteSpec = Record<string, unknown>;

/** The plots' font: DejaVu Sans ships with Debian's TeX and fontconfig; resvg falls back when it is absent. */
export const FIGURE_FONT = 'DejaVu Sans';

/** Renders the specs to SVG strings in one child process. */
export function renderSvgs(specs: readonly VegaLiteSpec[]): string[] {
  if (specs.length === 0) return [];
  const script = path.join(__dirname, 'vega-render.mjs');
  try {
    const out = execFileSync(process.execPath, [script], { input: JSON.stringify(specs), maxBuffer: 256 * 2 ** 20, stdio: ['pipe', 'pipe', 'pipe'] });
    return JSON.parse(out.toString('utf8')) as string[];
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString('utf8').trim().split('\n').slice(-3).join(' | ');
    throw new ExperimentError(`vega could not render the figures: ${stderr || (err instanceof Error ? err.message : String(err))}`, { badInput: false, cause: err });
  }
}

/** SVG -> PNG at `zoom` times the SVG's size, on white. */
export function svgToPng(svg: string, zoom = 2): Buffer {
  const resvg = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: zoom },
    background: 'white',
    font: { loadSystemFonts: true, defaultFontFamily: FIGURE_FONT, sansSerifFamily: FIGURE_FONT },
  });
  return resvg.render().asPng();
}
