import * as fs from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { writeFileAtomic } from '@harmoq/data';
import { EXPORT_FORMATS, checkQParamsFor, codeVersion, exportQuantizedOnnx, parseExportFormat, qparamsPlan, readQParams } from '@harmoq/quant';
import { ARCH_NAMES } from '@harmoq/swinir';
import { sha256File } from '@harmoq/torch-io';
import { choiceInt, UsageError } from '../errors';
import { loadCheckedModel } from '../model';

interface ExportFlags {
  arch?: string;
  scale: string;
  weights: string;
  quant: string;
  onnx: string;
  format: string;
  size: string;
}

/** `HxW` with positive integers. */
function parseSize(raw: string): { height: number; width: number } {
  const m = /^(\d+)x(\d+)$/.exec(raw);
  const height = m ? Number(m[1]) : 0, width = m ? Number(m[2]) : 0;
  if (height < 1 || width < 1) throw new UsageError(`--size '${raw}' is not valid (expected HxW, e.g. 64x64)`);
  return { height, width };
}

export function exportCommand(): Command {
  return new Command('export')
    .description('write a quantized model (weights + qparams file) as a stock ONNX file for onnxruntime (see docs/deploy.md)')
    .requiredOption('--weights <file>', 'SwinIR checkpoint (.pth with params/params_ema, or .safetensors)')
    .requiredOption('--scale <s>', 'upscale factor (2|3|4|8); checked against the checkpoint')
    .option('--arch <name>', `architecture family, checked against the checkpoint (${ARCH_NAMES.join('|')}); inferred if omitted`)
    .requiredOption('--quant <qparams>', 'qparams file from `harmoq quantize` (made for this checkpoint and scale)')
    .requiredOption('--onnx <file>', 'ONNX file to write (atomic)')
    .option('--format <name>', `qdq: integer QuantizeLinear/DequantizeLinear, uint8 weights; fakequant: the engine's graph, float weights; ` +
      `packed: b-bit packed weights, fake-quant activations (${EXPORT_FORMATS.join('|')})`, 'qdq')
    .option('--size <HxW>', 'fixed input size of the graph (window masks are baked per size; tile larger images)', '64x64')
    .action(async (flags: ExportFlags) => {
      const scale = choiceInt('--scale', flags.scale, [2, 3, 4, 8]);
      const format = parseExportFormat(flags.format);
      const { height, width } = parseSize(flags.size);
      const outDir = path.dirname(path.resolve(flags.onnx));
      if (!fs.existsSync(outDir)) throw new UsageError(`--onnx '${flags.onnx}': folder ${outDir} does not exist`);
      const qparams = readQParams(flags.quant);
      const model = loadCheckedModel(flags, scale);
      checkQParamsFor(qparams, { arch: model.arch, scale, config: model.config, sha256: model.sha256, file: flags.weights }, flags.quant);
      const { plan, bounds } = qparamsPlan(qparams, flags.quant);
      const metadata = {
        method: qparams.method, wbits: String(qparams.wbits), abits: String(qparams.abits), qparams_sha256: sha256File(flags.quant),
        commit: codeVersion().git ?? 'unknown', arch: model.arch, scale: String(scale), size: `${height}x${width}`,
      };
      const { model: bytes, stats } = exportQuantizedOnnx(plan, bounds, model.stateDict, { format, height, width, metadata });
      try {
        await writeFileAtomic(flags.onnx, bytes);
      } catch (err) {
        throw new UsageError(`--onnx '${flags.onnx}' cannot be written: ${(err as Error).message}`);
      }
      const notes = [
        stats.snapped > 0 ? `${stats.snapped} real-valued offsets snapped to integer zero points` : '',
        stats.floatWeights.length > 0 ? `${stats.floatWeights.length} weight quantizers stay float (no integer grid): ${stats.floatWeights.join(', ')}` : '',
      ].filter((n) => n);
      process.stdout.write(
        `${format} ${qparams.method} W${qparams.wbits}A${qparams.abits} x${scale} ${height}x${width}: ${bytes.length} bytes ` +
          `(${stats.weightValues} weights in ${stats.weightBytes} bytes) -> ${flags.onnx}\n` + notes.map((n) => `note: ${n}\n`).join(''),
      );
    });
}
