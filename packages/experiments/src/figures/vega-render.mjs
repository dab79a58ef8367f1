// Renders Vega-Lite specs to SVG: reads a JSON array of specs on stdin, writes a JSON array of SVG strings.
// A separate ES module because vega and vega-lite are ESM-only with top-level await, which CommonJS code
// (this repo, and jest) cannot require.
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const specs = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const svgs = [];
for (const spec of specs) {
  const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), { renderer: 'none' });
  svgs.push(await view.toSVG());
  view.finalize();
}
process.stdout.write(JSON.stringify(svgs));
