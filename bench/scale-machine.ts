/**
 * What one peer download costs on this machine and build, as the scale model's machine needs it
 * (testkit/scale/machine.ts; issue 24 item 3): fresh daemons on loopback download the file from
 * the ones that hold it, one after another; the receiving, serving and `peerdist get` CPU and the
 * time around each transfer are fitted as a fixed part per download plus a part per GiB.
 *   npm run build && node dist/bench/scale-machine.js [--sizes 16MiB,64MiB] [--rounds 3] [--json]
 */
import { benchArgs } from './args.js';
import { parseSize } from '../testkit/sim/files.js';
import { measureDownloads } from '../testkit/scale/machine.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    sizes: { type: 'string', default: '16MiB,64MiB' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean' },
  },
});
const sizes = values.sizes.split(',').map(parseSize);
const m = await measureDownloads(sizes, Number(values.rounds), (s) => process.stderr.write(`[machine] ${s}\n`));
if (values.json) process.stdout.write(`${JSON.stringify(m, null, 2)}\n`);
else {
  const f = (l: { fixed: number; perGiB: number }, unit: string) =>
    `${l.fixed.toFixed(3)} ${unit} per download + ${l.perGiB.toFixed(2)} ${unit} per GiB`;
  process.stdout.write(
    `receiving daemon: ${f(m.receive, 'CPU s')}\nserving daemon(s): ${f(m.serve, 'CPU s')}\n` +
      `peerdist get: ${f(m.get, 'CPU s')}\naround the transfer: ${f(m.around, 's')}\ncores: ${m.cores}\n`,
  );
}
