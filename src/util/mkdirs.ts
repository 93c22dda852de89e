/**
 * `mkdir -p` that always settles. Node's own recursive mkdir (`mkdir(p, { recursive: true })`,
 * Node 20) loops forever at 100% CPU when a parent exists but creating the child answers ENOENT,
 * as under /proc (`/proc/peerdist`): `peerdist doctor --state-dir /proc/x` never ended (issue
 * 27.10). This walks up to the first existing ancestor and creates each missing component with
 * a plain mkdir, so every failure comes back as an error.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

export async function makeDirs(path: string, mode?: number): Promise<void> {
  const missing: string[] = [];
  for (let p = resolve(path); ; ) {
    const st = await stat(p).catch((e: NodeJS.ErrnoException) => e);
    if (!(st instanceof Error)) {
      if (!st.isDirectory())
        throw Object.assign(new Error(`ENOTDIR: ${p} exists and is not a directory`), { code: 'ENOTDIR', path: p });
      break;
    }
    if (st.code !== 'ENOENT') throw st;
    missing.push(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  for (const d of missing.reverse()) {
    try {
      await mkdir(d, mode === undefined ? undefined : { mode });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // Made meanwhile by someone else: fine if it is a directory.
      if (!(await stat(d)).isDirectory())
        throw Object.assign(new Error(`ENOTDIR: ${d} exists and is not a directory`), { code: 'ENOTDIR', path: d });
    }
  }
}
