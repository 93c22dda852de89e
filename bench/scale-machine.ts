/**
 * What one peer download costs on this machine and build, as the scale model's machine needs it
 * (testkit/scale/machine.ts; issue 24 item 3): fresh daemons on loopback download the file from
 * the ones that hold it, one after another; the receiving, serving and `peerdist get` CPU and the
 * time around each transfer are fitted as a fixed part per download plus a part per GiB.
 * With `--flash K` it then has K fresh daemons download each size at once from a seed and each
 * other (testkit/scale/flash.ts) and prices every daemon's counts (bytes received and served,
 * datagrams) at those fitted costs and the validation's discovery figures: the rest is what a
 * flash-crowd daemon spends that the model does not charge. `--commit` measures what the cache spends
 * on a block that arrives alone (a whole group commit: testkit/scale/commit.ts) and skips the rest;
 * `--trickle 6M` what a whole download spends more per 64 KiB when every daemon's upload is capped
 * at that rate, so its blocks come one at a time (testkit/scale/flash.ts measureTrickle; the last
 * of --sizes, --rounds alternations).
 *   npm run build && node dist/bench/scale-machine.js [--sizes 16MiB,64MiB] [--rounds 3] [--flash 7] [--json]
 */
import { benchArgs } from './args.js';
import { parseSize } from '../testkit/sim/files.js';
import { measureDownloads } from '../testkit/scale/machine.js';
import { charge, type FlashMeasurement, measureFlash, measureTrickle } from '../testkit/scale/flash.js';
import { measureCommit } from '../testkit/scale/commit.js';
import { NAMESPACE_DISCOVERY } from '../testkit/scale/validate.js';

const { values } = benchArgs(import.meta.url, {
  options: {
    sizes: { type: 'string', default: '16MiB,64MiB' },
    rounds: { type: 'string', default: '3' },
    flash: { type: 'string', default: '0' },
    commit: { type: 'boolean' },
    'block-size': { type: 'string', default: '65536' },
    trickle: { type: 'string' },
    json: { type: 'boolean' },
  },
});
const sizes = values.sizes.split(',').map(parseSize);
const log = (s: string) => process.stderr.write(`[machine] ${s}\n`);
if (values.commit) {
  const r = await measureCommit(512, Number(values['block-size']), 16, 3, log);
  process.stdout.write(
    values.json
      ? `${JSON.stringify(r, null, 2)}\n`
      : `a block stored alone costs ${r.commitCpuMs.toFixed(3)} CPU ms more than one of 16 in flight; a commit takes ${r.commitWallMs.toFixed(2)} ms\n`,
  );
  process.exit(0);
}
if (values.trickle) {
  const size = sizes[sizes.length - 1]!;
  const r = await measureTrickle(size, parseSize(values.trickle), Number(values.rounds), log);
  process.stdout.write(
    values.json
      ? `${JSON.stringify(r, null, 2)}\n`
      : `${size} bytes, uploads capped at ${values.trickle}/s (get ${r.cappedSeconds.toFixed(2)} s) against uncapped (${r.streamSeconds.toFixed(2)} s): ` +
          `receiving ${r.receiveMsPerUnit.toFixed(3)} CPU ms, serving ${r.serveMsPerUnit.toFixed(3)} CPU ms more per 64 KiB\n`,
  );
  process.exit(0);
}
const m = await measureDownloads(sizes, Number(values.rounds), log);
const flash: FlashMeasurement[] = [];
for (const size of Number(values.flash) > 0 ? sizes : [])
  flash.push(await measureFlash(size, Number(values.flash), log));
if (values.json) process.stdout.write(`${JSON.stringify({ ...m, flash }, null, 2)}\n`);
else {
  const f = (l: { fixed: number; perGiB: number }, unit: string) =>
    `${l.fixed.toFixed(3)} ${unit} per download + ${l.perGiB.toFixed(2)} ${unit} per GiB`;
  process.stdout.write(
    `receiving daemon: ${f(m.receive, 'CPU s')}\nserving daemon(s): ${f(m.serve, 'CPU s')}\n` +
      `peerdist get: ${f(m.get, 'CPU s')}\naround the transfer: ${f(m.around, 's')}\ncores: ${m.cores}\n`,
  );
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  for (const fm of flash) {
    process.stdout.write(
      `\nflash, ${mib(fm.size)} MiB, seed + ${fm.crowd}: per daemon CPU s (charged: receive + serve + discovery = sum; rest)\n`,
    );
    let cpu = 0;
    let charged = 0;
    for (const d of fm.daemons) {
      const ch = charge(d, m, NAMESPACE_DISCOVERY);
      const sum = ch.receive + ch.serve + ch.discovery;
      cpu += d.cpu;
      charged += sum;
      process.stdout.write(
        `  ${d.downloading ? 'client' : 'seed  '} ${d.client}: ${d.cpu.toFixed(2)} (${ch.receive.toFixed(2)} + ${ch.serve.toFixed(2)} + ${ch.discovery.toFixed(2)} = ${sum.toFixed(2)}; ${(d.cpu - sum).toFixed(2)}); ` +
          `received ${mib(d.fromPeers)} MiB peers + ${mib(d.fromOrigin)} origin in ${d.seconds.toFixed(2)} s, served ${mib(d.served)} MiB in ${d.blocksServed} blocks / ${d.serverRequests} requests; ` +
          `probes ${d.probesSent} sent ${d.probesReceived} in, matches in ${d.matchesReceived}, follow-ups ${d.followUpsSent}\n`,
      );
    }
    process.stdout.write(
      `  all: ${cpu.toFixed(2)} CPU s, charged ${charged.toFixed(2)}, rest ${(cpu - charged).toFixed(2)}\n`,
    );
  }
}
