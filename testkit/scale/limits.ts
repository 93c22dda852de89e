/**
 * The daemon's real discovery limits, for the scale model's `limits` mode (testkit/scale/sim.ts;
 * issue 24 item 5): what a member of a large subnet can learn when it does not hear "its whole
 * subnet" (view = subnet size) nor "32 random members" (the default view), but what gets through
 * the limits the daemon applies. Each default names the source line it stands for; the fields are
 * there to try other values side by side (bench runs), not to change the daemon.
 */
import { DAMPING_THRESHOLD } from '../../src/discovery/damping.js';
import { DEFAULT_FOLLOW_UP_LIMITS } from '../../src/discovery/follow-ups.js';
import { CROWD_MAX_FACTOR, CROWD_REPEAT_CAP_MS, CROWD_UNIT, DEFAULT_TIMING } from '../../src/discovery/prober.js';
import type { DaemonDiscovery } from './sim.js';

export interface RealLimits {
  /** Responder: probes accepted per second over all sources, and burst (probe-responder.ts Responder constructor: 200/s, 400). */
  globalRate: number;
  globalBurst: number;
  /** Responder: per source (20/s, burst 40); a prober paced at maxProbesPerSecond stays under it. */
  perSourceRate: number;
  /** Prober: transmissions per second (DEFAULT_TIMING.maxProbesPerSecond 15, burst 30). */
  probesPerSecond: number;
  probeBurst: number;
  /** Prober: ProbeMatches handled per second (prober.ts Prober constructor `inbound`: 500/s, burst 1000). */
  inboundRate: number;
  inboundBurst: number;
  /** Segment IDs per probe (prober.ts MAX_IDS_PER_PROBE[2] 255; discovery-feed.ts WATCH_BATCH). */
  idsPerProbe: number;
  /** Responder damping (damping.ts): silent for a segment after this many full-segment replies seen ... */
  dampingThreshold: number;
  /** ... while the segment is among the last this many observed (damping.ts MAX_SEGMENTS 4096). */
  dampingSegments: number;
  /** Follow-ups (follow-ups.ts DEFAULT_FOLLOW_UP_LIMITS): probes remembered, per source. */
  followUpProbes: number;
  followUpPerSource: number;
  /** Follow-up ProbeMatches per second and burst (probe-responder.ts followUpRate 100/s, 200). */
  followUpRate: number;
  followUpBurst: number;
  /**
   * DiscoveryFeed admission (discovery-feed.ts PEER_CAP 16; CROWD_PEER_CAP 256 for addresses on
   * hosts seen probing, 64 before issue 24 item 5; MAX_PROBERS 256).
   */
  peerCap: number;
  crowdPeerCap: number;
  maxProbers: number;
  /** Probes of others kept for a download that starts (discovery.ts RECENT_PROBES_MAX 128, 3 s). */
  recentProbes: number;
  /** CPU per datagram (on the daemons' CPUs when the run has a `cpu` model); absent: free. */
  costs?: DaemonDiscovery;
}

export const REAL_LIMITS: RealLimits = {
  globalRate: 200,
  globalBurst: 400,
  perSourceRate: 20,
  probesPerSecond: DEFAULT_TIMING.maxProbesPerSecond,
  probeBurst: DEFAULT_TIMING.probeBurst,
  inboundRate: 500,
  inboundBurst: 1000,
  idsPerProbe: 255,
  dampingThreshold: DAMPING_THRESHOLD,
  dampingSegments: 4096,
  followUpProbes: DEFAULT_FOLLOW_UP_LIMITS.maxProbes,
  followUpPerSource: DEFAULT_FOLLOW_UP_LIMITS.maxPerSource,
  followUpRate: 100,
  followUpBurst: 200,
  peerCap: 16,
  crowdPeerCap: 256,
  maxProbers: 256,
  recentProbes: 128,
};

/**
 * Transmissions per second of a prober watching `chunks` probes' worth of segments with crowd
 * factor `f` (prober.ts transmit: each chunk again after 1-2 s x f, at most CROWD_REPEAT_CAP_MS;
 * all of them through the pacer).
 */
export function probeRate(lim: RealLimits, chunks: number, f: number): number {
  const mean = (DEFAULT_TIMING.repeatMinMs + DEFAULT_TIMING.repeatMaxMs) / 2;
  const period = f > 1 ? Math.min(mean * f, Math.max(mean, CROWD_REPEAT_CAP_MS)) : mean;
  return Math.min(lim.probesPerSecond, (chunks * 1000) / period);
}

/** Prober.crowdFactor from the distinct responders of the last 5 s. */
export function crowdFactorOf(responders: number): number {
  return Math.min(CROWD_MAX_FACTOR, Math.max(1, responders / CROWD_UNIT));
}

/** Counts of what the limits did in a run (ScaleResult.limits). */
export interface LimitsReport {
  /** Probe transmissions sent, and (prober, responder) deliveries the responders' global limit dropped / accepted. */
  probesSent: number;
  probesDropped: number;
  probesAccepted: number;
  /** The lowest share of the subnet's probes a responder accepted in a second. */
  minAcceptedShare: number;
  /** ProbeMatches (answers and follow-ups) sent; dropped by the prober's inbound limit. */
  matchesSent: number;
  matchesDropped: number;
  /** Answers a responder's damping left out entirely. */
  damped: number;
  /** Sightings DiscoveryFeed did not admit (the download's peer cap). */
  capped: number;
  /** Follow-ups sent; dropped by the follow-up rate; probes forgotten (memory full) before their TTL. */
  followUps: number;
  followUpsDropped: number;
  followUpsEvicted: number;
  /** Peers admitted per download: mean and max. */
  admittedMean: number;
  admittedMax: number;
}
