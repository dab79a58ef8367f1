/**
 * Two chart models (lines over categories, bars over categories), each written two ways: a Vega-Lite spec
 * (rendered to PNG) and plain TikZ `\draw`/`\fill` commands (pgfplots is not part of texlive-latex-*, so
 * the axes are drawn by hand). Both use the same colors, so a method looks the same in the PNG and the PDF.
 */
import { FIGURE_FONT, type VegaLiteSpec } from './vega';

/** Vega's tableau10, the default categorical scheme, written out so TikZ can use the same colors. */
export const PALETTE = ['#4c78a8', '#f58518', '#e45756', '#72b7b2', '#54a24b', '#eeca3b', '#b279a2', '#ff9da6', '#9d755d', '#bab0ac'];

export interface LineSeries {
  /** Identifier (method name), written as a comment above its TikZ curve. */
  name: string;
  label: string;
  /** `#rrggbb`. */
  color: string;
  /** Missing points are left out; the line joins the ones present. */
  points: { category: string; y: number }[];
}

export interface LineChart {
  title: string;
  xLabel: string;
  yLabel: string;
  /** x positions, left to right. */
  categories: string[];
  series: LineSeries[];
  /** A dashed horizontal line (the float model). */
  reference?: { y: number; label: string };
}

export interface BarChart {
  title: string;
  xLabel: string;
  yLabel: string;
  bars: { category: string; value: number; color: string }[];
}

const WIDTH = 320;
const HEIGHT = 200;

function baseSpec(title: string): VegaLiteSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    width: WIDTH,
    height: HEIGHT,
    background: 'white',
    config: { font: FIGURE_FONT, axis: { labelFontSize: 11, titleFontSize: 12 }, legend: { labelFontSize: 11 } },
  };
}

export function lineChartSpec(chart: LineChart): VegaLiteSpec {
  const values = chart.series.flatMap((s) => s.points.map((p) => ({ series: s.label, x: p.category, y: p.y })));
  const layers: VegaLiteSpec[] = [{
    data: { values },
    mark: { type: 'line', point: { size: 50 }, strokeWidth: 2 },
    encoding: {
      x: { field: 'x', type: 'ordinal', sort: chart.categories, scale: { domain: chart.categories }, title: chart.xLabel, axis: { labelAngle: 0 } },
      y: { field: 'y', type: 'quantitative', scale: { zero: false }, title: chart.yLabel },
      color: {
        field: 'series', type: 'nominal', title: null,
        scale: { domain: chart.series.map((s) => s.label), range: chart.series.map((s) => s.color) },
      },
    },
  }];
  if (chart.reference) {
    const ref = { data: { values: [{ y: chart.reference.y, label: chart.reference.label }] }, encoding: { y: { field: 'y', type: 'quantitative' } } };
    layers.push({ ...ref, mark: { type: 'rule', strokeDash: [5, 4], color: '#333333' } });
    layers.push({ ...ref, mark: { type: 'text', align: 'left', baseline: 'bottom', dx: 4, dy: -2, color: '#333333' }, encoding: { ...ref.encoding, x: { value: 0 }, text: { field: 'label' } } });
  }
  return { ...baseSpec(chart.title), layer: layers };
}

export function barChartSpec(chart: BarChart): VegaLiteSpec {
  return {
    ...baseSpec(chart.title),
    data: { values: chart.bars.map((b) => ({ x: b.category, y: b.value, color: b.color })) },
    mark: { type: 'bar' },
    encoding: {
      x: { field: 'x', type: 'ordinal', sort: chart.bars.map((b) => b.category), title: chart.xLabel, axis: { labelAngle: -60 } },
      y: { field: 'y', type: 'quantitative', title: chart.yLabel },
      color: { field: 'color', type: 'nominal', scale: null, legend: null },
    },
  };
}

/** Round tick step (1, 2 or 5 x 10^k) giving about `count` ticks over [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) {
    const pad = Math.abs(lo) > 0 ? Math.abs(lo) * 0.05 : 1;
    return niceTicks(lo - pad, hi + pad, count);
  }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const first = Math.floor(lo / step) * step;
  const ticks: number[] = [];
  for (let v = first; v <= hi + step * 1e-9 || ticks.length < 2; v += step) ticks.push(Number(v.toFixed(10)));
  if (ticks[ticks.length - 1] < hi) ticks.push(Number((ticks[ticks.length - 1] + step).toFixed(10)));
  return ticks;
}

function tikzColor(hex: string): string {
  const n = parseInt(hex.slice(1), 16);
  return `{rgb,255:red,${(n >> 16) & 255};green,${(n >> 8) & 255};blue,${n & 255}}`;
}

function tikzText(text: string): string {
  return text.replace(/[\\{}$&#%_^~]/g, (ch) => (ch === '\\' ? '\\textbackslash{}' : ch === '^' ? '\\^{}' : ch === '~' ? '\\~{}' : `\\${ch}`));
}

const fmt = (v: number) => {
  const s = v.toFixed(3).replace(/\.?0+$/, '');
  return s === '-0' ? '0' : s;
};
/** Tick labels with as few decimals as the step needs. */
function tickLabel(v: number, ticks: readonly number[]): string {
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
  return v.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

const W_CM = 8;
const H_CM = 5;

interface Frame {
  lines: string[];
  xAt: (i: number) => number;
  yAt: (v: number) => number;
}

/** Axes, y ticks with light grid lines, x category ticks and labels, axis titles. */
function tikzFrame(title: string, xLabel: string, yLabel: string, categories: readonly string[], yValues: readonly number[], rotateX: boolean, zeroBased: boolean): Frame {
  const lo = yValues.length ? Math.min(...yValues, ...(zeroBased ? [0] : [])) : 0;
  const hi = yValues.length ? Math.max(...yValues, ...(zeroBased ? [0] : [])) : 1;
  const ticks = niceTicks(lo, hi);
  const y0 = ticks[0];
  const y1 = ticks[ticks.length - 1];
  const yAt = (v: number) => ((v - y0) / (y1 - y0)) * H_CM;
  const slot = W_CM / Math.max(1, categories.length);
  const xAt = (i: number) => slot * (i + 0.5);
  const lines = [
    `% ${tikzText(title)}`,
    '\\begin{tikzpicture}[font=\\small]',
    `\\node[anchor=south] at (${fmt(W_CM / 2)},${fmt(H_CM + 0.2)}) {${tikzText(title)}};`,
  ];
  for (const t of ticks) {
    lines.push(`\\draw[black!12] (0,${fmt(yAt(t))}) -- (${fmt(W_CM)},${fmt(yAt(t))});`);
    lines.push(`\\node[anchor=east] at (-0.1,${fmt(yAt(t))}) {${tickLabel(t, ticks)}};`);
  }
  lines.push(`\\draw (0,0) rectangle (${fmt(W_CM)},${fmt(H_CM)});`);
  categories.forEach((c, i) => {
    lines.push(`\\draw (${fmt(xAt(i))},0) -- (${fmt(xAt(i))},-0.08);`);
    lines.push(rotateX
      ? `\\node[anchor=east,rotate=60] at (${fmt(xAt(i))},-0.12) {\\scriptsize ${tikzText(c)}};`
      : `\\node[anchor=north] at (${fmt(xAt(i))},-0.12) {${tikzText(c)}};`);
  });
  lines.push(`\\node[anchor=north] at (${fmt(W_CM / 2)},${rotateX ? -1.6 : -0.6}) {${tikzText(xLabel)}};`);
  lines.push(`\\node[rotate=90,anchor=south] at (-1.1,${fmt(H_CM / 2)}) {${tikzText(yLabel)}};`);
  return { lines, xAt, yAt };
}

/** A tikzpicture: one `\draw ... plot coordinates` per series, legend at the right (nodes and fills only). */
export function tikzLineChart(chart: LineChart): string {
  const yValues = [...chart.series.flatMap((s) => s.points.map((p) => p.y)), ...(chart.reference ? [chart.reference.y] : [])];
  const { lines, xAt, yAt } = tikzFrame(chart.title, chart.xLabel, chart.yLabel, chart.categories, yValues, false, false);
  if (chart.reference) {
    const y = fmt(yAt(chart.reference.y));
    lines.push(`\\draw[dashed,black!80] (0,${y}) -- (${fmt(W_CM)},${y}) node[pos=0.02,anchor=south west,inner sep=1pt] {\\scriptsize ${tikzText(chart.reference.label)}};`);
  }
  for (const s of chart.series) {
    const coords = s.points
      .map((p) => ({ i: chart.categories.indexOf(p.category), y: p.y }))
      .filter((p) => p.i >= 0)
      .sort((a, b) => a.i - b.i)
      .map((p) => `(${fmt(xAt(p.i))},${fmt(yAt(p.y))})`);
    if (coords.length === 0) continue;
    lines.push(`% series ${tikzText(s.name)}`);
    lines.push(`\\draw[color=${tikzColor(s.color)},thick,mark=*,mark size=1.5pt] plot coordinates {${coords.join(' ')}};`);
  }
  chart.series.forEach((s, i) => {
    const y = fmt(H_CM - 0.25 - i * 0.45);
    lines.push(`\\fill[color=${tikzColor(s.color)}] (${fmt(W_CM + 0.4)},${y}) circle (2pt);`);
    lines.push(`\\node[anchor=west] at (${fmt(W_CM + 0.55)},${y}) {${tikzText(s.label)}};`);
  });
  lines.push('\\end{tikzpicture}');
  return lines.join('\n') + '\n';
}

/** A tikzpicture with one `\fill` rectangle per bar, from zero. */
export function tikzBarChart(chart: BarChart): string {
  const categories = chart.bars.map((b) => b.category);
  const { lines, xAt, yAt } = tikzFrame(chart.title, chart.xLabel, chart.yLabel, categories, chart.bars.map((b) => b.value), true, true);
  const half = (W_CM / Math.max(1, categories.length)) * 0.35;
  chart.bars.forEach((b, i) => {
    lines.push(`\\fill[color=${tikzColor(b.color)}] (${fmt(xAt(i) - half)},${fmt(yAt(0))}) rectangle (${fmt(xAt(i) + half)},${fmt(yAt(b.value))});`);
  });
  lines.push('\\end{tikzpicture}');
  return lines.join('\n') + '\n';
}

/** A document that compiles TikZ figures (`\input` each); needs the pgf package (texlive-pictures). */
export function tikzDocument(inputs: readonly string[]): string {
  return [
    '% Generated by `npx harmoq tables`; needs TikZ (pgf, in texlive-pictures).',
    '\\documentclass{article}',
    '\\usepackage{tikz}',
    '\\begin{document}',
    ...inputs.flatMap((file) => [`\\input{${file}}`, '']),
    '\\end{document}',
  ].join('\n') + '\n';
}
