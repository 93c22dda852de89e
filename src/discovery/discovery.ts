/**
 * Discovery: the socket edge around the Responder and Prober state machines (MS-PCCRD over
 * SOAP-over-UDP, IPv4 multicast 239.255.255.250, optionally IPv6 ff02::c). One responder socket
 * bound to 0.0.0.0:<port> with reuseAddr joins the group on each chosen interface and answers by
 * unicast; one ephemeral probe socket per interface multicasts probes (TTL 1) and receives the
 * unicast ProbeMatches.
 */
import { EventEmitter } from 'node:events';
import { createSocket, type Socket } from 'node:dgram';
import { randomUUID } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { nullLogger, type Logger } from '../util/log.js';
import type { DiscoveryVersion } from '../protocol/pccrd/codec.js';
import { DampingTable } from './damping.js';
import { Prober, type ProberTiming, type SegmentWatch, type PeerSighting } from './prober.js';
import { Responder, type SegmentLookup } from './probe-responder.js';
import { newStats, realTimers, countDrop, type DiscoveryStats, type Runtime } from './runtime.js';
import {
  defaultIPv4Interfaces,
  ipv6InterfaceNames,
  localAddressFilter,
  refreshingLocalFilter,
  type Subnet,
} from './subnet.js';

export type { PeerSighting, SegmentWatch, DiscoveryStats };

export const DISCOVERY_PORT = 3702;
export const IPV4_GROUP = '239.255.255.250';
export const IPV6_GROUP = 'ff02::c';
/** How long, and how many, other hosts' probes are kept for onForeignProbe's replay. */
const RECENT_PROBES_MS = 3000;
const RECENT_PROBES_MAX = 128;

export interface DiscoveryOptions {
  /** UDP port of the responder and of the probes' destination (default 3702). */
  port?: number;
  multicastGroup?: string;
  /** Local IPv4 addresses to join on and send from; default: all non-internal IPv4 (127.0.0.1 if none). */
  interfaces?: string[];
  /** Deliver our multicast to sockets on this host too (tests, several daemons on one host). */
  loopback?: boolean;
  /**
   * Also discover over IPv6 (ff02::c, link-local scope): true = every interface with a non-internal
   * IPv6 address, or a list of interface names. Off by default. Failures to join are logged, not fatal.
   */
  ipv6?: boolean | string[];
  /** Our retrieval `host:port` list, announced in XAddrs. */
  xaddrs: () => string[];
  /** What we hold: per segment ID, blocks we can serve (partial while downloading) and whether complete. */
  lookup: SegmentLookup;
  /** Subnets counted as local (default: from os.networkInterfaces(), re-read every 30 s); loopback is always local. */
  localSubnets?: Subnet[];
  logger?: Logger;
  random?: () => number;
  now?: () => number;
  /** Prober timing overrides (tests). */
  timing?: Partial<ProberTiming>;
  /** Responder rate limits (probes/s and burst) per source and overall. */
  perSourceRate?: { rate: number; burst: number };
  globalRate?: { rate: number; burst: number };
}

export class Discovery extends EventEmitter {
  private readonly opts: DiscoveryOptions;
  private readonly log: Logger;
  private readonly rt: Runtime;
  private readonly damping = new DampingTable();
  private readonly prober: Prober;
  private readonly responder: Responder;
  private responderSocket?: Socket;
  private responderSocket6?: Socket;
  /** Probe sockets with the group each one sends to. */
  private probeSockets: Array<{ socket: Socket; group: string }> = [];
  private started = false;
  private closed = false;
  /** Other hosts' probes of the last moments (onForeignProbe replays them to a new listener). */
  private readonly recentProbes: Array<{ at: number; ids: Buffer[]; from: string }> = [];
  /** Our endpoint reference (urn:uuid), new for every run like Windows does. */
  readonly endpoint = `urn:uuid:${randomUUID()}`;

  constructor(opts: DiscoveryOptions) {
    super();
    this.opts = opts;
    this.log = (opts.logger ?? nullLogger).child({ mod: 'discovery' });
    const now = opts.now ?? Date.now;
    this.rt = {
      now,
      random: opts.random ?? Math.random,
      timers: realTimers,
      newMessageId: () => `urn:uuid:${randomUUID()}`,
      logger: this.log,
      stats: newStats(),
    };
    const isLocal = opts.localSubnets ? localAddressFilter(opts.localSubnets) : refreshingLocalFilter(now);
    let messageNumber = 0;
    this.prober = new Prober(
      {
        send: (d) => this.multicast(d),
        isLocal,
        ownEndpoint: this.endpoint,
        damping: this.damping,
        timing: opts.timing,
      },
      this.rt,
    );
    this.responder = new Responder(
      {
        lookup: opts.lookup,
        xaddrs: opts.xaddrs,
        endpoint: this.endpoint,
        instanceId: Math.floor(now() / 1000),
        nextMessageNumber: () => (messageNumber = (messageNumber % 0xffffffff) + 1),
        isLocal,
        isOwnProbe: (id) => this.prober.isOwnProbe(id),
        damping: this.damping,
        send: (d, to) => this.unicast(d, to.address, to.port),
        perSourceRate: opts.perSourceRate,
        globalRate: opts.globalRate,
        followUpTtlMs: () => this.prober.followUpTtlMs,
        onProbe: (ids, from) => {
          const at = now();
          this.recentProbes.push({ at, ids, from: from.address });
          while (this.recentProbes.length > RECENT_PROBES_MAX || this.recentProbes[0]!.at < at - RECENT_PROBES_MS)
            this.recentProbes.shift();
          if (this.listenerCount('foreign-probe') > 0) this.emit('foreign-probe', ids, from.address);
        },
      },
      this.rt,
    );
  }

  /**
   * Calls `fn` with the segment IDs and source address of every new probe another host sends
   * (another client wants those segments now: the download engine's flash-crowd signal), first
   * for those of the last RECENT_PROBES_MS (a client that started a moment before us probed before
   * our download existed). Returns the function that stops it.
   */
  onForeignProbe(fn: (segmentIds: Buffer[], from: string) => void): () => void {
    const since = (this.opts.now ?? Date.now)() - RECENT_PROBES_MS;
    for (const p of this.recentProbes) if (p.at >= since) fn(p.ids, p.from);
    this.on('foreign-probe', fn);
    return () => {
      this.off('foreign-probe', fn);
    };
  }

  get port(): number {
    return this.opts.port ?? DISCOVERY_PORT;
  }

  private get group(): string {
    return this.opts.multicastGroup ?? IPV4_GROUP;
  }

  async start(): Promise<void> {
    if (this.started) throw new Error('Discovery already started');
    this.started = true;
    let ifaces = this.opts.interfaces ?? defaultIPv4Interfaces();
    if (ifaces.length === 0) {
      this.log.warn('no non-internal IPv4 interface; discovery limited to this host', {});
      ifaces = ['127.0.0.1'];
    }
    try {
      const rs = createSocket({ type: 'udp4', reuseAddr: true });
      this.responderSocket = rs;
      rs.on('message', (msg, rinfo) => this.safely(() => this.responder.handle(msg, rinfo)));
      rs.on('error', (err) => this.socketError('responder', err));
      await bind(rs, this.port, '0.0.0.0');
      let joined = 0;
      for (const iface of ifaces) {
        try {
          rs.addMembership(this.group, iface);
          joined++;
        } catch (err) {
          this.log.warn('cannot join discovery group', { iface, err: err as Error });
        }
      }
      if (joined === 0) throw new Error(`could not join ${this.group} on any of ${ifaces.join(', ')}`);
      for (const iface of ifaces) {
        const ps = createSocket({ type: 'udp4' });
        this.probeSockets.push({ socket: ps, group: this.group });
        ps.on('message', (msg, rinfo) => this.safely(() => this.prober.handle(msg, rinfo)));
        ps.on('error', (err) => this.socketError('prober', err));
        await bind(ps, 0, iface);
        ps.setMulticastTTL(1);
        ps.setMulticastLoopback(!!this.opts.loopback);
        ps.setMulticastInterface(iface);
      }
      const names6 =
        this.opts.ipv6 === true ? ipv6InterfaceNames() : Array.isArray(this.opts.ipv6) ? this.opts.ipv6 : [];
      if (names6.length > 0) await this.startIPv6(names6);
      this.log.info('discovery started', { port: this.port, group: this.group, interfaces: ifaces, ipv6: names6 });
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /**
   * IPv6 edge: one responder socket on [::]:port joined to ff02::c per interface (`::%name`), and
   * one probe socket per interface. Link-local replies carry the scope in their source address.
   */
  private async startIPv6(names: string[]): Promise<void> {
    try {
      const rs = createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true });
      this.responderSocket6 = rs;
      rs.on('message', (msg, rinfo) => this.safely(() => this.responder.handle(msg, rinfo)));
      rs.on('error', (err) => this.socketError('responder6', err));
      await bind(rs, this.port, '::');
      for (const name of names) {
        try {
          rs.addMembership(IPV6_GROUP, `::%${name}`);
          const ps = createSocket({ type: 'udp6', ipv6Only: true });
          this.probeSockets.push({ socket: ps, group: IPV6_GROUP });
          ps.on('message', (msg, rinfo) => this.safely(() => this.prober.handle(msg, rinfo)));
          ps.on('error', (err) => this.socketError('prober6', err));
          await bind(ps, 0, '::');
          ps.setMulticastTTL(1);
          ps.setMulticastLoopback(!!this.opts.loopback);
          ps.setMulticastInterface(`::%${name}`);
        } catch (err) {
          this.log.warn('IPv6 discovery unavailable on interface', { iface: name, err: err as Error });
        }
      }
    } catch (err) {
      this.log.warn('IPv6 discovery unavailable', { err: err as Error });
    }
  }

  /** Probes for the segments now and keeps probing until the watch is closed. */
  watch(segmentIds: Buffer[], version: DiscoveryVersion): SegmentWatch {
    if (this.closed) throw new Error('Discovery is closed');
    return this.prober.watch(segmentIds, version);
  }

  /**
   * A segment entered our cache (ID as hex): probes that asked for it moments ago get a follow-up
   * ProbeMatch (protocol/pccrd.md, "Follow-up ProbeMatches").
   */
  announce(segmentIdHex: string): void {
    if (!this.closed) this.responder.announce(segmentIdHex);
  }

  /** Suggested wait for a first peer: drops toward 0 while probes find nobody, back to max on any reply. */
  get initialWaitMs(): number {
    return this.prober.initialWaitMs;
  }

  stats(): DiscoveryStats & { peersKnown: number; watches: number } {
    const s = this.rt.stats;
    return { ...s, dropped: { ...s.dropped }, peersKnown: this.prober.peersKnown, watches: this.prober.openWatches };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.prober.close();
    this.responder.close();
    const sockets = [this.responderSocket, this.responderSocket6, ...this.probeSockets.map((p) => p.socket)].filter(
      (s): s is Socket => !!s,
    );
    this.responderSocket = undefined;
    this.responderSocket6 = undefined;
    this.probeSockets = [];
    await Promise.all(
      sockets.map(
        (s) =>
          new Promise<void>((resolve) => {
            try {
              s.close(() => resolve());
            } catch {
              resolve(); // never bound or already closed
            }
          }),
      ),
    );
  }

  private multicast(datagram: Buffer): void {
    for (const { socket, group } of this.probeSockets) {
      socket.send(datagram, this.port, group, (err) => {
        if (err) this.socketError('send', err);
      });
    }
  }

  private unicast(datagram: Buffer, address: string, port: number): void {
    const socket = isIPv6(address) || address.includes('%') ? this.responderSocket6 : this.responderSocket;
    socket?.send(datagram, port, address, (err) => {
      if (err) this.socketError('reply', err);
    });
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      countDrop(this.rt.stats, 'internalError');
      this.log.error('discovery handler failed', { err: err as Error });
    }
  }

  private socketError(where: string, err: Error): void {
    countDrop(this.rt.stats, `${where}Error`);
    this.log.warn('discovery socket error', { where, err });
    this.emit('warning', err);
  }
}

function bind(s: Socket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    s.once('error', onError);
    s.bind({ port, address, exclusive: false }, () => {
      s.off('error', onError);
      resolve();
    });
  });
}
