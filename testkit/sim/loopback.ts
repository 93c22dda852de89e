/**
 * Loopback network: every host is an address in 127.0.0.0/8 of this machine and programs run as
 * ordinary child processes, so no root is needed. No link shaping; latency can still be added by
 * the delay proxy. Used by the demo, the loopback benchmark and the unprivileged scenario tests.
 */
import { spawnTracked, runCommand, type RunResult, type TrackedChild } from './proc.js';
import type { SimHost, SimNetwork } from './network.js';

export class LoopbackNetwork implements SimNetwork {
  readonly kind = 'loopback' as const;
  readonly origin: SimHost;
  private next: number;

  /** `base` is the last octet of the first client address (127.0.0.<base>); the origin is 127.0.0.1. */
  constructor(opts: { base?: number } = {}) {
    this.next = opts.base ?? 11;
    this.origin = { name: 'origin', address: '127.0.0.1', localAddress: '127.0.0.1', discoveryInterface: '127.0.0.1' };
  }

  async addHost(name: string): Promise<SimHost> {
    if (this.next > 254) throw new Error('loopback network: out of addresses');
    const address = `127.0.0.${this.next++}`;
    return { name, address, localAddress: address, discoveryInterface: '127.0.0.1' };
  }

  spawn(_host: SimHost, cmd: string, args: string[], env?: NodeJS.ProcessEnv): TrackedChild {
    return spawnTracked(cmd, args, { env: env ?? process.env });
  }

  run(
    _host: SimHost,
    cmd: string,
    args: string[],
    opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
  ): Promise<RunResult> {
    return runCommand(cmd, args, opts);
  }

  async shapeOrigin(): Promise<boolean> {
    return false;
  }
  async shapeHost(): Promise<boolean> {
    return false;
  }
  async destroy(): Promise<void> {
    /* nothing beyond the processes, which the cluster stops */
  }
}
