/** What the discovery state machines need from the outside world, injected so tests can fake it. */
import type { Logger } from '../util/log.js';
import type { Timers } from '../util/timers.js';

export { type Timers, realTimers } from '../util/timers.js';

export interface DiscoveryStats {
  probesSent: number;
  probesReceived: number;
  matchesSent: number;
  matchesReceived: number;
  /** ProbeMatches sent as follow-ups (a segment arrived after the probe; counted in matchesSent too). */
  followUpsSent: number;
  /** Datagrams ignored, by reason (malformed, notLocal, rateSource, duplicate, notHeld, ...). */
  dropped: Record<string, number>;
}

export function newStats(): DiscoveryStats {
  return { probesSent: 0, probesReceived: 0, matchesSent: 0, matchesReceived: 0, followUpsSent: 0, dropped: {} };
}

export function countDrop(stats: DiscoveryStats, reason: string, log?: Logger, fields?: Record<string, unknown>): void {
  stats.dropped[reason] = (stats.dropped[reason] ?? 0) + 1;
  log?.debug('discovery datagram dropped', { reason, ...fields });
}

export interface Runtime {
  now: () => number;
  random: () => number;
  timers: Timers;
  newMessageId: () => string;
  logger: Logger;
  stats: DiscoveryStats;
}

/** A network source or destination. */
export interface Peer {
  address: string;
  port: number;
}
