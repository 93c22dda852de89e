/**
 * The daemon's admin API (src/daemon/admin.ts) on a loopback TCP port, serving only `jobs`: the
 * status, metrics and cache endpoints answer empty. For tests of `get` and /v1/fetch.
 */
import { startAdminServer } from '../../src/daemon/admin.js';
import type { JobBook } from '../../src/daemon/jobs.js';

export function startJobsAdmin(jobs: JobBook): ReturnType<typeof startAdminServer> {
  return startAdminServer(
    { kind: 'tcp', host: '127.0.0.1', port: 0 },
    {
      jobs,
      status: () => ({}),
      metrics: () => '',
      cache: { stats: () => ({}), list: () => [], verifyAll: async () => ({}) },
    },
  );
}
