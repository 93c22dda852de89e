/**
 * Linux network-namespace lab: a "switch" namespace holding a bridge, and hosts (one namespace each)
 * attached to it by a veth pair. Every interface lives inside the lab's own namespaces (created
 * with `ip -n`), so nothing touches the host's real interfaces, and the lab's private /24 is
 * reachable only from inside it. Names carry the prefix `pdsim-<pid>-<n>-` so parallel or aborted
 * runs never collide; `sweepStaleNamespaces` removes leftovers of dead runs.
 *
 * Links are shaped with `tc qdisc ... tbf` (rate, burst, latency) on a host's egress; latency
 * beyond queueing is added by the TCP delay proxy (delayproxy.ts), as netem may be unavailable.
 */
import { execFileSync } from 'node:child_process';
import { SimError, mustRun, onProcessExit, runCommand, spawnTracked, type TrackedChild } from './proc.js';

export const NS_PREFIX = 'pdsim-';
const IFACE = 'eth0';

export interface Shaping {
  /** Egress rate in bits per second. */
  rateBps: number;
  /** Bucket size in bytes (default: 10 ms worth of rate, at least 32 KiB). */
  burstBytes?: number;
  /** Maximum queueing delay before drops, ms (default 100). */
  latencyMs?: number;
}

/** Whether this process can build a lab: root, `ip` and `tc` present, and namespaces creatable. */
export async function netnsSupport(): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: 'network namespaces need Linux' };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0)
    return { ok: false, reason: 'network namespaces need root' };
  for (const tool of ['ip', 'tc']) {
    const r = await runCommand(tool, ['-V'], { timeoutMs: 5000 });
    if (r.code !== 0) return { ok: false, reason: `\`${tool}\` (iproute2) is not available` };
  }
  const probe = `${NS_PREFIX}${process.pid}-probe`;
  const add = await runCommand('ip', ['netns', 'add', probe], { timeoutMs: 5000 });
  if (add.code !== 0) return { ok: false, reason: `cannot create a network namespace: ${add.stderr.trim()}` };
  const link = await runCommand('ip', ['-n', probe, 'link', 'add', 'br0', 'type', 'bridge'], { timeoutMs: 5000 });
  await runCommand('ip', ['netns', 'del', probe], { timeoutMs: 5000 });
  if (link.code !== 0) return { ok: false, reason: `cannot create a bridge: ${link.stderr.trim()}` };
  return { ok: true };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killNamespacePidsSync(ns: string): void {
  try {
    const out = execFileSync('ip', ['netns', 'pids', ns], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5000,
    });
    for (const p of out.split(/\s+/).filter(Boolean)) {
      const pid = Number(p);
      if (Number.isInteger(pid) && pid > 1 && pid !== process.pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  } catch {
    /* namespace already gone */
  }
}

function deleteNamespaceSync(ns: string): void {
  killNamespacePidsSync(ns);
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
  } catch {
    /* gone */
  }
}

/** Lists namespaces whose name starts with `prefix`. */
export function listNamespaces(prefix = NS_PREFIX): string[] {
  let out = '';
  try {
    out = execFileSync('ip', ['netns', 'list'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5000,
    });
  } catch {
    return [];
  }
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.startsWith(prefix));
}

/** Deletes pdsim-<pid>-* namespaces (and kills their processes) left by runs whose process is gone. */
export function sweepStaleNamespaces(): string[] {
  const removed: string[] = [];
  for (const ns of listNamespaces()) {
    const m = /^pdsim-(\d+)-/.exec(ns);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || pidAlive(pid)) continue;
    deleteNamespaceSync(ns);
    removed.push(ns);
  }
  return removed;
}

let labCounter = 0;

export interface NsHost {
  /** Short name inside the lab ("origin", "c1" ...). */
  name: string;
  /** Namespace name. */
  ns: string;
  /** The host's address on the lab's /24. */
  address: string;
  /** Interface name inside the host namespace. */
  iface: string;
  /** The host's IPv6 ULA on the lab link (labs created with ipv6: true); it also has a link-local address. */
  address6?: string;
}

export class NetnsLab {
  readonly prefix: string;
  readonly switchNs: string;
  readonly hosts = new Map<string, NsHost>();
  private readonly namespaces: string[] = [];
  private destroyed = false;
  private readonly unhook: () => void;

  private constructor(
    readonly subnet: string,
    readonly ipv6 = false,
  ) {
    this.prefix = `${NS_PREFIX}${process.pid}-${++labCounter}-`;
    this.switchNs = `${this.prefix}sw`;
    this.unhook = onProcessExit(() => this.destroySync());
  }

  /**
   * Creates the switch namespace with its bridge. `subnet` is the first three octets ("10.213.0").
   * `ipv6`: hosts also get a ULA `fd70:7064:1::<octet>/64` and usable link-local addresses at once
   * (duplicate address detection off inside the lab's namespaces).
   */
  static async create(opts: { subnet?: string; ipv6?: boolean } = {}): Promise<NetnsLab> {
    sweepStaleNamespaces();
    const lab = new NetnsLab(opts.subnet ?? '10.213.0', opts.ipv6 ?? false);
    try {
      await lab.addNamespace(lab.switchNs);
      await lab.ip(lab.switchNs, ['link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
      await lab.ip(lab.switchNs, ['link', 'set', 'br0', 'up']);
      await lab.ip(lab.switchNs, ['link', 'set', 'lo', 'up']);
    } catch (err) {
      lab.destroySync();
      throw err;
    }
    return lab;
  }

  private async addNamespace(ns: string): Promise<void> {
    this.namespaces.push(ns);
    await mustRun('ip', ['netns', 'add', ns], { timeoutMs: 10_000 });
  }

  /** Runs `ip -n NS ...args`, throwing SimError on failure. */
  async ip(ns: string, args: string[]): Promise<string> {
    return mustRun('ip', ['-n', ns, ...args], { timeoutMs: 10_000 });
  }

  /**
   * Adds a host namespace with address `<subnet>.<octet>`, attached to a bridge (default br0 and
   * the lab's subnet); multicast routed via its link; `gateway` adds a default route (a router).
   */
  async addHost(
    name: string,
    octet: number,
    opts: { bridge?: string; subnet?: string; gateway?: string } = {},
  ): Promise<NsHost> {
    if (this.destroyed) throw new SimError('SIM_LAB', 'lab destroyed');
    if (!/^[a-z][a-z0-9]{0,9}$/.test(name)) throw new SimError('SIM_LAB', `bad host name ${name}`);
    if (!Number.isInteger(octet) || octet < 1 || octet > 253) throw new SimError('SIM_LAB', `bad host octet ${octet}`);
    const ns = this.prefix + name;
    const port = `p-${name}`;
    const address = `${opts.subnet ?? this.subnet}.${octet}`;
    await this.addNamespace(ns);
    if (this.ipv6) {
      // Before the veth appears in the namespace, so its addresses are usable at once (no DAD wait).
      await mustRun(
        'ip',
        ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0'],
        { timeoutMs: 10_000 },
      );
    }
    await this.ip(this.switchNs, ['link', 'add', port, 'type', 'veth', 'peer', 'name', IFACE, 'netns', ns]);
    await this.ip(this.switchNs, ['link', 'set', port, 'master', opts.bridge ?? 'br0']);
    await this.ip(this.switchNs, ['link', 'set', port, 'up']);
    await this.ip(ns, ['link', 'set', 'lo', 'up']);
    await this.ip(ns, ['addr', 'add', `${address}/24`, 'dev', IFACE]);
    await this.ip(ns, ['link', 'set', IFACE, 'up']);
    await this.ip(ns, ['route', 'add', '224.0.0.0/4', 'dev', IFACE]);
    if (opts.gateway) await this.ip(ns, ['route', 'add', 'default', 'via', opts.gateway]);
    let address6: string | undefined;
    if (this.ipv6) {
      address6 = `fd70:7064:1::${octet}`;
      await this.ip(ns, ['-6', 'addr', 'add', `${address6}/64`, 'dev', IFACE, 'nodad']);
    }
    const host: NsHost = { name, ns, address, iface: IFACE, address6 };
    this.hosts.set(name, host);
    return host;
  }

  /** Adds another L2 segment: bridge `name` in the switch namespace (bridges are not joined to each other). */
  async addBridge(name: string): Promise<void> {
    if (!/^br[0-9]{1,2}$/.test(name)) throw new SimError('SIM_LAB', `bad bridge name ${name}`);
    await this.ip(this.switchNs, ['link', 'add', name, 'type', 'bridge', 'mcast_snooping', '0']);
    await this.ip(this.switchNs, ['link', 'set', name, 'up']);
  }

  /**
   * A router namespace with one leg on each bridge at `<subnet>.254/24`. It forwards unicast IPv4
   * between the subnets and runs no multicast routing, so WS-Discovery stays on its own subnet
   * (a branch with VLANs).
   */
  async addRouter(legs: Array<{ bridge: string; subnet: string }>): Promise<string> {
    const ns = `${this.prefix}rt`;
    await this.addNamespace(ns);
    await this.ip(ns, ['link', 'set', 'lo', 'up']);
    for (const [k, leg] of legs.entries()) {
      const port = `r-${leg.bridge}`;
      const inner = `eth${k}`;
      await this.ip(this.switchNs, ['link', 'add', port, 'type', 'veth', 'peer', 'name', inner, 'netns', ns]);
      await this.ip(this.switchNs, ['link', 'set', port, 'master', leg.bridge]);
      await this.ip(this.switchNs, ['link', 'set', port, 'up']);
      await this.ip(ns, ['addr', 'add', `${leg.subnet}.254/24`, 'dev', inner]);
      await this.ip(ns, ['link', 'set', inner, 'up']);
    }
    await mustRun('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], { timeoutMs: 10_000 });
    return ns;
  }

  /** Shapes a host's egress (what it sends onto the LAN) with a token bucket filter. */
  async shape(host: NsHost, s: Shaping): Promise<void> {
    const rate = Math.max(8000, Math.round(s.rateBps));
    const burst = Math.max(32 * 1024, Math.round(s.burstBytes ?? rate / 8 / 100));
    const latency = Math.max(1, Math.round(s.latencyMs ?? 100));
    await mustRun(
      'ip',
      [
        'netns',
        'exec',
        host.ns,
        'tc',
        'qdisc',
        'replace',
        'dev',
        host.iface,
        'root',
        'tbf',
        'rate',
        `${rate}bit`,
        'burst',
        `${burst}`,
        'latency',
        `${latency}ms`,
      ],
      { timeoutMs: 10_000 },
    );
  }

  /**
   * Whether the switch passes multicast to a host's port (bridge `mcast_flood`; the bridge does
   * no IGMP snooping, so multicast is flooded to every port that allows it). Turned off on every
   * port, the LAN drops multicast like a switch with IGMP snooping and no querier: WS-Discovery
   * (UDP 3702) no longer gets from one host to another, while unicast still does.
   */
  async multicastFlood(host: NsHost, on: boolean): Promise<void> {
    await this.ip(this.switchNs, [
      'link',
      'set',
      `p-${host.name}`,
      'type',
      'bridge_slave',
      'mcast_flood',
      on ? 'on' : 'off',
    ]);
  }

  /** Current qdisc description of a host's link (for reports and tests). */
  async qdisc(host: NsHost): Promise<string> {
    return mustRun('ip', ['netns', 'exec', host.ns, 'tc', 'qdisc', 'show', 'dev', host.iface], { timeoutMs: 10_000 });
  }

  /** Spawns `cmd args` inside the host's namespace (tracked: killed when the run ends). */
  spawn(host: NsHost, cmd: string, args: string[], env?: NodeJS.ProcessEnv): TrackedChild {
    return spawnTracked('ip', ['netns', 'exec', host.ns, cmd, ...args], { env: env ?? process.env });
  }

  /** Runs a command to completion inside the host's namespace. */
  run(host: NsHost, cmd: string, args: string[], opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}) {
    return runCommand('ip', ['netns', 'exec', host.ns, cmd, ...args], opts);
  }

  /** Kills every process in the lab's namespaces and deletes them (the veths and bridge go with them). */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.unhook();
    for (const ns of [...this.namespaces].reverse()) deleteNamespaceSync(ns);
  }

  async destroy(): Promise<void> {
    this.destroySync();
  }
}
