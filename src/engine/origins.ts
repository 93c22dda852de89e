/**
 * The origin nodes of one download: the URL asked for and the mirrors named with `get --mirror`
 * (other nodes publishing the same content). Origin range requests go to one node at a time, the
 * current one; when it fails (connection refused or reset, a 5xx answer, a body cut short) it is
 * put in backoff like a failing peer and the next usable node takes over. A mirror is used only
 * after its own content information was fetched and found to describe the same content (same
 * length, chunking, segment hashes and segment IDs) as the one the download runs on: a node with
 * other content (another blob version, another server secret) is refused for the whole job and no
 * byte of it is used. Beyond MS-PCCRTP: protocol/pccrtp.md, "Mirrors and failover".
 */
import type { ContentInfo } from '../protocol/pccrc/types.js';
import type { Logger } from '../util/log.js';
import { DownloadError } from './errors.js';

const BACKOFF_BASE_MS = 250;
const BACKOFF_MAX_MS = 10_000;

type NodeState = 'reference' | 'unchecked' | 'ok' | 'refused';

interface OriginNode {
  url: string;
  state: NodeState;
  failures: number;
  backoffUntil: number;
  /** The content-information check in progress (shared by every request waiting for it). */
  checking?: Promise<void>;
  /** Why it was refused. */
  reason?: string;
}

/**
 * What a node's check needs: its content information, or undefined when it answered without
 * (not hashed yet: asked again after a backoff). Throws when it could not be asked.
 */
export type FetchContentInfo = (url: string) => Promise<ContentInfo | undefined>;

/** undefined when `b` describes the same content as `a` (byte for byte the same blocks, same segment IDs), else why not. */
export function contentInfoDiffers(a: ContentInfo, b: ContentInfo): string | undefined {
  if (a.version !== b.version) return `content information v${b.version}, not v${a.version}`;
  if (a.hashAlgorithm !== b.hashAlgorithm) return `hash algorithm ${b.hashAlgorithm}, not ${a.hashAlgorithm}`;
  if (a.contentLength !== b.contentLength || a.rangeStart !== b.rangeStart || a.rangeEnd !== b.rangeEnd)
    return `content length ${b.contentLength}, not ${a.contentLength}`;
  if (a.segments.length !== b.segments.length) return `${b.segments.length} segments, not ${a.segments.length}`;
  for (let k = 0; k < a.segments.length; k++) {
    const x = a.segments[k]!,
      y = b.segments[k]!;
    if (x.offset !== y.offset || x.length !== y.length || x.blockSize !== y.blockSize)
      return `segment ${k} has another extent`;
    if (!x.hod.equals(y.hod)) return `segment ${k} has another hash of data`;
    if (!x.segmentId.equals(y.segmentId) || !x.kp.equals(y.kp))
      return `segment ${k} has another segment ID (another server secret?)`;
    if (x.blockHashes.length !== y.blockHashes.length || x.blockHashes.some((h, i) => !h.equals(y.blockHashes[i]!)))
      return `segment ${k} has other block hashes`;
  }
  return undefined;
}

/** Whether an origin request's failure says the node is down or broken (not the request's own fault). */
export function nodeFault(err: unknown): boolean {
  if (!(err instanceof DownloadError)) return true; // socket errors while reading the body
  if (err.code === 'ORIGIN_UNREACHABLE' || err.code === 'ORIGIN_MISMATCH') return true;
  if (err.code === 'ORIGIN_STATUS') {
    const status = (err as { status?: number }).status;
    return status === undefined || status >= 500;
  }
  return false;
}

export class OriginSet {
  private readonly nodes: OriginNode[];
  private current = 0;
  private reference: ContentInfo | undefined;

  constructor(
    urls: readonly string[],
    private readonly opts: { now: () => number; log: Logger; fetchContentInfo: FetchContentInfo },
  ) {
    if (urls.length === 0) throw new Error('OriginSet needs at least one URL');
    this.nodes = urls.map((url, i) => ({
      url,
      state: i === 0 ? 'reference' : 'unchecked',
      failures: 0,
      backoffUntil: 0,
    }));
  }

  /** Every node's URL, the one asked for first. */
  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  get size(): number {
    return this.nodes.length;
  }

  /**
   * The download runs on `ci`, which `url` answered (the first node that answered the job's
   * first request): that node is current, the others must match `ci` before they are used.
   */
  setReference(url: string, ci: ContentInfo): void {
    this.reference = ci;
    for (const [i, n] of this.nodes.entries()) {
      if (n.url === url) {
        n.state = 'reference';
        this.current = i;
      } else if (n.state === 'reference') n.state = 'unchecked';
    }
  }

  /** The URL the next origin range request goes to (checks a mirror first when failing over to it). */
  async pick(): Promise<string> {
    const now = this.opts.now();
    const cur = this.nodes[this.current]!;
    if (this.usable(cur) && cur.backoffUntil <= now) return cur.url;
    // The current node failed: the next node (in order after it) that is not in backoff and
    // describes the same content.
    for (let k = 1; k < this.nodes.length; k++) {
      const i = (this.current + k) % this.nodes.length;
      const n = this.nodes[i]!;
      if (n.state === 'refused' || n.backoffUntil > now) continue;
      if (n.state === 'unchecked') await this.check(n);
      if (!this.usable(n)) continue;
      if (this.current !== i && this.nodes[this.current] === cur) {
        this.opts.log.warn('origin node failing; continuing from another node', { from: cur.url, to: n.url });
        this.current = i;
      }
      return this.nodes[this.current]!.url;
    }
    // Every usable node is in backoff: the one that comes out of it first (the scheduler paces the retries).
    let best: OriginNode | undefined;
    for (const n of this.nodes) if (this.usable(n) && (!best || n.backoffUntil < best.backoffUntil)) best = n;
    return (best ?? cur).url;
  }

  /** A request to `url` failed in a way that says the node is down or broken: backoff, fail over. */
  failed(url: string): void {
    const n = this.nodes.find((x) => x.url === url);
    if (!n) return;
    // Requests in flight when it failed report one after another: one failure per backoff period.
    const now = this.opts.now();
    if (n.backoffUntil > now) return;
    n.failures++;
    n.backoffUntil = now + Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (n.failures - 1));
  }

  /** A request to `url` delivered a verified block. */
  succeeded(url: string): void {
    const n = this.nodes.find((x) => x.url === url);
    if (n) n.failures = 0;
  }

  /** Node states, for logs and tests. */
  view(): Array<{ url: string; state: NodeState; failures: number; reason?: string }> {
    return this.nodes.map((n) => ({
      url: n.url,
      state: n.state,
      failures: n.failures,
      ...(n.reason ? { reason: n.reason } : {}),
    }));
  }

  private usable(n: OriginNode): boolean {
    return n.state === 'reference' || n.state === 'ok';
  }

  private check(n: OriginNode): Promise<void> {
    n.checking ??= (async () => {
      const ref = this.reference;
      try {
        if (!ref) throw new Error('no content information to compare with');
        const ci = await this.opts.fetchContentInfo(n.url);
        if (!ci) {
          this.failed(n.url);
          n.reason = 'it answered without content information (not hashed yet?)';
          return;
        }
        const why = contentInfoDiffers(ref, ci);
        if (why) {
          n.state = 'refused';
          n.reason = `its content information differs: ${why}`;
          this.opts.log.warn('mirror refused: not the same content', { mirror: n.url, reason: n.reason });
          return;
        }
        n.state = 'ok';
      } catch (err) {
        // Unreachable or no content information now: backoff, asked again later.
        this.failed(n.url);
        n.reason = (err as Error).message;
        // Not a node in trouble (404, a bad signature, malformed content information): not this content.
        if (!nodeFault(err)) {
          n.state = 'refused';
          this.opts.log.warn('mirror refused', { mirror: n.url, reason: n.reason });
        }
      } finally {
        n.checking = undefined;
      }
    })();
    return n.checking;
  }
}
