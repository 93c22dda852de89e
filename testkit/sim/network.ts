/**
 * A simulated network of hosts that can run programs: the namespace lab (one namespace per host,
 * shaped WAN link to the origin) or loopback (every host is a 127.0.0.x address of this machine).
 * The cluster (harness.ts) drives either through this interface.
 */
import type { RunResult, TrackedChild } from './proc.js';
import { NetnsLab, type NsHost, type Shaping } from './netns.js';

export interface SimHost {
  name: string;
  /** Address other hosts reach this one at. */
  address: string;
  /** Address the host's own tools bind admin/loopback-only services to. */
  localAddress: string;
  /** Value for `peerdist daemon --interface`: the local IPv4 address discovery multicasts on. */
  discoveryInterface: string;
  /** Interface name of the host's LAN link, and its IPv6 ULA (namespace labs created with ipv6). */
  iface?: string;
  address6?: string;
  /** Branch networks: the subnet (1..N) the host is on; 0 = the origin's WAN side. */
  subnet?: number;
}

export interface SimNetwork {
  readonly kind: 'netns' | 'loopback';
  readonly origin: SimHost;
  /** Adds a client host (octet/index chosen by the network; on a branch network, `subnet` or round robin). */
  addHost(name: string, opts?: { subnet?: number }): Promise<SimHost>;
  spawn(host: SimHost, cmd: string, args: string[], env?: NodeJS.ProcessEnv): TrackedChild;
  run(
    host: SimHost,
    cmd: string,
    args: string[],
    opts?: { timeoutMs?: number; env?: NodeJS.ProcessEnv },
  ): Promise<RunResult>;
  /** Shapes what the origin sends (the WAN downlink). No-op on loopback (returns false). */
  shapeOrigin(s: Shaping): Promise<boolean>;
  /** Shapes what a client sends onto the LAN. No-op on loopback (returns false). */
  shapeHost(host: SimHost, s: Shaping): Promise<boolean>;
  destroy(): Promise<void>;
}

/** Subnet (first three octets) of branch subnet k (1..N). */
export const branchSubnet = (k: number) => `10.214.${k}`;

/**
 * Namespace network: origin at <subnet>.1, clients from <subnet>.11 up, all on one bridge. With
 * `subnets: N` (a branch): N client subnets (bridges br1..brN, 10.214.k.0/24) and the origin's own
 * (br0) joined by a router namespace that forwards unicast but not multicast; clients are spread
 * over the subnets round robin (or placed with addHost's `subnet`).
 */
export class NetnsNetwork implements SimNetwork {
  readonly kind = 'netns' as const;
  private next = 11;
  private readonly nextIn = new Map<number, number>();
  private roundRobin = 0;
  private readonly ns = new Map<string, NsHost>();

  private constructor(
    readonly lab: NetnsLab,
    readonly origin: SimHost,
    readonly subnets: number,
  ) {}

  static async create(opts: { subnet?: string; ipv6?: boolean; subnets?: number } = {}): Promise<NetnsNetwork> {
    const lab = await NetnsLab.create(opts);
    const subnets = opts.subnets ?? 0;
    try {
      if (subnets > 0) {
        if (!Number.isInteger(subnets) || subnets > 8) throw new Error(`subnets must be 1..8, got ${subnets}`);
        for (let k = 1; k <= subnets; k++) await lab.addBridge(`br${k}`);
        await lab.addRouter([
          { bridge: 'br0', subnet: lab.subnet },
          ...Array.from({ length: subnets }, (_, i) => ({ bridge: `br${i + 1}`, subnet: branchSubnet(i + 1) })),
        ]);
      }
      const o = await lab.addHost('origin', 1, subnets > 0 ? { gateway: `${lab.subnet}.254` } : {});
      const net = new NetnsNetwork(lab, { ...NetnsNetwork.wrap(o), ...(subnets > 0 ? { subnet: 0 } : {}) }, subnets);
      net.ns.set('origin', o);
      return net;
    } catch (err) {
      lab.destroySync();
      throw err;
    }
  }

  private static wrap(h: NsHost, subnet?: number): SimHost {
    return {
      name: h.name,
      address: h.address,
      localAddress: '127.0.0.1',
      discoveryInterface: h.address,
      iface: h.iface,
      address6: h.address6,
      ...(subnet !== undefined ? { subnet } : {}),
    };
  }

  async addHost(name: string, opts: { subnet?: number } = {}): Promise<SimHost> {
    if (this.subnets === 0) {
      const h = await this.lab.addHost(name, this.next++);
      this.ns.set(name, h);
      return NetnsNetwork.wrap(h);
    }
    const k = opts.subnet ?? (this.roundRobin++ % this.subnets) + 1;
    if (!Number.isInteger(k) || k < 1 || k > this.subnets) throw new Error(`no subnet ${k}`);
    const octet = this.nextIn.get(k) ?? 11;
    this.nextIn.set(k, octet + 1);
    const h = await this.lab.addHost(name, octet, {
      bridge: `br${k}`,
      subnet: branchSubnet(k),
      gateway: `${branchSubnet(k)}.254`,
    });
    this.ns.set(name, h);
    return NetnsNetwork.wrap(h, k);
  }

  nsHost(host: SimHost): NsHost {
    const h = this.ns.get(host.name);
    if (!h) throw new Error(`unknown host ${host.name}`);
    return h;
  }

  spawn(host: SimHost, cmd: string, args: string[], env?: NodeJS.ProcessEnv): TrackedChild {
    return this.lab.spawn(this.nsHost(host), cmd, args, env);
  }

  run(
    host: SimHost,
    cmd: string,
    args: string[],
    opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
  ): Promise<RunResult> {
    return this.lab.run(this.nsHost(host), cmd, args, opts);
  }

  async shapeOrigin(s: Shaping): Promise<boolean> {
    await this.lab.shape(this.nsHost(this.origin), s);
    return true;
  }
  /** Lets multicast through the switch to every host, or drops it (see NetnsLab.multicastFlood). */
  async multicast(on: boolean): Promise<void> {
    for (const h of this.ns.values()) await this.lab.multicastFlood(h, on);
  }
  async shapeHost(host: SimHost, s: Shaping): Promise<boolean> {
    await this.lab.shape(this.nsHost(host), s);
    return true;
  }
  async destroy(): Promise<void> {
    await this.lab.destroy();
  }
}
