// Runs the exported ONNX files with onnxruntime-node on inputs written by training/verify_onnx.py.
// usage: node training/ort_run.mjs <dir>   (reads <dir>/meta.json, writes <dir>/<model>.<output>.bin and ort.json)
import fs from 'node:fs';
import ort from 'onnxruntime-node';

const dir = process.argv[2];
const meta = JSON.parse(fs.readFileSync(`${dir}/meta.json`, 'utf8'));
const result = {};
for (const m of meta.models) {
  const sess = await ort.InferenceSession.create(m.path, { intraOpNumThreads: 2, interOpNumThreads: 1 });
  const feeds = {};
  for (const inp of m.inputs) {
    const b = fs.readFileSync(`${dir}/${inp.file}`);
    const ab = b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
    const data = inp.dtype === 'int64' ? new BigInt64Array(ab) : new Float32Array(ab);
    feeds[inp.name] = new ort.Tensor(inp.dtype, data, inp.shape);
  }
  await sess.run(feeds); // warm-up
  const t0 = process.hrtime.bigint();
  const reps = m.reps || 1;
  let res;
  for (let i = 0; i < reps; i++) res = await sess.run(feeds);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / reps;
  result[m.name] = { ms, outputs: {} };
  for (const [k, v] of Object.entries(res)) {
    fs.writeFileSync(`${dir}/${m.name}.${k}.bin`, Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength));
    result[m.name].outputs[k] = v.dims;
  }
}
fs.writeFileSync(`${dir}/ort.json`, JSON.stringify(result, null, 1));
