/**
 * Preload for `bench/loopback.js --profile DIR` (NODE_OPTIONS refuses --cpu-prof): a process whose
 * argv names the `daemon` command runs under the V8 CPU profiler from start to exit and writes
 * DIR/daemon-<pid>.cpuprofile when it exits (the same format `node --cpu-prof` writes). The
 * main-thread inspector session answers synchronously, so the profile is taken in the exit handler.
 *   NODE_OPTIONS="--import=file:///.../dist/bench/cpu-profile-preload.js" PEERDIST_PROFILE_DIR=DIR
 * PEERDIST_PROFILE_MATCH=REGEX profiles only the daemons whose argv (joined by spaces) matches, e.g.
 * `c(1|9|17)-state` for three daemons of a simulated crowd (bench/sim.js --profile).
 */
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.PEERDIST_PROFILE_DIR;
const match = process.env.PEERDIST_PROFILE_MATCH;
if (dir && process.argv.includes('daemon') && (!match || new RegExp(match).test(process.argv.join(' ')))) {
  const s = new Session();
  s.connect();
  s.post('Profiler.enable');
  s.post('Profiler.setSamplingInterval', { interval: 1000 });
  s.post('Profiler.start');
  process.on('exit', () => {
    s.post('Profiler.stop', (err, r) => {
      if (!err) writeFileSync(join(dir, `daemon-${process.pid}.cpuprofile`), JSON.stringify(r.profile));
    });
  });
}
