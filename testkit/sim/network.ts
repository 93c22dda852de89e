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
}

export interface SimNetwork {
  readonly kind: 'netns' | 'loopback';
  readonly origin: SimHost;
  /** Adds a client host (octet/index chosen by the network). */
  addHost(name: string): Promise<SimHost>;
  spawn(host: SimHost, cmd: string, args: string[], env?: NodeJS.ProcessEnv): TrackedChild;
  run(host: SimHost, cmd: string, args: string[], opts?: { timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<RunResult>;
  /** Shapes what the origin sends (the WAN downlink). No-op on loopback (returns false). */
  shapeOrigin(s: Shaping): Promise<boolean>;
  /** Shapes what a client sends onto the LAN. No-op on loopback (returns false). */
  shapeHost(host: SimHost, s: Shaping): Promise<boolean>;
  destroy(): Promise<void>;
}

/** Namespace network: origin at <subnet>.1, clients from <subnet>.11 up. */
export class NetnsNetwork implements SimNetwork {
  readonly kind = 'netns' as const;
  private next = 11;
  private readonly ns = new Map<string, NsHost>();

  private constructor(readonly lab: NetnsLab, readonly origin: SimHost) {}

  static async create(opts: { subnet?: string; ipv6?: boolean } = {}): Promise<NetnsNetwork> {
    const lab = await NetnsLab.create(opts);
    try {
      const o = await lab.addHost('origin', 1);
      const net = new NetnsNetwork(lab, NetnsNetwork.wrap(o));
      net.ns.set('origin', o);
      return net;
    } catch (err) {
      lab.destroySync();
      throw err;
    }
  }

  private static wrap(h: NsHost): SimHost {
    return { name: h.name, address: h.address, localAddress: '127.0.0.1', discoveryInterface: h.address, iface: h.iface, address6: h.address6 };
  }

  async addHost(name: string): Promise<SimHost> {
    const h = await this.lab.addHost(name, this.next++);
    this.ns.set(name, h);
    return NetnsNetwork.wrap(h);
  }

  nsHost(host: SimHost): NsHost {
    const h = this.ns.get(host.name);
    if (!h) throw new Error(`unknown host ${host.name}`);
    return h;
  }

  spawn(host: SimHost, cmd: string, args: string[], env?: NodeJS.ProcessEnv): TrackedChild {
    return this.lab.spawn(this.nsHost(host), cmd, args, env);
  }

  run(host: SimHost, cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
    return this.lab.run(this.nsHost(host), cmd, args, opts);
  }

  async shapeOrigin(s: Shaping): Promise<boolean> { await this.lab.shape(this.nsHost(this.origin), s); return true; }
  /** Lets multicast through the switch to every host, or drops it (see NetnsLab.multicastFlood). */
  async multicast(on: boolean): Promise<void> { for (const h of this.ns.values()) await this.lab.multicastFlood(h, on); }
  async shapeHost(host: SimHost, s: Shaping): Promise<boolean> { await this.lab.shape(this.nsHost(host), s); return true; }
  async destroy(): Promise<void> { await this.lab.destroy(); }
}
